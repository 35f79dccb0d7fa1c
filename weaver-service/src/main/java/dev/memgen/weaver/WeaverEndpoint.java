package dev.memgen.weaver;

import dev.memgen.proto.v1.DescribeRequest;
import dev.memgen.proto.v1.MemoryDescription;
import dev.memgen.proto.v1.WeaverGrpc;
import dev.memgen.proto.v1.WeaverReply;
import dev.memgen.proto.v1.WeaverRequest;
import io.grpc.stub.StreamObserver;
import io.quarkus.grpc.GrpcService;

/**
 * {@code memgen.v1.Weaver}: Session and Describe. Runs on the gRPC event loop only long enough to hand each message to the
 * service's model thread, so nothing here blocks.
 */
@GrpcService
public class WeaverEndpoint extends WeaverGrpc.WeaverImplBase {
  private final WeaverModel model;

  WeaverEndpoint(WeaverModel model) {
    this.model = model;
  }

  @Override
  public StreamObserver<WeaverRequest> session(StreamObserver<WeaverReply> out) {
    return model.service().session(out);
  }

  @Override
  public void describe(DescribeRequest request, StreamObserver<MemoryDescription> out) {
    model.service().describe(request, out);
  }
}
