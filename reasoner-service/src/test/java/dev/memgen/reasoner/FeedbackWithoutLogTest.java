package dev.memgen.reasoner;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.memgen.proto.v1.FeedbackIntakeGrpc;
import dev.memgen.proto.v1.SubmitFeedbackRequest;
import dev.memgen.rpc.TinyModelResource;
import io.grpc.ManagedChannel;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import io.quarkus.test.common.WithTestResource;
import io.quarkus.test.common.http.TestHTTPResource;
import io.quarkus.test.junit.QuarkusTest;
import java.net.URL;
import java.net.http.HttpResponse;
import java.util.Map;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

/**
 * Feedback on a server without an experience log (memgen.log.bootstrap unset): refused as UNAVAILABLE / 503, but
 * bad input is still reported as such first. Same resources as {@link ReasonerServiceTest}, so the two share one app.
 */
@QuarkusTest
@WithTestResource(TinyModelResource.class)
class FeedbackWithoutLogTest {
  @TestHTTPResource("/v1/feedback")
  URL feedbackUrl;

  private ManagedChannel channel;
  private FeedbackIntakeGrpc.FeedbackIntakeBlockingStub intake;

  @BeforeEach
  void connect() {
    channel = GrpcTestChannel.open();
    intake = FeedbackIntakeGrpc.newBlockingStub(channel);
  }

  @AfterEach
  void disconnect() throws InterruptedException {
    GrpcTestChannel.close(channel);
  }

  @Test
  void grpcSaysUnavailableNamingTheMissingSetting() {
    StatusRuntimeException e = assertThrows(StatusRuntimeException.class,
        () -> intake.submit(SubmitFeedbackRequest.newBuilder().setTrajectoryId("t-1").setReward(1).build()));
    assertEquals(Status.Code.UNAVAILABLE, e.getStatus().getCode());
    assertTrue(e.getStatus().getDescription().contains("memgen.log.bootstrap"), e.getStatus().getDescription());

    StatusRuntimeException invalid = assertThrows(StatusRuntimeException.class,
        () -> intake.submit(SubmitFeedbackRequest.newBuilder().setTrajectoryId("t-1").setReward(Double.NaN).build()));
    assertEquals(Status.Code.INVALID_ARGUMENT, invalid.getStatus().getCode(), "a bad request is the client's to fix");
    assertTrue(invalid.getStatus().getDescription().startsWith("reward "), invalid.getStatus().getDescription());
  }

  @Test
  void restSays503NamingTheMissingSetting() throws Exception {
    HttpResponse<String> r = FeedbackIntakeTest.post(feedbackUrl,
        FeedbackIntakeTest.json(Map.of("trajectory_id", "t-1", "reward", 1)));
    assertEquals(503, r.statusCode(), r.body());
    assertTrue(FeedbackIntakeTest.error(r).contains("memgen.log.bootstrap"), r.body());

    HttpResponse<String> invalid = FeedbackIntakeTest.post(feedbackUrl, "{\"trajectory_id\": \"t-1\"}");
    assertEquals(400, invalid.statusCode(), invalid.body());
    assertTrue(FeedbackIntakeTest.error(invalid).startsWith("reward "), invalid.body());
  }
}
