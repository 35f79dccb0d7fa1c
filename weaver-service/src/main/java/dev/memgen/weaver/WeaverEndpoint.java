package dev.memgen.weaver;

import dev.memgen.proto.v1.DescribeRequest;
import dev.memgen.proto.v1.MemoryDescription;
import dev.memgen.proto.v1.WeaverGrpc;
import dev.memgen.proto.v1.WeaverReply;
import dev.memgen.proto.v1.WeaverRequest;
import dev.memgen.rpc.NotReady;
import dev.memgen.rpc.WeaverService;
import io.grpc.stub.StreamObserver;
import io.quarkus.grpc.GrpcService;

/**
 * {@code memgen.v1.Weaver}: Session and Describe. Runs on the gRPC event loop only long enough to hand each message to the
 * service's model thread, so nothing here blocks; before the service has started, calls get UNAVAILABLE
 * ({@link NotReady}).
 */
@GrpcService
public class WeaverEndpoint extends WeaverGrpc.WeaverImplBase {
  private final WeaverReady ready;

  WeaverEndpoint(WeaverReady ready) {
    this.ready = ready;
  }

  @Override
  public StreamObserver<WeaverRequest> session(StreamObserver<WeaverReply> out) {
    WeaverService service = ready.get();
    return service == null ? NotReady.refuseStream(out, "the weaver") : service.session(out);
  }

  @Override
  public void describe(DescribeRequest request, StreamObserver<MemoryDescription> out) {
    WeaverService service = ready.get();
    if (service == null) {
      NotReady.refuse(out, "the weaver");
    } else {
      service.describe(request, out);
    }
  }
}
