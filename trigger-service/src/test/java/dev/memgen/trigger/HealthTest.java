package dev.memgen.trigger;

import static org.junit.jupiter.api.Assertions.assertEquals;

import grpc.health.v1.HealthGrpc;
import grpc.health.v1.HealthOuterClass.HealthCheckRequest;
import grpc.health.v1.HealthOuterClass.HealthCheckResponse.ServingStatus;
import io.grpc.ManagedChannel;
import io.grpc.ManagedChannelBuilder;
import io.quarkus.arc.Arc;
import io.quarkus.grpc.runtime.GrpcServer;
import io.quarkus.test.junit.QuarkusTest;
import io.quarkus.value.registry.ValueRegistry;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;

/** The service starts a real gRPC server and its standard health service answers SERVING over loopback. */
@QuarkusTest
class HealthTest {
  @Test
  void healthReportsServing() throws InterruptedException {
    // quarkus.grpc.server.test-port=0 picks a free port; the server records the one it bound.
    int port = Arc.container().instance(ValueRegistry.class).get().get(GrpcServer.GRPC_PORT);
    ManagedChannel channel = ManagedChannelBuilder.forAddress("127.0.0.1", port).usePlaintext().build();
    try {
      HealthGrpc.HealthBlockingStub health = HealthGrpc.newBlockingStub(channel).withDeadlineAfter(10, TimeUnit.SECONDS);
      assertEquals(ServingStatus.SERVING, health.check(HealthCheckRequest.getDefaultInstance()).getStatus());
    } finally {
      channel.shutdownNow().awaitTermination(5, TimeUnit.SECONDS);
    }
  }
}
