package dev.memgen.trigger;

import dev.memgen.proto.v1.TriggerGrpc;
import dev.memgen.proto.v1.TriggerReply;
import dev.memgen.proto.v1.TriggerRequest;
import dev.memgen.rpc.NotReady;
import dev.memgen.rpc.TriggerService;
import io.grpc.stub.StreamObserver;
import io.quarkus.grpc.GrpcService;

/**
 * {@code memgen.v1.Trigger/Session}. Runs on the gRPC event loop only long enough to hand each message to the
 * service's model thread, so nothing here blocks; before the service has started, calls get UNAVAILABLE
 * ({@link NotReady}).
 */
@GrpcService
public class TriggerEndpoint extends TriggerGrpc.TriggerImplBase {
  private final TriggerReady ready;

  TriggerEndpoint(TriggerReady ready) {
    this.ready = ready;
  }

  @Override
  public StreamObserver<TriggerRequest> session(StreamObserver<TriggerReply> out) {
    TriggerService service = ready.get();
    return service == null ? NotReady.refuseStream(out, "the trigger") : service.session(out);
  }
}
