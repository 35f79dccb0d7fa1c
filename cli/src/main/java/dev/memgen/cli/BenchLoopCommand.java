package dev.memgen.cli;

import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.memgen.model.checkpoint.Checkpoint;
import dev.memgen.model.memory.LoraConfig;
import dev.memgen.model.memory.Memory;
import dev.memgen.model.memory.MemoryManifest;
import dev.memgen.model.text.DelimiterTable;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import dev.memgen.model.data.ArithmeticTasks;
import java.time.Duration;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

/** {@code memgen bench loop}: the continual-learning loop on a real broker with the services as processes. */
@Command(name = "loop", mixinStandardHelpOptions = true,
    description = "Run the loop (broker + the four services as processes): requests with feedback in, trained "
        + "adapters out; account for every trajectory. Last line: JSON.")
final class BenchLoopCommand implements Callable<Integer> {
  @Option(names = "--model", required = true, description = "base checkpoint directory (with tokenizer.json)") Path model;

  @Option(names = "--memory", description = "memory to start from (default: a fresh one, K 4, LoRA r 8)") Path memory;

  @Option(names = "--requests", defaultValue = "64", description = "requests sent (default ${DEFAULT-VALUE})") int requests;

  @Option(names = "--window", defaultValue = "16", description = "rewarded trajectories per training window (default ${DEFAULT-VALUE})")
  int window;

  @Option(names = "--sft-steps", defaultValue = "20", description = "SFT updates per window (default ${DEFAULT-VALUE})") int sftSteps;

  @Option(names = "--max-new-tokens", defaultValue = "32", description = "(default ${DEFAULT-VALUE})") int maxNewTokens;

  @Option(names = "--reward", defaultValue = "accept",
      description = "accept (every answer rewarded 1: the plumbing, on any model), grade (the boxed result checked and "
          + "sent as feedback) or verifier (no feedback: the trainer's verifier scores the traffic)")
  String reward;

  @Option(names = "--traffic", defaultValue = "A,B", split = ",", description = "domains the requests alternate between "
      + "(default ${DEFAULT-VALUE}; C: A with 3 operations, which the base partly solves)")
  List<ArithmeticTasks.Domain> traffic;

  @Option(names = "--rollouts", defaultValue = "0", description = "re-rollouts per window prompt, the rewarded ones "
      + "trained on (learning from rewards alone; 0: off; default ${DEFAULT-VALUE})") int rollouts;

  @Option(names = "--base-rollouts", defaultValue = "0", description = "more re-rollouts per window prompt from the frozen "
      + "base alone, memory off (default ${DEFAULT-VALUE})") int baseRollouts;

  @Option(names = "--clients", defaultValue = "1", description = "agents sending requests at once (default ${DEFAULT-VALUE})")
  int clients;

  @Option(names = "--crash-trainer", description = "SIGKILL the trainer in the middle of a window, then restart it")
  boolean crashTrainer;

  @Option(names = "--timeout", defaultValue = "PT10M", description = "longest wait for any stage (default ${DEFAULT-VALUE})")
  Duration timeout;

  @Option(names = "--work", description = "directory for the broker, store and logs (default: a new temporary one)") Path work;

  /** The benches' starting memory when none is given: fresh, K 4, LoRA r 8, in {@code dir/memory}. */
  static Path freshMemory(Path model, Path dir) throws java.io.IOException {
    Path mem = dir.resolve("memory");
    Checkpoint base = Checkpoint.open(model);
    LoraConfig lora = new LoraConfig(8, 16, LoraConfig.REFERENCE.targets(), 0.0);
    Memory.init(mem, base.config(), new MemoryManifest(1, base.fingerprint(), base.config().hiddenSize(),
        base.config().numLayers(), 4, 4, "embeddings", lora, lora, DelimiterTable.DEFAULT, 3), 0);
    return mem;
  }

  @Override
  public Integer call() throws Exception {
    if (!List.of("accept", "grade", "verifier").contains(reward)) {
      throw new IllegalArgumentException("--reward must be accept, grade or verifier, got '" + reward + "'");
    }
    Path dir = work != null ? work : Files.createTempDirectory("memgen-bench-loop");
    Path mem = memory != null ? memory : freshMemory(model, dir);
    LoopBench.Result r = new LoopBench(new LoopBench.Settings(Main.home(), model.toAbsolutePath(), mem.toAbsolutePath(),
        dir.toAbsolutePath(), requests, window, sftSteps, maxNewTokens, reward, crashTrainer, timeout, traffic, rollouts,
        baseRollouts, clients, 16, reward.equals("grade") ? 1.0 : 100, 0, 0, "threshold", false),
        line -> System.err.println("bench loop: " + line)).run();
    System.out.printf("%d trajectories published, %d trained, %d judged (reward too low to teach), %d not yet in a "
        + "published version (%d of them waiting in the open window), %d lost, %d trained twice; %d adapter versions; "
        + "trainer ingest %.1f trajectories/s; trajectory -> serving median %.1f s (p90 %.1f s)%s%n",
        r.trajectoriesPublished(), r.trajectoriesTrained(), r.trajectoriesJudged(), r.trajectoriesPending(),
        r.trajectoriesWaiting(), r.trajectoriesLost(), r.trajectoriesDuplicated(),
        r.adapterVersions(), r.ingestTps(), r.trajectoryToServingMedianS(), r.trajectoryToServingP90S(),
        crashTrainer ? (r.trainerKilledMidWindow() ? "; trainer killed mid-window" : "; trainer killed after its window") : "");
    ObjectNode json = Json.object();
    json.put("trajectories_published", r.trajectoriesPublished());
    json.put("trajectories_trained", r.trajectoriesTrained());
    json.put("trajectories_judged", r.trajectoriesJudged());
    json.put("trajectories_pending", r.trajectoriesPending());
    json.put("trajectories_waiting", r.trajectoriesWaiting());
    json.put("trajectories_lost", r.trajectoriesLost());
    json.put("trajectories_duplicated", r.trajectoriesDuplicated());
    json.put("trajectories_deduplicated", r.trajectoriesDeduplicated());
    json.put("adapter_versions", r.adapterVersions());
    json.put("ingest_tps", r.ingestTps());
    json.put("trajectory_to_serving_s", r.trajectoryToServingMedianS());
    json.put("trajectory_to_serving_p90_s", r.trajectoryToServingP90S());
    json.put("latest_version", r.latestVersion());
    json.put("last_request_weaver_version", r.lastRequestWeaverVersion());
    json.put("crash_trainer", crashTrainer);
    json.put("trainer_killed_mid_window", r.trainerKilledMidWindow());
    json.put("trainer_lag", r.trainerLag());
    json.put("seconds", r.seconds());
    json.set("machine", Machine.describe());
    System.out.println(Json.line(json));
    return r.trajectoriesLost() == 0 && r.trajectoriesDuplicated() == 0 ? 0 : 1;
  }
}
