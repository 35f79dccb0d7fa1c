package dev.memgen.reasoner;

import io.grpc.ManagedChannel;
import io.grpc.ManagedChannelBuilder;
import io.quarkus.arc.Arc;
import io.quarkus.grpc.runtime.GrpcServer;
import io.quarkus.value.registry.ValueRegistry;
import java.util.concurrent.TimeUnit;

/** A plain grpc-java client channel to the running app's gRPC server on loopback (its port is picked at random). */
final class GrpcTestChannel {
  private GrpcTestChannel() {}

  /** The port the gRPC server actually bound (quarkus.grpc.server.test-port=0 asks for a free one). */
  static int port() {
    return Arc.container().instance(ValueRegistry.class).get().get(GrpcServer.GRPC_PORT);
  }

  static ManagedChannel open() {
    return ManagedChannelBuilder.forAddress("127.0.0.1", port()).usePlaintext().build();
  }

  static void close(ManagedChannel channel) throws InterruptedException {
    if (channel != null) {
      channel.shutdownNow().awaitTermination(5, TimeUnit.SECONDS);
    }
  }
}
