package dev.memgen.trainer;

import dev.memgen.log.BrokerProbe;
import jakarta.enterprise.context.ApplicationScoped;
import org.eclipse.microprofile.health.HealthCheck;
import org.eclipse.microprofile.health.HealthCheckResponse;
import org.eclipse.microprofile.health.HealthCheckResponseBuilder;
import org.eclipse.microprofile.health.Readiness;

/**
 * Ready (at {@code /q/health/ready}) when the trainers of the adapters this process holds run and the broker answers:
 * they learn from nothing else. A trainer the service is restarting after a failure (under its back-off) makes it
 * unready, with the activity it reports.
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
    // Every adapter this process holds must have its trainer running (a group member holding none is a ready standby).
    for (String adapter : loop.adapters()) {
      if (!loop.holds(adapter)) {
        continue;
      }
      String key = loop.adapters().size() == 1 ? "trainer" : "trainer " + adapter;
      loop.trainer(adapter).ifPresentOrElse(t -> r.withData(key, "v" + t.status().currentVersion() + ": " + t.status().activity()),
          () -> r.down().withData(key, "not running (starting, or restarting after a failure)"));
    }
    return r.build();
  }
}
