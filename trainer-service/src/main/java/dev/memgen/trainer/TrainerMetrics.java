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
    String adapter = loop.settings().map(ContinualTrainer.Settings::adapterName).orElse("");
    counter(registry, "memgen.trainer.windows", "published", "windows the gate accepted and published", s -> s.published());
    counter(registry, "memgen.trainer.windows", "refused", "windows whose candidate the gate refused", s -> s.rejected());
    counter(registry, "memgen.trainer.records.consumed", null, "trajectory records read", s -> s.consumed());
    gauge(registry, "memgen.trainer.version", adapter, "the version the trainer grows from (the one serving)",
        s -> s.currentVersion());
    gauge(registry, "memgen.trainer.window.trajectories", adapter, "trajectories in the open window", s -> s.windowTrajectories());
    gauge(registry, "memgen.trainer.window.rewarded", adapter, "rewarded trajectories in the open window",
        s -> s.windowRewarded());
    counter(registry, "memgen.trainer.trajectories", "trained", "trajectories by outcome", s -> s.counts().trained());
    counter(registry, "memgen.trainer.trajectories", "low_reward", "trajectories by outcome", s -> s.counts().lowReward());
    counter(registry, "memgen.trainer.trajectories", "duplicate", "trajectories by outcome", s -> s.counts().duplicated());
    counter(registry, "memgen.trainer.trajectories", "dead_lettered", "trajectories by outcome", s -> s.counts().deadLettered());
    counter(registry, "memgen.trainer.trajectories", "skipped", "trajectories by outcome", s -> s.counts().skipped());
    counter(registry, "memgen.trainer.trajectories", "expired", "trajectories by outcome", s -> s.counts().expired());
    gauge(registry, "memgen.trainer.trajectories.waiting", adapter, "trajectories carried, waiting for a reward or a window",
        s -> s.counts().waiting());
    if (loop.broker().isPresent()) {
      meters.add(Gauge.builder("memgen.trainer.consumer.lag", this, m -> m.lag()).tag("adapter", adapter)
          .description("trajectory records not yet committed by the trainer's group (-1: the broker does not answer)")
          .register(registry));
    }
  }

  private double lag() {
    return loop.trainer().map(t -> (double) loop.broker().orElseThrow().lag(t.groupId())).orElse(-1.0);
  }

  private void counter(MeterRegistry registry, String name, String outcome, String help,
      ToDoubleFunction<ContinualTrainer.Status> value) {
    FunctionCounter.Builder<TrainerLoop> b = FunctionCounter.builder(name, loop,
        l -> l.trainer().map(t -> value.applyAsDouble(t.status())).orElse(0.0)).description(help);
    meters.add((outcome == null ? b : b.tag("outcome", outcome)).register(registry));
  }

  private void gauge(MeterRegistry registry, String name, String adapter, String help,
      ToDoubleFunction<ContinualTrainer.Status> value) {
    meters.add(Gauge.builder(name, loop, l -> l.trainer().map(t -> value.applyAsDouble(t.status())).orElse(0.0))
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
