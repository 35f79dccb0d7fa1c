package dev.memgen.reasoner;

import dev.memgen.log.BrokerProbe;
import jakarta.annotation.PreDestroy;
import jakarta.enterprise.context.ApplicationScoped;
import java.time.Duration;
import java.util.Map;
import java.util.Optional;
import org.eclipse.microprofile.config.inject.ConfigProperty;
import org.eclipse.microprofile.health.HealthCheck;
import org.eclipse.microprofile.health.HealthCheckResponse;
import org.eclipse.microprofile.health.HealthCheckResponseBuilder;
import org.eclipse.microprofile.health.Readiness;

/**
 * Ready (at {@code /q/health/ready}) when the reasoner can do what a request asks: the model is loaded (this bean
 * needs it, so it exists only once the checkpoint has loaded), the memory services it calls can be reached, and the
 * experience log's broker answers. Liveness ({@code /q/health/live}) stays the process's own: a broker outage makes
 * the reasoner unready (a load balancer sends elsewhere) without getting it restarted — its spool keeps the records.
 */
@Readiness
@ApplicationScoped
public class ReasonerReadiness implements HealthCheck {
  private final ReasonerModel model;
  private final ReasonerMemoryConfig memory;
  private final BrokerProbe broker; // null: no experience log configured
  private final Duration serviceTimeout;

  ReasonerReadiness(ReasonerModel model, ReasonerMemoryConfig memory,
      @ConfigProperty(name = "memgen.log.bootstrap") Optional<String> bootstrap,
      @ConfigProperty(name = "memgen.health.broker-timeout", defaultValue = "2s") Duration brokerTimeout,
      @ConfigProperty(name = "memgen.health.memory-timeout", defaultValue = "1s") Duration serviceTimeout) {
    this.model = model;
    this.memory = memory;
    this.broker = bootstrap.map(b -> new BrokerProbe(b, brokerTimeout)).orElse(null);
    this.serviceTimeout = serviceTimeout;
  }

  @Override
  public HealthCheckResponse call() {
    HealthCheckResponseBuilder r = HealthCheckResponse.named("memgen-reasoner").up()
        .withData("model", model.dir() + " (" + model.config().numLayers() + " layers)");
    for (Map.Entry<String, String> s : memory.services(serviceTimeout).entrySet()) {
      r.withData(s.getKey(), s.getValue());
      if (!s.getValue().equals("SERVING")) {
        r.down();
      }
    }
    if (broker != null) {
      BrokerProbe.Answer a = broker.probe();
      r.withData("experience log", a.detail());
      if (!a.reachable()) {
        r.down();
      }
    }
    return r.build();
  }

  @PreDestroy
  void close() {
    if (broker != null) {
      broker.close();
    }
  }
}
