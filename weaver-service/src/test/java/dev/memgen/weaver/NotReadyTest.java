package dev.memgen.weaver;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.memgen.proto.v1.DescribeRequest;
import dev.memgen.proto.v1.WeaverGrpc;
import dev.memgen.proto.v1.WeaverReply;
import dev.memgen.proto.v1.WeaverRequest;
import io.grpc.ManagedChannel;
import io.grpc.Server;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import io.grpc.inprocess.InProcessChannelBuilder;
import io.grpc.inprocess.InProcessServerBuilder;
import io.grpc.stub.StreamObserver;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;

/**
 * Quarkus opens the gRPC port before the model is loaded: calls that come then are refused at once with UNAVAILABLE
 * (they used to wait on the event loop for the model bean, seconds at a time).
 */
class NotReadyTest {
  @Test
  void callsBeforeTheModelIsReadyAreRefusedAtOnce() throws Exception {
    String name = InProcessServerBuilder.generateName();
    Server server = InProcessServerBuilder.forName(name).addService(new WeaverEndpoint(new WeaverReady())).build().start();
    ManagedChannel channel = InProcessChannelBuilder.forName(name).build();
    try {
      StatusRuntimeException e = org.junit.jupiter.api.Assertions.assertThrows(StatusRuntimeException.class,
          () -> WeaverGrpc.newBlockingStub(channel).withDeadlineAfter(30, TimeUnit.SECONDS)
              .describe(DescribeRequest.getDefaultInstance()));
      assertEquals(Status.Code.UNAVAILABLE, e.getStatus().getCode());
      assertTrue(e.getStatus().getDescription().contains("starting"), e.getMessage());

      CompletableFuture<Throwable> ended = new CompletableFuture<>();
      StreamObserver<WeaverRequest> session = WeaverGrpc.newStub(channel).session(new StreamObserver<WeaverReply>() {
        @Override
        public void onNext(WeaverReply r) {}

        @Override
        public void onError(Throwable t) {
          ended.complete(t);
        }

        @Override
        public void onCompleted() {
          ended.complete(null);
        }
      });
      session.onNext(WeaverRequest.getDefaultInstance());
      assertEquals(Status.Code.UNAVAILABLE, Status.fromThrowable(ended.get(30, TimeUnit.SECONDS)).getCode());
    } finally {
      channel.shutdownNow();
      server.shutdownNow();
    }
  }
}
