package dev.memgen.trigger;

import dev.memgen.proto.v1.TriggerGrpc;
import dev.memgen.proto.v1.TriggerReply;
import dev.memgen.proto.v1.TriggerRequest;
import io.grpc.stub.StreamObserver;
import io.quarkus.grpc.GrpcService;

/**
 * {@code memgen.v1.Trigger/Session}. Runs on the gRPC event loop only long enough to hand each message to the
 * service's model thread, so nothing here blocks.
 */
@GrpcService
public class TriggerEndpoint extends TriggerGrpc.TriggerImplBase {
  private final TriggerModel model;

  TriggerEndpoint(TriggerModel model) {
    this.model = model;
  }

  @Override
  public StreamObserver<TriggerRequest> session(StreamObserver<TriggerReply> out) {
    return model.service().session(out);
  }
}
