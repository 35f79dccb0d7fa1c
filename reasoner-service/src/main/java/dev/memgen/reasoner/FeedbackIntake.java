package dev.memgen.reasoner;

import static dev.memgen.reasoner.GenerateRequestMapper.invalid;

import com.google.protobuf.util.Timestamps;
import dev.memgen.proto.v1.Feedback;
import dev.memgen.proto.v1.SubmitFeedbackRequest;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import jakarta.enterprise.context.ApplicationScoped;
import java.util.UUID;

/**
 * Accepts late rewards, whatever the transport: validates a {@link SubmitFeedbackRequest}, turns it into a
 * {@code memgen.v1.Feedback} record and hands that to the experience log. {@link FeedbackGrpcService} and
 * {@link FeedbackResource} are thin adapters over {@link #submit}, so gRPC and REST accept and refuse exactly the
 * same requests, with the same messages.
 *
 * <p>Refusals are gRPC statuses (the convention {@link GenerateRequestMapper} set): INVALID_ARGUMENT naming the
 * field, UNAVAILABLE without a log, RESOURCE_EXHAUSTED for a full spool. REST maps them to 400, 503 and 429. The
 * request is validated before the log is consulted, so a client learns what is wrong with its request on any
 * server.
 */
@ApplicationScoped
public class FeedbackIntake {
  /** Limits of memgen.v1.SubmitFeedbackRequest, in characters (Unicode code points). */
  static final int MAX_ID = 128;
  static final int MAX_SOURCE = 128;
  static final int MAX_COMMENT = 4096;
  /** What an empty source means: a person judged it (verifiers name themselves). */
  static final String DEFAULT_SOURCE = "human";
  static final int SCHEMA_VERSION = 1;

  private final ExperienceRecorder experience;

  FeedbackIntake(ExperienceRecorder experience) {
    this.experience = experience;
  }

  /**
   * Validates and spools one reward and returns its feedback id (the request's, or a random UUID when it gave none).
   * Never blocks.
   *
   * @throws StatusRuntimeException INVALID_ARGUMENT, UNAVAILABLE or RESOURCE_EXHAUSTED, with a message for the client
   */
  public String submit(SubmitFeedbackRequest request) {
    Feedback feedback = toRecord(request);
    switch (experience.recordFeedback(feedback)) {
      case SPOOLED:
        return feedback.getFeedbackId();
      case NO_LOG:
        throw Status.UNAVAILABLE.withDescription(
            "this server has no experience log (memgen.log.bootstrap is unset), so it cannot record feedback")
            .asRuntimeException();
      case SPOOL_FULL:
        // Retrying with the same feedback_id is safe: the trainer counts a feedback id once.
        throw Status.RESOURCE_EXHAUSTED.withDescription("the experience log's spool is full (the Kafka broker has been "
            + "unreachable for a while); feedback " + feedback.getFeedbackId() + " was not recorded, retry later with "
            + "the same feedback_id").asRuntimeException();
      default:
        throw new AssertionError("unknown outcome");
    }
  }

  /** The Kafka record for a request, or INVALID_ARGUMENT naming the first field that is wrong. */
  static Feedback toRecord(SubmitFeedbackRequest request) {
    String trajectoryId = request.getTrajectoryId();
    if (trajectoryId.isBlank()) {
      throw invalid("trajectory_id is required (the Finished.trajectory_id of the generation judged)");
    }
    checkLength("trajectory_id", trajectoryId, MAX_ID);
    double reward = request.getReward();
    if (!Double.isFinite(reward)) {
      throw invalid("reward must be a finite number, got " + reward);
    }
    String source = request.getSource();
    if (source.isEmpty()) {
      source = DEFAULT_SOURCE;
    } else if (source.isBlank()) { // a record's source must name someone; spaces would pass an emptiness check
      throw invalid("source must not be blank (leave it empty for \"" + DEFAULT_SOURCE + "\")");
    }
    checkLength("source", source, MAX_SOURCE);
    checkLength("comment", request.getComment(), MAX_COMMENT);
    checkLength("corrected_answer", request.getCorrectedAnswer(), MAX_COMMENT);
    if (!request.getCorrectedAnswer().isEmpty() && request.getCorrectedAnswer().isBlank()) {
      throw invalid("corrected_answer must not be blank (leave it empty when there is no correction)");
    }
    String feedbackId = request.getFeedbackId();
    if (feedbackId.isEmpty()) {
      feedbackId = UUID.randomUUID().toString();
    } else if (feedbackId.isBlank()) { // most likely a client bug; an id of spaces would collide across clients
      throw invalid("feedback_id must not be blank (leave it empty and the server makes one)");
    }
    checkLength("feedback_id", feedbackId, MAX_ID);
    return Feedback.newBuilder()
        .setTrajectoryId(trajectoryId)
        .setReward(reward)
        .setSource(source)
        .setComment(request.getComment())
        .setCorrectedAnswer(request.getCorrectedAnswer())
        .setCreatedAt(Timestamps.fromMillis(System.currentTimeMillis()))
        .setFeedbackId(feedbackId)
        .setSchemaVersion(SCHEMA_VERSION)
        .build();
  }

  private static void checkLength(String field, String value, int max) {
    // length() counts UTF-16 units, which is never less than the code points: the exact count only when it may matter.
    if (value.length() > max && value.codePointCount(0, value.length()) > max) {
      throw invalid(field + " must be at most " + max + " characters, got " + value.codePointCount(0, value.length()));
    }
  }
}
