package dev.memgen.reasoner;

import dev.memgen.proto.v1.FeedbackIntakeGrpc;
import dev.memgen.proto.v1.SubmitFeedbackReply;
import dev.memgen.proto.v1.SubmitFeedbackRequest;
import io.grpc.StatusRuntimeException;
import io.grpc.stub.StreamObserver;
import io.quarkus.grpc.GrpcService;

/**
 * {@code memgen.v1.FeedbackIntake/Submit} over gRPC: a thin adapter over {@link FeedbackIntake}.
 *
 * <p>Not {@code @Blocking}: a submission is validated and put in the experience log's spool, which never waits for
 * Kafka, so it runs on the event loop without holding it up.
 */
@GrpcService
public class FeedbackGrpcService extends FeedbackIntakeGrpc.FeedbackIntakeImplBase {
  private final FeedbackIntake intake;

  FeedbackGrpcService(FeedbackIntake intake) {
    this.intake = intake;
  }

  @Override
  public void submit(SubmitFeedbackRequest request, StreamObserver<SubmitFeedbackReply> out) {
    String feedbackId;
    try {
      feedbackId = intake.submit(request);
    } catch (StatusRuntimeException e) {
      out.onError(e);
      return;
    }
    out.onNext(SubmitFeedbackReply.newBuilder().setFeedbackId(feedbackId).build());
    out.onCompleted();
  }
}
