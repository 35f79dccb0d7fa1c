package dev.memgen.reasoner;

import static dev.memgen.reasoner.GenerateRequestMapper.invalid;

import com.fasterxml.jackson.annotation.JsonProperty;
import com.fasterxml.jackson.core.JsonLocation;
import com.fasterxml.jackson.core.JsonParser;
import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.core.StreamReadFeature;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.ObjectReader;
import dev.memgen.proto.v1.SubmitFeedbackRequest;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import jakarta.ws.rs.Consumes;
import jakarta.ws.rs.POST;
import jakarta.ws.rs.Path;
import jakarta.ws.rs.Produces;
import jakarta.ws.rs.core.MediaType;
import jakarta.ws.rs.core.Response;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.util.Map;

/**
 * {@code POST /v1/feedback}: {@code memgen.v1.FeedbackIntake/Submit} as REST, a thin adapter over
 * {@link FeedbackIntake}. The body is the request's fields in JSON,
 * {@code {"trajectory_id": "...", "reward": 1.0, "source": "...", "comment": "...", "feedback_id": "...", "corrected_answer": "..."}}; the reply
 * is {@code 200 {"feedback_id": "..."}}. Refusals are {@code {"error": "..."}} with 400 (bad input, naming the field),
 * 503 (no experience log) or 429 (spool full).
 *
 * <p>The body is read by hand, strictly, rather than bound to a class: a binder would coerce {@code "0.5"} or
 * {@code true} into numbers and strings, drop misspelt fields and turn a missing reward into 0 — a silent "bad" reward
 * in the training data. Here every field must have its JSON type, unknown fields are refused by name, and
 * {@code reward} must be present (gRPC cannot tell a missing reward from 0; JSON can). Everything else is validated
 * by {@link FeedbackIntake}, the same code as gRPC. Only {@code application/json} is accepted (415 otherwise): that
 * also keeps browsers from posting here cross-site without a CORS preflight.
 */
@Path("/v1/feedback")
public class FeedbackResource {
  /** The 200 body. */
  public record Reply(@JsonProperty("feedback_id") String feedbackId) {}

  /** The body of every refusal. */
  public record ErrorBody(@JsonProperty("error") String error) {}

  private final FeedbackIntake intake;
  private final ObjectReader json;

  FeedbackResource(FeedbackIntake intake, ObjectMapper mapper) {
    this.intake = intake;
    // A repeated key would otherwise silently keep the last value.
    this.json = mapper.reader().with(StreamReadFeature.STRICT_DUPLICATE_DETECTION);
  }

  @POST
  @Consumes(MediaType.APPLICATION_JSON)
  @Produces(MediaType.APPLICATION_JSON)
  public Response submit(String body) {
    try {
      return Response.ok(new Reply(intake.submit(parse(body)))).build();
    } catch (StatusRuntimeException e) {
      return Response.status(httpStatus(e.getStatus().getCode()))
          .type(MediaType.APPLICATION_JSON_TYPE)
          .entity(new ErrorBody(e.getStatus().getDescription()))
          .build();
    }
  }

  /** The request in a JSON body, or INVALID_ARGUMENT saying what is wrong with the JSON. */
  SubmitFeedbackRequest parse(String body) {
    JsonNode root = null;
    if (body != null && !body.isBlank()) {
      try (JsonParser parser = json.createParser(body)) {
        root = json.readTree(parser);
        if (parser.nextToken() != null) {
          throw invalid("malformed JSON: more text after the JSON value" + at(parser.currentTokenLocation()));
        }
      } catch (JsonProcessingException e) {
        throw invalid("malformed JSON: " + e.getOriginalMessage() + at(e.getLocation()));
      } catch (IOException e) { // reading a String does no I/O
        throw new UncheckedIOException(e);
      }
    }
    if (root == null || !root.isObject()) {
      throw invalid("the body must be a JSON object with the fields trajectory_id, reward, source, comment, "
          + "feedback_id, corrected_answer; got " + (root == null ? "nothing" : kind(root)));
    }
    SubmitFeedbackRequest.Builder request = SubmitFeedbackRequest.newBuilder();
    boolean hasReward = false;
    for (Map.Entry<String, JsonNode> field : root.properties()) {
      String name = field.getKey();
      JsonNode value = field.getValue();
      if (value.isNull()) { // null means "not given", as an absent field does
        continue;
      }
      switch (name) {
        case "trajectory_id" -> request.setTrajectoryId(text(name, value));
        case "reward" -> {
          if (!value.isNumber()) {
            throw invalid("reward must be a JSON number, got " + kind(value));
          }
          request.setReward(value.doubleValue()); // beyond double's range this is ±Infinity, which validation refuses
          hasReward = true;
        }
        case "source" -> request.setSource(text(name, value));
        case "comment" -> request.setComment(text(name, value));
        case "feedback_id" -> request.setFeedbackId(text(name, value));
        case "corrected_answer" -> request.setCorrectedAnswer(text(name, value));
        default -> throw invalid("unknown field \"" + name + "\" (expected trajectory_id, reward, source, comment, "
            + "feedback_id, corrected_answer)");
      }
    }
    if (!hasReward) {
      throw invalid("reward is required (a finite JSON number, typically in [0, 1])");
    }
    return request.build();
  }

  private static String at(JsonLocation where) {
    return where == null ? "" : " (line " + where.getLineNr() + ", column " + where.getColumnNr() + ")";
  }

  private static String text(String field, JsonNode value) {
    if (!value.isTextual()) {
      throw invalid(field + " must be a JSON string, got " + kind(value));
    }
    return value.textValue();
  }

  /** What a JSON value is, for error messages: "a string", "a number", ... */
  private static String kind(JsonNode value) {
    return switch (value.getNodeType()) {
      case STRING -> "a string";
      case NUMBER -> "a number";
      case BOOLEAN -> "a boolean";
      case ARRAY -> "an array";
      case OBJECT -> "an object";
      case NULL -> "null";
      default -> value.getNodeType().name().toLowerCase();
    };
  }

  /** The HTTP status for a refusal: the usual gRPC-to-HTTP mapping of the codes FeedbackIntake uses. */
  static int httpStatus(Status.Code code) {
    return switch (code) {
      case INVALID_ARGUMENT -> 400;
      case RESOURCE_EXHAUSTED -> 429;
      case UNAVAILABLE -> 503;
      default -> 500;
    };
  }
}
