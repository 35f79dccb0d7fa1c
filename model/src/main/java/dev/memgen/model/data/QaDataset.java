package dev.memgen.model.data;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.memgen.model.text.ChatTemplate;
import java.io.BufferedReader;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

/**
 * Question-answer examples from JSONL, one {@code {"prompt": ..., "answer": ...}} object per line (an optional
 * {@code "boxed"} field gives the expected result; otherwise it is the answer's first {@code \boxed{}}). A line
 * that is not such an object is reported with its line number and, as the caller chooses, skipped or fatal.
 */
public final class QaDataset {
  private static final ObjectMapper JSON = new ObjectMapper();

  public enum OnBadRecord {
    SKIP, FAIL;

    /** From the {@code --on-bad-record} flag: "skip" or "fail". */
    public static OnBadRecord parse(String flag) {
      return switch (flag) {
        case "skip" -> SKIP;
        case "fail" -> FAIL;
        default -> throw new IllegalArgumentException("--on-bad-record must be skip or fail, got '" + flag + "'");
      };
    }
  }

  /**
   * One example: the conversation before the answer (a single user turn for prompt/answer records), the reference
   * answer, the expected boxed result (null when the record has none and none was required), and its line.
   */
  public record Example(List<ChatTemplate.Message> context, String answer, String expected, int line) {
    /** The conversation rendered as ChatML, ending with the generation prompt: what the model reads. */
    public String chatPrompt() {
      return ChatTemplate.render(context, true);
    }
  }

  /** Whether every example must have an expected result (evaluation) or not (training on reference answers). */
  public enum Expected { REQUIRED, OPTIONAL }

  /** A line that was not an example, and why. */
  public record BadRecord(int line, String reason) {}

  public record Loaded(List<Example> examples, List<BadRecord> skipped) {}

  private QaDataset() {}

  /**
   * @throws IllegalArgumentException naming the file and line of a bad record (FAIL), or when no line is a usable
   *     example
   */
  public static Loaded read(Path file, OnBadRecord onBad) throws IOException {
    return read(file, onBad, Expected.REQUIRED);
  }

  /**
   * Reads {@code {"prompt": ..., "answer": ...[, "boxed": ...]}} or {@code {"messages": [{"role", "content"}, ...][,
   * "boxed": ...]}} records, one per line; in the chat form the last message is the assistant's answer.
   */
  public static Loaded read(Path file, OnBadRecord onBad, Expected expected) throws IOException {
    if (!Files.isRegularFile(file)) {
      throw new IllegalArgumentException(file + ": no such file");
    }
    List<Example> examples = new ArrayList<>();
    List<BadRecord> skipped = new ArrayList<>();
    try (BufferedReader in = Files.newBufferedReader(file, StandardCharsets.UTF_8)) {
      int lineNo = 0;
      for (String line; (line = in.readLine()) != null; ) {
        lineNo++;
        if (line.isBlank()) {
          continue;
        }
        String reason;
        try {
          JsonNode node = JSON.readTree(line);
          reason = problem(node);
          if (reason == null) {
            List<ChatTemplate.Message> context = new ArrayList<>();
            String answer;
            if (node.has("messages")) {
              JsonNode messages = node.get("messages");
              for (int i = 0; i < messages.size() - 1; i++) {
                context.add(new ChatTemplate.Message(messages.get(i).get("role").asText(), messages.get(i).get("content").asText()));
              }
              answer = messages.get(messages.size() - 1).get("content").asText();
            } else {
              context.add(new ChatTemplate.Message("user", node.get("prompt").asText()));
              answer = node.get("answer").asText();
            }
            String result = node.hasNonNull("boxed") ? node.get("boxed").asText() : BoxedAnswer.extract(answer);
            if (result != null || expected == Expected.OPTIONAL) {
              examples.add(new Example(List.copyOf(context), answer, result, lineNo));
              continue;
            }
            reason = "no expected result: the answer has no \\boxed{} and there is no \"boxed\" field";
          }
        } catch (JsonProcessingException e) {
          reason = "not JSON (" + e.getOriginalMessage() + ")";
        }
        if (onBad == OnBadRecord.FAIL) {
          throw new IllegalArgumentException(file + ":" + lineNo + ": " + reason + " (--on-bad-record skip goes on without it)");
        }
        skipped.add(new BadRecord(lineNo, reason));
      }
    }
    if (examples.isEmpty()) {
      throw new IllegalArgumentException(file + ": no usable example (" + skipped.size() + " bad lines"
          + (skipped.isEmpty() ? "" : "; first: line " + skipped.get(0).line() + ", " + skipped.get(0).reason()) + ")");
    }
    return new Loaded(examples, skipped);
  }

  private static String problem(JsonNode node) {
    if (!node.isObject()) {
      return "not a JSON object";
    }
    if (node.has("messages")) {
      JsonNode messages = node.get("messages");
      if (!messages.isArray() || messages.size() < 2) {
        return "\"messages\" must be an array of at least two messages";
      }
      for (int i = 0; i < messages.size(); i++) {
        JsonNode m = messages.get(i);
        if (!m.path("role").isTextual() || !m.path("content").isTextual()) {
          return "messages[" + i + "] needs \"role\" and \"content\" strings";
        }
      }
      if (!messages.get(messages.size() - 1).get("role").asText().equals("assistant")) {
        return "the last message must be the assistant's answer";
      }
      return null;
    }
    if (!node.path("prompt").isTextual() || node.get("prompt").asText().isEmpty()) {
      return "no \"prompt\" string (or \"messages\")";
    }
    if (!node.path("answer").isTextual()) {
      return "no \"answer\" string";
    }
    return null;
  }
}
