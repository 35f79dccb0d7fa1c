package dev.memgen.trainer;

import dev.memgen.log.BrokerProbe;
import io.opentelemetry.api.OpenTelemetry;
import io.opentelemetry.api.trace.Tracer;
import io.quarkus.runtime.ShutdownEvent;
import io.quarkus.runtime.Startup;
import jakarta.enterprise.context.ApplicationScoped;
import jakarta.enterprise.event.Observes;
import java.io.IOException;
import java.nio.file.Path;
import java.time.Duration;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import org.eclipse.microprofile.config.inject.ConfigProperty;
import org.jboss.logging.Logger;

/**
 * Runs the trainer when {@code memgen.log.bootstrap} is set (otherwise the service only answers health checks): one
 * {@link ContinualTrainer} for {@code memgen.memory.adapter-name}, or, with {@code memgen.trainer.adapters} (a list),
 * this process as a member of a {@link TrainerGroup} that shares those adapters with the other trainer processes.
 * Settings are checked at startup, so a bad one stops the start with its name; trouble at run time (the broker away,
 * the store unwritable) is logged and retried with a back-off ({@link TrainerRunner}), and a restarted trainer resumes
 * from the adapter store, so nothing is trained twice.
 */
@Startup
@ApplicationScoped
public class TrainerLoop {
  private static final Logger LOG = Logger.getLogger(TrainerLoop.class);

  private final ContinualTrainer.Settings settings; // null: no experience log configured
  private final List<String> adapters; // what this service trains (in a group: shares)
  private final BrokerProbe broker; // the broker's answer for readiness and the lag metric; null without settings
  private final TrainerRunner single; // one adapter, no group
  private final TrainerGroup group; // or a share of several
  private final Thread groupThread;

  TrainerLoop(OpenTelemetry otel, @ConfigProperty(name = "memgen.log.bootstrap") Optional<String> bootstrap,
      @ConfigProperty(name = "memgen.log.partitions", defaultValue = "3") int partitions,
      @ConfigProperty(name = "memgen.model.dir") Optional<String> modelDir,
      @ConfigProperty(name = "memgen.memory.dir") Optional<String> memoryDir,
      @ConfigProperty(name = "memgen.memory.adapter-name", defaultValue = "default") String adapterName,
      @ConfigProperty(name = "memgen.trainer.adapters") Optional<List<String>> groupAdapters,
      @ConfigProperty(name = "memgen.trainer.group-session-timeout", defaultValue = "PT30S") Duration groupSessionTimeout,
      @ConfigProperty(name = "memgen.trainer.member") Optional<String> member,
      @ConfigProperty(name = "memgen.adapters.store") Optional<String> store,
      @ConfigProperty(name = "memgen.trainer.work-dir", defaultValue = ".memgen/trainer") String workDir,
      @ConfigProperty(name = "memgen.trainer.eval-set", defaultValue = "arithmetic:100") String evalSet,
      @ConfigProperty(name = "memgen.trainer.gate-tolerance", defaultValue = "1.0") double gateTolerance,
      @ConfigProperty(name = "memgen.trainer.window", defaultValue = "64") int window,
      @ConfigProperty(name = "memgen.trainer.max-window-wait", defaultValue = "PT10M") Duration maxWindowWait,
      @ConfigProperty(name = "memgen.trainer.feedback-grace", defaultValue = "PT10S") Duration feedbackGrace,
      @ConfigProperty(name = "memgen.trainer.sft-min-reward", defaultValue = "1.0") double sftMinReward,
      @ConfigProperty(name = "memgen.trainer.sft-steps", defaultValue = "50") int sftSteps,
      @ConfigProperty(name = "memgen.trainer.sft-batch", defaultValue = "8") int sftBatch,
      @ConfigProperty(name = "memgen.trainer.lr", defaultValue = "3e-3") double lr,
      @ConfigProperty(name = "memgen.trainer.grpo-steps", defaultValue = "0") int grpoSteps,
      @ConfigProperty(name = "memgen.trainer.verifier", defaultValue = "none") String verifier,
      @ConfigProperty(name = "memgen.trainer.eval-max-new-tokens", defaultValue = "48") int evalMaxNewTokens,
      @ConfigProperty(name = "memgen.trainer.seed", defaultValue = "0") long seed,
      @ConfigProperty(name = "memgen.trainer.reward-horizon", defaultValue = "PT1H") Duration rewardHorizon,
      @ConfigProperty(name = "memgen.trainer.max-waiting", defaultValue = "100000") int maxWaiting,
      @ConfigProperty(name = "memgen.trainer.dedup-horizon", defaultValue = "P7D") Duration dedupHorizon,
      @ConfigProperty(name = "memgen.trainer.max-trajectory-tokens", defaultValue = "0") int maxTrajectoryTokens,
      @ConfigProperty(name = "memgen.trainer.max-window", defaultValue = "0") int maxWindow,
      @ConfigProperty(name = "memgen.trainer.rollouts", defaultValue = "0") int rollouts,
      @ConfigProperty(name = "memgen.trainer.rollout-base-samples", defaultValue = "0") int rolloutBaseSamples,
      @ConfigProperty(name = "memgen.trainer.rollout-temperature", defaultValue = "1.0") double rolloutTemperature,
      @ConfigProperty(name = "memgen.trainer.rollout-max-per-prompt", defaultValue = "2") int rolloutMaxPerPrompt,
      @ConfigProperty(name = "memgen.trainer.trigger-steps", defaultValue = "0") int triggerSteps,
      @ConfigProperty(name = "memgen.trainer.trigger-problems", defaultValue = "4") int triggerProblems,
      @ConfigProperty(name = "memgen.trainer.trigger-group", defaultValue = "4") int triggerGroup,
      @ConfigProperty(name = "memgen.trainer.trigger-lr", defaultValue = "1e-4") double triggerLr,
      @ConfigProperty(name = "memgen.trainer.trigger-penalty", defaultValue = "0.1") double triggerPenalty,
      @ConfigProperty(name = "memgen.trainer.trigger-threshold", defaultValue = "0.5") double triggerThreshold) {
    if (bootstrap.isEmpty()) {
      settings = null;
      adapters = List.of();
      broker = null;
      single = null;
      group = null;
      groupThread = null;
      LOG.info("trainer idle: no experience log (set memgen.log.bootstrap)");
      return;
    }
    String missing = modelDir.isEmpty() ? "memgen.model.dir" : memoryDir.isEmpty() ? "memgen.memory.dir"
        : store.isEmpty() ? "memgen.adapters.store" : null;
    if (missing != null) {
      throw new IllegalStateException(missing + " must be set when memgen.log.bootstrap is (the trainer needs the base, "
          + "the starting memory and the adapter store)");
    }
    try {
      settings = new ContinualTrainer.Settings(bootstrap.get(), adapterName, Path.of(modelDir.get()), Path.of(memoryDir.get()),
          Path.of(store.get()), Path.of(workDir), HeldOut.parse(evalSet), gateTolerance, window, maxWindowWait, feedbackGrace, sftMinReward,
          sftSteps, sftBatch, lr, grpoSteps, verifier.equals("none") ? Optional.empty() : Optional.of(Verifier.named(verifier)),
          evalMaxNewTokens, partitions, seed, new ContinualTrainer.Intake(rewardHorizon, maxWaiting, dedupHorizon,
              maxTrajectoryTokens, maxWindow), new ContinualTrainer.Rollouts(rollouts, rolloutBaseSamples, rolloutTemperature, rolloutMaxPerPrompt),
          new ContinualTrainer.TriggerTraining(triggerSteps, triggerProblems, triggerGroup, triggerLr, triggerPenalty,
              triggerThreshold));
    } catch (IOException | RuntimeException e) {
      throw new IllegalStateException("trainer settings: " + e.getMessage(), e);
    }
    broker = new BrokerProbe(settings.bootstrapServers(), Duration.ofSeconds(2));
    Tracer tracer = otel.getTracer("memgen-trainer"); // a no-op unless traces are on (quarkus.otel.sdk.disabled=false)
    if (groupAdapters.isEmpty()) {
      adapters = List.of(adapterName);
      single = new TrainerRunner(adapterName, () -> new ContinualTrainer(settings).traced(tracer));
      group = null;
      groupThread = null;
    } else {
      adapters = List.copyOf(groupAdapters.get());
      single = null;
      String me = member.orElse(ProcessHandle.current().pid() + "@" + hostname());
      try {
        group = new TrainerGroup(new TrainerGroup.Settings(settings, adapters, groupSessionTimeout), me, tracer);
      } catch (RuntimeException e) {
        throw new IllegalStateException("memgen.trainer.adapters / group-session-timeout: " + e.getMessage(), e);
      }
      groupThread = new Thread(group::run, "memgen-trainer-group");
      groupThread.start();
      LOG.infof("trainer group member %s sharing %s with the other members of %s", me, adapters, TrainerGroup.GROUP);
    }
  }

  private static String hostname() {
    try {
      return java.net.InetAddress.getLocalHost().getHostName();
    } catch (java.io.IOException e) {
      return "localhost";
    }
  }



  /** The trainer settings (in a group, every adapter's but for its name); empty when no experience log is configured. */
  public Optional<ContinualTrainer.Settings> settings() {
    return Optional.ofNullable(settings);
  }

  /** The adapters this service trains (in a group: the ones the group shares; this member trains some of them). */
  public List<String> adapters() {
    return adapters;
  }

  /** Whether the broker answers, and the group's lag (one admin client for readiness and metrics). */
  public Optional<BrokerProbe> broker() {
    return Optional.ofNullable(broker);
  }

  /**
   * The running trainers of this process by adapter: the one adapter, or this member's share of the group's (a trainer
   * starting, or restarting after a failure, is absent).
   */
  public Map<String, ContinualTrainer> trainers() {
    Map<String, ContinualTrainer> out = new LinkedHashMap<>();
    if (single != null) {
      single.trainer().ifPresent(t -> out.put(single.adapter(), t));
    } else if (group != null) {
      group.owned().forEach((a, t) -> t.ifPresent(x -> out.put(a, x)));
    }
    return out;
  }

  /** Whether this process holds {@code adapter} now (in a group, another member may). */
  public boolean holds(String adapter) {
    return single != null ? single.adapter().equals(adapter) : group != null && group.owned().containsKey(adapter);
  }

  public Optional<ContinualTrainer> trainer(String adapter) {
    return Optional.ofNullable(trainers().get(adapter));
  }

  void onShutdown(@Observes ShutdownEvent event) throws InterruptedException {
    if (broker != null) {
      broker.close();
    }
    if (single != null) {
      single.close(); // returns within a poll, or after the window in progress (30 s at most; the store makes it safe)
    }
    if (group != null) {
      group.close(); // the member's trainers finish their windows, then it leaves the group
      groupThread.join(30_000);
      if (groupThread.isAlive()) {
        groupThread.interrupt();
        groupThread.join(5_000);
      }
    }
  }
}
