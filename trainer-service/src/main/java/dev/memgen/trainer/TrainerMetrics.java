package dev.memgen.trainer;

import dev.memgen.rpc.ServiceMetrics;
import io.micrometer.core.instrument.FunctionCounter;
import io.micrometer.core.instrument.Gauge;
import io.micrometer.core.instrument.MeterRegistry;
import io.micrometer.core.instrument.config.MeterFilter;
import io.quarkus.runtime.Startup;
import jakarta.annotation.PreDestroy;
import jakarta.enterprise.context.ApplicationScoped;
import jakarta.enterprise.inject.Produces;
import jakarta.inject.Singleton;
import java.util.function.ToDoubleFunction;

/**
 * The trainer's metrics at {@code /q/metrics}: windows published and refused by the gate, the version serving, the
 * open window's progress, what became of the trajectories (trained, judged, duplicated, dead-lettered, skipped,
 * expired, waiting) and the consumer group's lag on the trajectories topic. Read from the trainer's status when
 * scraped; a trainer the service is restarting reads as zeros.
 */
@Startup
@ApplicationScoped
public class TrainerMetrics {
  private final TrainerLoop loop;
  private final ServiceMetrics.Registered meters;

  TrainerMetrics(MeterRegistry registry, TrainerLoop loop) {
    this.loop = loop;
    this.meters = new ServiceMetrics.Registered(registry);
    for (String adapter : loop.adapters()) { // in a trainer group, another member's adapters read as zeros here
      counter(registry, adapter, "memgen.trainer.windows", "published", "windows the gate accepted and published",
          s -> s.published());
      counter(registry, adapter, "memgen.trainer.windows", "refused", "windows whose candidate the gate refused",
          s -> s.rejected());
      counter(registry, adapter, "memgen.trainer.records.consumed", null, "trajectory records read", s -> s.consumed());
      gauge(registry, adapter, "memgen.trainer.version", "the version the trainer grows from (the one serving)",
          s -> s.currentVersion());
      gauge(registry, adapter, "memgen.trainer.window.trajectories", "trajectories in the open window",
          s -> s.windowTrajectories());
      gauge(registry, adapter, "memgen.trainer.window.rewarded", "rewarded trajectories in the open window",
          s -> s.windowRewarded());
      String byOutcome = "trajectories by outcome";
      counter(registry, adapter, "memgen.trainer.trajectories", "trained", byOutcome, s -> s.counts().trained());
      counter(registry, adapter, "memgen.trainer.trajectories", "low_reward", byOutcome, s -> s.counts().lowReward());
      counter(registry, adapter, "memgen.trainer.trajectories", "duplicate", byOutcome, s -> s.counts().duplicated());
      counter(registry, adapter, "memgen.trainer.trajectories", "dead_lettered", byOutcome, s -> s.counts().deadLettered());
      counter(registry, adapter, "memgen.trainer.trajectories", "skipped", byOutcome, s -> s.counts().skipped());
      counter(registry, adapter, "memgen.trainer.trajectories", "expired", byOutcome, s -> s.counts().expired());
      gauge(registry, adapter, "memgen.trainer.trajectories.waiting", "trajectories carried, waiting for a reward or a window",
          s -> s.counts().waiting());
      gauge(registry, adapter, "memgen.trainer.held", "1 while this process trains the adapter (a trainer group shares "
          + "them)", null);
      if (loop.broker().isPresent()) {
        meters.add(Gauge.builder("memgen.trainer.consumer.lag", this, m -> m.lag(adapter)).tag("adapter", adapter)
            .description("trajectory records not yet committed by the trainer's group (-1: the broker does not answer, "
                + "or another member of the trainer group trains the adapter)")
            .register(registry));
      }
    }
  }

  private double lag(String adapter) {
    return loop.trainer(adapter).map(t -> (double) loop.broker().orElseThrow().lag(t.groupId())).orElse(-1.0);
  }

  private void counter(MeterRegistry registry, String adapter, String name, String outcome, String help,
      ToDoubleFunction<ContinualTrainer.Status> value) {
    FunctionCounter.Builder<TrainerLoop> b = FunctionCounter.builder(name, loop,
        l -> l.trainer(adapter).map(t -> value.applyAsDouble(t.status())).orElse(0.0)).description(help).tag("adapter", adapter);
    meters.add((outcome == null ? b : b.tag("outcome", outcome)).register(registry));
  }

  /** {@code value} null: whether this process holds the adapter. */
  private void gauge(MeterRegistry registry, String adapter, String name, String help,
      ToDoubleFunction<ContinualTrainer.Status> value) {
    meters.add(Gauge.builder(name, loop, l -> value == null ? (l.holds(adapter) ? 1 : 0)
            : l.trainer(adapter).map(t -> value.applyAsDouble(t.status())).orElse(0.0))
        .tag("adapter", adapter).description(help).register(registry));
  }

  /** Every meter as Prometheus's linter wants it (see {@link ServiceMetrics#prometheusLint}). */
  @Produces
  @Singleton
  static MeterFilter prometheusLint() {
    return ServiceMetrics.prometheusLint();
  }

  @PreDestroy
  void close() {
    meters.close();
  }
}
