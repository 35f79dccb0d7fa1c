package dev.memgen.weaver;

import io.grpc.BindableService;
import io.grpc.ServerServiceDefinition;
import io.grpc.health.v1.HealthCheckResponse.ServingStatus;
import io.grpc.protobuf.services.HealthStatusManager;
import io.quarkus.grpc.GrpcService;
import io.quarkus.runtime.ShutdownEvent;
import jakarta.enterprise.event.Observes;

/**
 * The standard gRPC health service ({@code grpc.health.v1.Health}), served by grpc-java's reference
 * implementation: SERVING for the server as a whole ({@code ""}) while the application runs, NOT_SERVING once it
 * shuts down.
 *
 * <p>Why this class exists: quarkus-grpc starts its gRPC server, and adds its own health endpoint, only when the
 * application has at least one {@link BindableService} bean of its own (measured with Quarkus 3.34.2: without
 * one it logs "Unable to find beans exposing the `BindableService` interface - not starting the gRPC server").
 * This module serves no memgen.v1 service yet, so this bean is that service, and Quarkus's built-in endpoint is
 * switched off ({@code quarkus.grpc.server.grpc-health.enabled=false}) so that one health service is registered.
 * When the later issue adds the real service, delete this class (and its grpc-services dependency) and turn the
 * built-in endpoint back on.
 */
@GrpcService
public class StandardHealthService implements BindableService {
  private final HealthStatusManager health = new HealthStatusManager(); // starts with "" SERVING

  void onShutdown(@Observes ShutdownEvent event) {
    health.setStatus(HealthStatusManager.SERVICE_NAME_ALL_SERVICES, ServingStatus.NOT_SERVING);
    health.enterTerminalState();
  }

  @Override
  public ServerServiceDefinition bindService() {
    return health.getHealthService().bindService();
  }
}
