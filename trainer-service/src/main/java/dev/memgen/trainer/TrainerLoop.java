package dev.memgen.trainer;

import dev.memgen.log.BrokerProbe;
import io.quarkus.runtime.ShutdownEvent;
import io.quarkus.runtime.Startup;
import jakarta.enterprise.context.ApplicationScoped;
import jakarta.enterprise.event.Observes;
import java.io.IOException;
import java.nio.file.Path;
import java.time.Duration;
import java.util.Optional;
import org.eclipse.microprofile.config.inject.ConfigProperty;
import org.jboss.logging.Logger;

/**
 * Runs the {@link ContinualTrainer} on its own thread when {@code memgen.log.bootstrap} is set (otherwise the
 * service only answers health checks). Settings are checked at startup, so a bad one stops the start with its name;
 * trouble at run time (the broker away, the store unwritable) is logged and retried with a back-off, and a restarted
 * trainer resumes from the adapter store, so nothing is trained twice.
 */
@Startup
@ApplicationScoped
public class TrainerLoop {
  private static final Logger LOG = Logger.getLogger(TrainerLoop.class);
  private static final Duration HEALTHY_RUN = Duration.ofMinutes(1);

  private final ContinualTrainer.Settings settings; // null: no experience log configured
  private final BrokerProbe broker; // the broker's answer for readiness and the lag metric; null without settings
  private final Thread thread;
  private volatile ContinualTrainer trainer;
  private volatile boolean stopping;

  TrainerLoop(@ConfigProperty(name = "memgen.log.bootstrap") Optional<String> bootstrap,
      @ConfigProperty(name = "memgen.log.partitions", defaultValue = "3") int partitions,
      @ConfigProperty(name = "memgen.model.dir") Optional<String> modelDir,
      @ConfigProperty(name = "memgen.memory.dir") Optional<String> memoryDir,
      @ConfigProperty(name = "memgen.memory.adapter-name", defaultValue = "default") String adapterName,
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
      broker = null;
      thread = null;
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
    thread = new Thread(this::runWithRetries, "memgen-trainer");
    thread.start();
  }



  /** The trainer's settings; empty when no experience log is configured (the service then only answers health). */
  public Optional<ContinualTrainer.Settings> settings() {
    return Optional.ofNullable(settings);
  }

  /** The running trainer; empty before it has started (or while it restarts after a failure). */
  /** Whether the broker answers, and the group's lag (one admin client for readiness and metrics). */
  public Optional<BrokerProbe> broker() {
    return Optional.ofNullable(broker);
  }

  public Optional<ContinualTrainer> trainer() {
    ContinualTrainer t = trainer;
    return t == null || t.status() == null ? Optional.empty() : Optional.of(t);
  }

  /**
   * Runs the trainer, restarting it after a failure under an exponential back-off (1 s to 60 s) that starts over only
   * once a trainer has run for a minute: one that fails right after starting, again and again, backs off.
   */
  private void runWithRetries() {
    long backoffMs = 1000;
    while (!stopping) {
      long started = System.nanoTime();
      try {
        trainer = new ContinualTrainer(settings);
        if (stopping) { // shut down while it was starting
          trainer.release();
          return;
        }
        try {
          trainer.run();
        } finally {
          trainer.release();
        }
      } catch (Exception e) {
        if (System.nanoTime() - started > HEALTHY_RUN.toNanos()) {
          backoffMs = 1000;
        }
        if (stopping) {
          return;
        }
        LOG.errorf(e, "trainer failed (retrying in %d s): %s", backoffMs / 1000, e.getMessage());
        try {
          Thread.sleep(backoffMs);
        } catch (InterruptedException ie) {
          return;
        }
        backoffMs = Math.min(60_000, backoffMs * 2);
      }
    }
  }

  void onShutdown(@Observes ShutdownEvent event) throws InterruptedException {
    stopping = true;
    if (broker != null) {
      broker.close();
    }
    if (thread != null) {
      ContinualTrainer t = trainer;
      if (t != null) {
        t.close(); // returns within a poll, or after the window in progress
      }
      thread.join(t == null ? 100 : 30_000);
      if (thread.isAlive()) { // in a back-off sleep, or a window that takes longer: the store makes stopping safe
        thread.interrupt();
        thread.join(5_000);
      }
    }
  }
}
