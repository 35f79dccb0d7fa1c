package dev.memgen.trainer;

import dev.memgen.log.BrokerProbe;
import jakarta.enterprise.context.ApplicationScoped;
import org.eclipse.microprofile.health.HealthCheck;
import org.eclipse.microprofile.health.HealthCheckResponse;
import org.eclipse.microprofile.health.HealthCheckResponseBuilder;
import org.eclipse.microprofile.health.Readiness;

/**
 * Ready (at {@code /q/health/ready}) when the trainer runs and its broker answers: it learns from nothing else. A
 * trainer the service is restarting after a failure (under its back-off) is unready, with the activity it reports.
 * Without an experience log the service idles and is ready (it only answers health and TrainerAdmin).
 */
@Readiness
@ApplicationScoped
public class TrainerReadiness implements HealthCheck {
  private final TrainerLoop loop;

  TrainerReadiness(TrainerLoop loop) {
    this.loop = loop;
  }

  @Override
  public HealthCheckResponse call() {
    HealthCheckResponseBuilder r = HealthCheckResponse.named("memgen-trainer").up();
    if (loop.broker().isEmpty()) {
      return r.withData("trainer", "idle: no experience log (memgen.log.bootstrap)").build();
    }
    BrokerProbe.Answer a = loop.broker().get().probe();
    r.withData("experience log", a.detail());
    if (!a.reachable()) {
      r.down();
    }
    loop.trainer().ifPresentOrElse(t -> r.withData("trainer", "v" + t.status().currentVersion() + ": " + t.status().activity()),
        () -> r.down().withData("trainer", "not running (starting, or restarting after a failure)"));
    return r.build();
  }
}
