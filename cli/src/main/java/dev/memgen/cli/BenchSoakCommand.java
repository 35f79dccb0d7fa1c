package dev.memgen.cli;

import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.memgen.model.data.ArithmeticTasks;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

/**
 * {@code memgen bench soak}: the loop under load and faults. A broker and the four services as processes (faults need
 * processes to kill), a fleet of agents for a fixed time, and meanwhile the broker SIGKILLed and restarted, the weaver
 * SIGKILLed and restarted, the trainer SIGKILLed and restarted; then every trajectory accounted for.
 */
@Command(name = "soak", mixinStandardHelpOptions = true,
    description = "The loop under load with faults (broker, weaver and trainer SIGKILLed and restarted mid-run): "
        + "requests, errors, degraded requests, trajectories published, lost and duplicated. Last line: JSON.")
final class BenchSoakCommand implements Callable<Integer> {
  @Option(names = "--model", required = true, description = "base checkpoint directory (with tokenizer.json)") Path model;

  @Option(names = "--memory", description = "memory to start from (default: a fresh one, K 4, LoRA r 8)") Path memory;

  @Option(names = "--clients", defaultValue = "16", description = "agents sending at once (default ${DEFAULT-VALUE})")
  int clients;

  @Option(names = "--seconds", defaultValue = "60", description = "how long the fleet sends at least; with faults it goes "
      + "on until 5 s after the last restart (default ${DEFAULT-VALUE})")
  int seconds;

  @Option(names = "--max-new-tokens", defaultValue = "16", description = "(default ${DEFAULT-VALUE})") int maxNewTokens;

  @Option(names = "--window", defaultValue = "16", description = "rewarded trajectories per training window (default ${DEFAULT-VALUE})")
  int window;

  @Option(names = "--sft-steps", defaultValue = "5", description = "SFT updates per window (default ${DEFAULT-VALUE})") int sftSteps;

  @Option(names = "--no-faults", description = "the same load without faults, for comparison") boolean noFaults;

  @Option(names = "--timeout", defaultValue = "PT10M", description = "longest wait for any stage (default ${DEFAULT-VALUE})")
  Duration timeout;

  @Option(names = "--work", description = "directory for the broker, store and logs (default: a new temporary one)") Path work;

  @Override
  public Integer call() throws Exception {
    if (clients < 1 || seconds < 10) {
      throw new IllegalArgumentException("--clients must be >= 1 and --seconds >= 10 (the faults are spread over the run)");
    }
    Path dir = work != null ? work : Files.createTempDirectory("memgen-bench-soak");
    Path mem = memory != null ? memory : BenchLoopCommand.freshMemory(model, dir);
    // "accept": every answer is rewarded, so every trajectory is trainable and the accounting covers all of them.
    LoopBench.Settings settings = new LoopBench.Settings(Main.home(), model.toAbsolutePath(), mem.toAbsolutePath(),
        dir.toAbsolutePath(), 64, window, sftSteps, maxNewTokens, "accept", false, timeout,
        List.of(ArithmeticTasks.Domain.A, ArithmeticTasks.Domain.B), 0, 0, clients, 16, 100, 0, 0, "threshold", false);
    LoopBench.SoakResult r = new LoopBench(settings, line -> System.err.println("bench soak: " + line))
        .soak(new LoopBench.Soak(Duration.ofSeconds(seconds), !noFaults));
    LoopBench.Result loop = r.loop();
    long successful = r.requests() - r.errors();
    System.out.printf("%d requests in %.0f s from %d agents (%.0f requests/s): %d failed, %d served without memory (a memory service was "
        + "down); %d trajectories published (%d successful requests), %d trained, %d not yet in a published version, "
        + "%d lost, %d trained twice; faults: %s%n", r.requests(), r.trafficSeconds(), clients,
        r.requests() / r.trafficSeconds(), r.errors(), r.degraded(),
        loop.trajectoriesPublished(), successful, loop.trajectoriesTrained(), loop.trajectoriesPending(),
        loop.trajectoriesLost(), loop.trajectoriesDuplicated(), r.faults().isEmpty() ? "none" : String.join("; ", r.faults()));
    ObjectNode json = Json.object();
    json.put("requests", r.requests());
    json.put("errors", r.errors());
    json.put("degraded", r.degraded());
    json.put("successful", successful);
    json.put("trajectories_published", loop.trajectoriesPublished());
    json.put("trajectories_trained", loop.trajectoriesTrained());
    json.put("trajectories_pending", loop.trajectoriesPending());
    json.put("trajectories_lost", loop.trajectoriesLost());
    json.put("trajectories_duplicated", loop.trajectoriesDuplicated());
    json.put("adapter_versions", loop.adapterVersions());
    ArrayNode faults = json.putArray("faults");
    r.faults().forEach(faults::add);
    json.put("clients", clients);
    json.put("seconds", seconds);
    json.put("traffic_seconds", r.trafficSeconds());
    json.put("requests_per_s", r.requests() / r.trafficSeconds());
    json.put("total_seconds", loop.seconds());
    json.set("machine", Machine.describe());
    System.out.println(Json.line(json));
    return loop.trajectoriesLost() == 0 && loop.trajectoriesDuplicated() == 0 ? 0 : 1;
  }
}
