package dev.memgen.reasoner;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.google.protobuf.util.Timestamps;
import dev.memgen.log.Topics;
import dev.memgen.proto.v1.Feedback;
import dev.memgen.proto.v1.FeedbackIntakeGrpc;
import dev.memgen.proto.v1.SubmitFeedbackRequest;
import io.grpc.ManagedChannel;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import io.quarkus.test.common.http.TestHTTPResource;
import io.quarkus.test.junit.QuarkusTest;
import io.quarkus.test.junit.TestProfile;
import java.net.URL;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.UUID;
import java.util.function.UnaryOperator;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

/**
 * FeedbackIntake over real gRPC and real HTTP on loopback, into the real broker: what a client sends is what the
 * Feedback record on memgen.feedback says, and every kind of bad input is refused with the right code and a message
 * naming the field, without stopping the service or leaking a record.
 */
@QuarkusTest
@TestProfile(ExperienceLogProfile.class)
class FeedbackIntakeTest {
  private static final ObjectMapper JSON = new ObjectMapper();
  private static final HttpClient HTTP = HttpClient.newHttpClient();

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

  // ---- gRPC ----

  @Test
  void grpcSubmissionBecomesAFeedbackRecordWithEveryField() throws Exception {
    String trajectory = "traj-" + UUID.randomUUID();
    long before = System.currentTimeMillis();
    String id = intake.submit(SubmitFeedbackRequest.newBuilder().setTrajectoryId(trajectory).setReward(0.75)
        .setSource("boxed-exact-match").setComment("right answer, long way round").setFeedbackId("client-fb-1").build())
        .getFeedbackId();
    long after = System.currentTimeMillis();
    assertEquals("client-fb-1", id, "the client's feedback_id is kept");

    Feedback f = awaitFeedback(trajectory);
    assertEquals("client-fb-1", f.getFeedbackId());
    assertEquals(0.75, f.getReward());
    assertEquals("boxed-exact-match", f.getSource());
    assertEquals("right answer, long way round", f.getComment());
    assertCreatedBetween(f, before, after);
    assertEquals(1, f.getSchemaVersion());
  }

  @Test
  void grpcSubmissionFillsInSourceAndFeedbackId() throws Exception {
    String trajectory = "traj-" + UUID.randomUUID();
    String id = intake.submit(SubmitFeedbackRequest.newBuilder().setTrajectoryId(trajectory).setReward(-1).build())
        .getFeedbackId();
    assertEquals(id, UUID.fromString(id).toString(), "a generated feedback_id is a UUID");

    Feedback f = awaitFeedback(trajectory);
    assertEquals(id, f.getFeedbackId(), "the reply names the id the record carries");
    assertEquals(-1.0, f.getReward());
    assertEquals("human", f.getSource(), "an empty source means a person judged it");
    assertEquals("", f.getComment());
    assertTrue(f.hasCreatedAt());
    assertEquals(1, f.getSchemaVersion());
  }

  @Test
  void grpcRefusesBadInputNamingTheFieldAndKeepsServing() throws Exception {
    String tag = "bad-" + UUID.randomUUID() + "-";
    // field the message must start with -> request
    List<Map.Entry<String, SubmitFeedbackRequest>> bad = List.of(
        Map.entry("trajectory_id", request("", 1).build()),
        Map.entry("trajectory_id", request("   ", 1).build()),
        Map.entry("trajectory_id", request(tag + "x".repeat(FeedbackIntake.MAX_ID), 1).build()),
        Map.entry("reward", request(tag + "nan", Double.NaN).build()),
        Map.entry("reward", request(tag + "inf", Double.POSITIVE_INFINITY).build()),
        Map.entry("reward", request(tag + "-inf", Double.NEGATIVE_INFINITY).build()),
        Map.entry("source", request(tag + "source", 1).setSource("s".repeat(FeedbackIntake.MAX_SOURCE + 1)).build()),
        Map.entry("source", request(tag + "blank-source", 1).setSource(" \t").build()),
        Map.entry("comment", request(tag + "comment", 1).setComment("c".repeat(FeedbackIntake.MAX_COMMENT + 1)).build()),
        Map.entry("feedback_id", request(tag + "id", 1).setFeedbackId("f".repeat(FeedbackIntake.MAX_ID + 1)).build()),
        Map.entry("feedback_id", request(tag + "blank-id", 1).setFeedbackId("  ").build()));
    for (Map.Entry<String, SubmitFeedbackRequest> c : bad) {
      String field = c.getKey();
      StatusRuntimeException e = assertThrows(StatusRuntimeException.class, () -> intake.submit(c.getValue()),
          "accepted a bad " + field + ": " + c.getValue());
      assertEquals(Status.Code.INVALID_ARGUMENT, e.getStatus().getCode(), field);
      assertTrue(e.getStatus().getDescription().startsWith(field + " "),
          "the message names " + field + ": " + e.getStatus().getDescription());
    }

    // Limits are inclusive, and count characters, not UTF-16 units: 128 emoji are 256 units.
    String emoji = "\uD83D\uDC4D".repeat(FeedbackIntake.MAX_SOURCE);
    String good = tag + "good";
    intake.submit(request(good, 1).setSource(emoji).setComment("c".repeat(FeedbackIntake.MAX_COMMENT))
        .setFeedbackId("f".repeat(FeedbackIntake.MAX_ID)).build());
    List<KafkaResource.Received<Feedback>> read = KafkaResource.readUntil(Topics.FEEDBACK, Feedback.parser(),
        f -> f.getTrajectoryId().equals(good));
    Feedback f = read.get(read.size() - 1).value();
    assertEquals(emoji, f.getSource());
    assertEquals(FeedbackIntake.MAX_COMMENT, f.getComment().length());
    assertTrue(read.stream().noneMatch(r -> r.value().getTrajectoryId().startsWith(tag) && r != read.get(read.size() - 1)),
        "a refused submission reached the log");
  }

  // ---- REST ----

  @Test
  void restSubmissionBecomesAFeedbackRecordWithEveryField() throws Exception {
    String trajectory = "traj-" + UUID.randomUUID();
    long before = System.currentTimeMillis();
    HttpResponse<String> r = post(json(Map.of("trajectory_id", trajectory, "reward", 1, "source", "unit-tests",
        "comment", "ok", "feedback_id", "client-fb-2")));
    long after = System.currentTimeMillis();
    assertEquals(200, r.statusCode(), r.body());
    assertEquals("application/json", r.headers().firstValue("Content-Type").orElse("").split(";")[0]);
    assertEquals("client-fb-2", JSON.readTree(r.body()).get("feedback_id").asText());

    Feedback f = awaitFeedback(trajectory);
    assertEquals("client-fb-2", f.getFeedbackId());
    assertEquals(1.0, f.getReward());
    assertEquals("unit-tests", f.getSource());
    assertEquals("ok", f.getComment());
    assertCreatedBetween(f, before, after);
    assertEquals(1, f.getSchemaVersion());
  }

  @Test
  void restSubmissionFillsInSourceAndFeedbackId() throws Exception {
    String trajectory = "traj-" + UUID.randomUUID();
    // null is "not given", like an absent field.
    HttpResponse<String> r = post("{\"trajectory_id\": \"" + trajectory + "\", \"reward\": 0.25, \"source\": null}");
    assertEquals(200, r.statusCode(), r.body());
    String id = JSON.readTree(r.body()).get("feedback_id").asText();
    assertEquals(id, UUID.fromString(id).toString(), "a generated feedback_id is a UUID");

    Feedback f = awaitFeedback(trajectory);
    assertEquals(id, f.getFeedbackId());
    assertEquals(0.25, f.getReward());
    assertEquals("human", f.getSource());
    assertEquals("", f.getComment());
    assertEquals(1, f.getSchemaVersion());
  }

  @Test
  void restRefusesBadInputWith400NamingTheFieldAndKeepsServing() throws Exception {
    String tag = "bad-" + UUID.randomUUID() + "-";
    UnaryOperator<String> t = s -> "\"trajectory_id\": \"" + tag + s + "\"";
    // body -> what the error must name
    Map<String, String> bad = new LinkedHashMap<>();
    bad.put("{\"trajectory_id\": \"" + tag + "a\", \"reward\": ", "malformed JSON");
    bad.put("{" + t.apply("b") + ", \"reward\": 1} trailing", "malformed JSON");
    bad.put("{" + t.apply("c") + ", \"reward\": 1, \"reward\": 0}", "reward"); // a repeated key
    bad.put("{" + t.apply("c2") + ", \"reward\": 1} {}", "more text after");
    bad.put("", "JSON object");
    bad.put("[1, 2]", "JSON object");
    bad.put("\"just a string\"", "JSON object");
    bad.put("{\"reward\": 1}", "trajectory_id");
    bad.put("{\"trajectory_id\": 42, \"reward\": 1}", "trajectory_id");
    bad.put("{\"trajectory_id\": \"" + "x".repeat(FeedbackIntake.MAX_ID + 1) + "\", \"reward\": 1}", "trajectory_id");
    bad.put("{" + t.apply("d") + "}", "reward");
    bad.put("{" + t.apply("e") + ", \"reward\": null}", "reward");
    bad.put("{" + t.apply("f") + ", \"reward\": \"0.5\"}", "reward");
    bad.put("{" + t.apply("g") + ", \"reward\": true}", "reward");
    bad.put("{" + t.apply("h") + ", \"reward\": 1e999}", "reward");
    bad.put("{" + t.apply("i") + ", \"reward\": NaN}", "malformed JSON");
    bad.put("{" + t.apply("j") + ", \"reward\": 1, \"source\": 7}", "source");
    bad.put("{" + t.apply("k") + ", \"reward\": 1, \"source\": \"" + "s".repeat(FeedbackIntake.MAX_SOURCE + 1) + "\"}",
        "source");
    bad.put("{" + t.apply("l") + ", \"reward\": 1, \"comment\": {\"text\": \"hi\"}}", "comment");
    bad.put("{" + t.apply("m") + ", \"reward\": 1, \"feedback_id\": [\"a\"]}", "feedback_id");
    bad.put("{" + t.apply("n") + ", \"reward\": 1, \"rewrd\": 1}", "\"rewrd\"");
    bad.put("{" + t.apply("o") + ", \"reward\": 1, \"trajectoryId\": \"camel\"}", "\"trajectoryId\"");
    for (Map.Entry<String, String> c : bad.entrySet()) {
      HttpResponse<String> r = post(c.getKey());
      assertEquals(400, r.statusCode(), "body " + c.getKey() + " -> " + r.body());
      String error = error(r);
      assertTrue(error.contains(c.getValue()), "error for " + c.getKey() + " names " + c.getValue() + ": " + error);
    }

    // Not JSON at all: 415 (and no cross-site form posts).
    HttpResponse<String> form = HTTP.send(HttpRequest.newBuilder(feedbackUrl.toURI())
        .header("Content-Type", "application/x-www-form-urlencoded")
        .POST(HttpRequest.BodyPublishers.ofString("trajectory_id=" + tag + "form&reward=1")).build(),
        HttpResponse.BodyHandlers.ofString());
    assertEquals(415, form.statusCode());

    String good = tag + "good";
    HttpResponse<String> ok = post(json(Map.of("trajectory_id", good, "reward", 0)));
    assertEquals(200, ok.statusCode(), ok.body());
    List<KafkaResource.Received<Feedback>> read = KafkaResource.readUntil(Topics.FEEDBACK, Feedback.parser(),
        f -> f.getTrajectoryId().equals(good));
    assertEquals(0.0, read.get(read.size() - 1).value().getReward());
    assertTrue(read.stream().noneMatch(r -> r.value().getTrajectoryId().startsWith(tag) && r != read.get(read.size() - 1)),
        "a refused submission reached the log");
  }

  // ---- helpers ----

  private static SubmitFeedbackRequest.Builder request(String trajectoryId, double reward) {
    return SubmitFeedbackRequest.newBuilder().setTrajectoryId(trajectoryId).setReward(reward);
  }

  /** The one Feedback record for {@code trajectoryId}, checking it is keyed by the trajectory. */
  private static Feedback awaitFeedback(String trajectoryId) throws Exception {
    KafkaResource.Received<Feedback> r =
        KafkaResource.await(Topics.FEEDBACK, Feedback.parser(), f -> f.getTrajectoryId().equals(trajectoryId));
    assertEquals(trajectoryId, r.key(), "keyed by trajectory id");
    return r.value();
  }

  private static void assertCreatedBetween(Feedback f, long fromMillis, long toMillis) {
    assertTrue(f.hasCreatedAt(), "created_at is set");
    long at = Timestamps.toMillis(f.getCreatedAt());
    assertTrue(at >= fromMillis && at <= toMillis, "created_at " + at + " within the call [" + fromMillis + ", " + toMillis + "]");
  }

  private HttpResponse<String> post(String body) throws Exception {
    return post(feedbackUrl, body);
  }

  /** POSTs {@code body} as application/json. */
  static HttpResponse<String> post(URL url, String body) throws Exception {
    return HTTP.send(HttpRequest.newBuilder(url.toURI()).header("Content-Type", "application/json")
        .POST(HttpRequest.BodyPublishers.ofString(body)).build(), HttpResponse.BodyHandlers.ofString());
  }

  static String json(Map<String, Object> fields) throws Exception {
    return JSON.writeValueAsString(fields);
  }

  /** The message of an {"error": "..."} body, which must be there and not be empty. */
  static String error(HttpResponse<String> r) throws Exception {
    String error = JSON.readTree(r.body()).path("error").asText();
    assertFalse(error.isEmpty(), "an {\"error\": ...} body: " + r.body());
    return error;
  }
}
