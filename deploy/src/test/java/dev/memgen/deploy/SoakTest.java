package dev.memgen.deploy;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.memgen.cli.LoopBench;
import dev.memgen.model.checkpoint.DType;
import dev.memgen.model.checkpoint.TinyCheckpoint;
import dev.memgen.model.data.ArithmeticTasks;
import dev.memgen.model.text.DelimiterTable;
import dev.memgen.rpc.TinyMemory;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * {@code bench soak} in short: agents send for 20 s while the broker, the weaver and the trainer are each SIGKILLed
 * and restarted; every request is answered (without memory while the weaver is away: degraded, not failed) and every
 * answered request's trajectory is published and trained exactly once.
 */
class SoakTest {
  @TempDir Path tmp;

  @Test
  void everyAnsweredRequestIsTrainedOnceThroughBrokerWeaverAndTrainerKills() throws Exception {
    Path model = tmp.resolve("model");
    Path memory = tmp.resolve("memory");
    TinyCheckpoint.write(model, TinyCheckpoint.tiny("qwen2"), DType.F32, 1, 7);
    TinyMemory.write(model, memory, DelimiterTable.DEFAULT);
    Path root = Path.of("").toAbsolutePath().getParent(); // tests run in deploy/
    LoopBench.Settings settings = new LoopBench.Settings(root, model, memory, tmp.resolve("work"), 64, 16, 5, 8, "accept",
        false, Duration.ofMinutes(4), List.of(ArithmeticTasks.Domain.A, ArithmeticTasks.Domain.B), 0, 0, 4, 16, 100, 0, 0,
        "threshold", false);
    LoopBench.SoakResult r = new LoopBench(settings, line -> System.err.println("soak: " + line))
        .soak(new LoopBench.Soak(Duration.ofSeconds(20), true));

    assertEquals(4, r.faults().size(), r.faults().toString());
    assertTrue(r.faults().stream().noneMatch(f -> f.contains("FAILED")), r.faults().toString());
    assertEquals(0, r.errors(), "requests keep being answered through every fault: " + r);
    assertTrue(r.degraded() > 0, "some were answered without memory while the weaver was away: " + r);
    LoopBench.Result loop = r.loop();
    assertEquals(r.requests(), loop.trajectoriesPublished(), "one trajectory per answered request: " + r);
    assertEquals(loop.trajectoriesPublished(), loop.trajectoriesTrained() + loop.trajectoriesPending(), r.toString());
    assertEquals(0, loop.trajectoriesLost(), r.toString());
    assertEquals(0, loop.trajectoriesDuplicated(), r.toString());
  }
}
