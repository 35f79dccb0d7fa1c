package dev.memgen.weaver;

import dev.memgen.rpc.ServiceMetrics;
import io.micrometer.core.instrument.MeterRegistry;
import io.micrometer.core.instrument.config.MeterFilter;
import io.quarkus.runtime.Startup;
import jakarta.annotation.PreDestroy;
import jakarta.enterprise.context.ApplicationScoped;
import jakarta.enterprise.inject.Produces;
import jakarta.inject.Singleton;

/**
 * The weaver's metrics at {@code /q/metrics}: its batched weave passes (how many, the weave requests they carried —
 * their ratio is the mean batch across sessions — and their time), the sessions open, the adapter version new
 * sessions get and the versions swapped in or refused.
 */
@Startup
@ApplicationScoped
public class WeaverMetrics {
  private final ServiceMetrics.Registered meters;

  WeaverMetrics(MeterRegistry registry, WeaverModel model) {
    meters = new ServiceMetrics.Registered(registry);
    meters.addAll(ServiceMetrics.bindMemoryService(registry, "weaver", model.service(), model.follower()));
  }

  @PreDestroy
  void close() {
    meters.close();
  }

  /** Every meter as Prometheus's linter wants it (see {@link ServiceMetrics#prometheusLint}). */
  @Produces
  @Singleton
  static MeterFilter prometheusLint() {
    return ServiceMetrics.prometheusLint();
  }
}
