package dev.memgen.reasoner;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.ObjectMapper;
import dev.memgen.log.SpooledPublisher;
import dev.memgen.proto.v1.SubmitFeedbackReply;
import dev.memgen.proto.v1.SubmitFeedbackRequest;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import io.grpc.stub.StreamObserver;
import jakarta.ws.rs.core.Response;
import java.net.ServerSocket;
import java.time.Duration;
import org.junit.jupiter.api.Test;

/**
 * A full spool refuses feedback: RESOURCE_EXHAUSTED over gRPC, 429 over REST, counted by the publisher. The spool is
 * a real {@link SpooledPublisher} whose broker is unreachable (a port nothing listens on), so records pile up as
 * during an outage. Outside Quarkus: the app under test elsewhere has a reachable broker, whose spool never fills.
 */
class FeedbackSpoolFullTest {
  @Test
  void aFullSpoolIsResourceExhaustedOverGrpcAnd429OverRest() throws Exception {
    int deadPort;
    try (ServerSocket s = new ServerSocket(0)) {
      deadPort = s.getLocalPort();
    }
    SpooledPublisher publisher = new SpooledPublisher("127.0.0.1:" + deadPort, 1);
    try {
      FeedbackIntake intake = new FeedbackIntake(new ExperienceRecorder(publisher));
      FeedbackGrpcService grpc = new FeedbackGrpcService(intake);
      FeedbackResource rest = new FeedbackResource(intake, new ObjectMapper());

      // The spool holds one record, and the sender holds at most one more while it waits (max.block.ms, 5 s) for
      // metadata from a broker that is not there: by the third submission the spool must refuse.
      Throwable refused = null;
      for (int i = 0; i < 3 && refused == null; i++) {
        Recorded reply = new Recorded();
        grpc.submit(SubmitFeedbackRequest.newBuilder().setTrajectoryId("t-" + i).setReward(1).build(), reply);
        refused = reply.error;
        if (refused == null) {
          assertNotNull(reply.value, "neither a reply nor an error");
        }
      }
      assertNotNull(refused, "three submissions fit in a spool of one");
      Status status = assertInstanceOf(StatusRuntimeException.class, refused).getStatus();
      assertEquals(Status.Code.RESOURCE_EXHAUSTED, status.getCode());
      assertTrue(status.getDescription().contains("spool is full"), status.getDescription());

      // The gRPC refusal may have come before the sender took its first record (a slow thread start), which then
      // frees a slot: REST may fit one more, never two.
      Response r = null;
      for (int i = 0; i < 2 && (r == null || r.getStatus() == 200); i++) {
        r = rest.submit("{\"trajectory_id\": \"t-rest\", \"reward\": 1, \"feedback_id\": \"fb-rest\"}");
      }
      assertEquals(429, r.getStatus());
      String error = assertInstanceOf(FeedbackResource.ErrorBody.class, r.getEntity()).error();
      assertTrue(error.contains("spool is full") && error.contains("fb-rest"),
          "says why and which feedback to resend: " + error);
      assertTrue(publisher.stats().overflowed() >= 2, "refusals are counted: " + publisher.stats());
    } finally {
      publisher.close(Duration.ofMillis(200));
    }
  }

  /** What a unary gRPC call answered. */
  private static final class Recorded implements StreamObserver<SubmitFeedbackReply> {
    SubmitFeedbackReply value;
    Throwable error;

    @Override
    public void onNext(SubmitFeedbackReply value) {
      this.value = value;
    }

    @Override
    public void onError(Throwable t) {
      error = t;
    }

    @Override
    public void onCompleted() {}
  }
}
