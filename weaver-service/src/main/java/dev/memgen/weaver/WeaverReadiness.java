package dev.memgen.weaver;

import jakarta.enterprise.context.ApplicationScoped;
import org.eclipse.microprofile.health.HealthCheck;
import org.eclipse.microprofile.health.HealthCheckResponse;
import org.eclipse.microprofile.health.HealthCheckResponseBuilder;
import org.eclipse.microprofile.health.Readiness;

/**
 * Ready (at {@code /q/health/ready}) once the model is loaded and warmed up and sessions are served (before that the
 * gRPC port answers UNAVAILABLE). The adapters topic it follows is reported, not required: without the broker the
 * weaver goes on serving the version it has; it only cannot swap in a new one.
 */
@Readiness
@ApplicationScoped
public class WeaverReadiness implements HealthCheck {
  private final WeaverReady ready;
  private final WeaverModel model;

  WeaverReadiness(WeaverReady ready, WeaverModel model) {
    this.ready = ready;
    this.model = model;
  }

  @Override
  public HealthCheckResponse call() {
    HealthCheckResponseBuilder r = HealthCheckResponse.named("memgen-weaver");
    if (ready.get() == null) {
      return r.down().withData("model", "loading or warming up").build();
    }
    r.up().withData("sessions", ready.get().openSessions()).withData("adapter", ready.get().defaultAdapterName());
    model.follower().ifPresent(f -> r.withData("adapters topic", f.status().summary()));
    return r.build();
  }
}
