package dev.memgen.deploy;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.memgen.cli.LoopBench;
import dev.memgen.model.checkpoint.DType;
import dev.memgen.model.checkpoint.TinyCheckpoint;
import dev.memgen.rpc.TinyMemory;
import dev.memgen.model.text.DelimiterTable;
import java.nio.file.Path;
import java.time.Duration;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The whole continual-learning loop on a real broker with the four services as processes: requests through the
 * reasoner become trajectories, feedback arrives through its FeedbackIntake, the trainer trains windows into new
 * adapter versions, the weaver swaps them in, and the last request is served by the newest version and says so.
 * The trainer is SIGKILLed in the middle of a window and restarted; afterwards every trajectory is in exactly one
 * published version's trained_on range.
 */
class ContinualLoopTest {
  @TempDir Path tmp;

  @Test
  void trajectoriesBecomeServedAdaptersExactlyOnceThroughATrainerCrash() throws Exception {
    Path model = tmp.resolve("model");
    Path memory = tmp.resolve("memory");
    TinyCheckpoint.write(model, TinyCheckpoint.tiny("qwen2"), DType.F32, 1, 7);
    TinyMemory.write(model, memory, DelimiterTable.DEFAULT);
    Path root = Path.of("").toAbsolutePath().getParent(); // tests run in deploy/
    LoopBench.Result r = new LoopBench(new LoopBench.Settings(root, model, memory, tmp.resolve("work"), 24, 8, 40, 24,
        "accept", true, Duration.ofMinutes(4)), line -> System.err.println("loop: " + line)).run();

    assertTrue(r.trainerKilledMidWindow(), "the trainer was killed in the middle of a window: " + r);
    assertEquals(24, r.trajectoriesPublished(), "one trajectory per request: " + r);
    assertEquals(24, r.trajectoriesTrained(), "every one taught a published version, by id: " + r);
    assertEquals(0, r.trajectoriesPending(), "every one in a published version: " + r);
    assertEquals(0, r.trajectoriesLost(), r.toString());
    assertEquals(0, r.trajectoriesDuplicated(), r.toString());
    assertTrue(r.adapterVersions() >= 1 && r.latestVersion() >= 2, "at least one trained version published: " + r);
    assertEquals(r.latestVersion(), r.lastRequestWeaverVersion(), "the next request is served by the newest version");
    assertTrue(r.trainerLag() <= 1, "TrainerAdmin.Status: at most the last request's trajectory (spooled as the status "
        + "is read) is not committed yet: " + r);
  }
}
