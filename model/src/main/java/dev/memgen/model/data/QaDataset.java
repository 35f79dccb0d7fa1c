package dev.memgen.model.data;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
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

  public enum OnBadRecord { SKIP, FAIL }

  /** One example: the user prompt, the reference answer, the expected boxed result, and where it came from. */
  public record Example(String prompt, String answer, String expected, int line) {}

  /** A line that was not an example, and why. */
  public record BadRecord(int line, String reason) {}

  public record Loaded(List<Example> examples, List<BadRecord> skipped) {}

  private QaDataset() {}

  /**
   * @throws IllegalArgumentException naming the file and line of a bad record (FAIL), or when no line is a usable
   *     example
   */
  public static Loaded read(Path file, OnBadRecord onBad) throws IOException {
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
            String answer = node.get("answer").asText();
            String expected = node.hasNonNull("boxed") ? node.get("boxed").asText() : BoxedAnswer.extract(answer);
            examples.add(new Example(node.get("prompt").asText(), answer, expected, lineNo));
            continue;
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
    if (!node.path("prompt").isTextual() || node.get("prompt").asText().isEmpty()) {
      return "no \"prompt\" string";
    }
    if (!node.path("answer").isTextual()) {
      return "no \"answer\" string";
    }
    if (!node.hasNonNull("boxed") && BoxedAnswer.extract(node.get("answer").asText()) == null) {
      return "no expected result: \"answer\" has no \\boxed{} and there is no \"boxed\" field";
    }
    return null;
  }
}
