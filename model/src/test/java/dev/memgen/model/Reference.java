package dev.memgen.model;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.io.IOException;
import java.net.URISyntaxException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;

/**
 * Runs the independent numpy implementation (test resource {@code reference/hf_reference.py}) that the Java
 * decoder is checked against: it writes random checkpoints and computes golden logits and hidden states.
 */
public final class Reference {
  private static final ObjectMapper JSON = new ObjectMapper();

  private Reference() {}

  static Path script() {
    try {
      return Path.of(Reference.class.getResource("/reference/hf_reference.py").toURI());
    } catch (URISyntaxException e) {
      throw new IllegalStateException(e);
    }
  }

  /** Writes a random checkpoint; {@code args} are make-checkpoint flags, e.g. "--arch", "llama". */
  static Path makeCheckpoint(Path out, String... args) {
    List<String> cmd = new ArrayList<>(List.of("make-checkpoint", "--out", out.toString()));
    cmd.addAll(List.of(args));
    run(cmd);
    return out;
  }

  /** Golden forward pass over token ids and/or raw embedding rows (each element: Integer or float[]). */
  static JsonNode forward(Path model, List<?> inputs, boolean all) {
    try {
      Path in = Files.createTempFile("reference-inputs", ".json");
      try {
        List<Object> json = new ArrayList<>(inputs);
        Files.writeString(in, JSON.writeValueAsString(json));
        List<String> cmd = new ArrayList<>(List.of("forward", "--model", model.toString(), "--inputs", in.toString()));
        if (all) {
          cmd.add("--all");
        }
        return JSON.readTree(run(cmd));
      } finally {
        Files.deleteIfExists(in);
      }
    } catch (IOException e) {
      throw new IllegalStateException(e);
    }
  }

  static float[] floats(JsonNode array) {
    float[] out = new float[array.size()];
    for (int i = 0; i < out.length; i++) {
      out[i] = (float) array.get(i).asDouble();
    }
    return out;
  }

  private static String run(List<String> args) {
    return run("hf_reference.py", args.toArray(String[]::new));
  }

  /** Runs {@code script} (a file beside hf_reference.py) with {@code args}; returns its stdout, fails on exit != 0. */
  public static String run(String script, String... args) {
    List<String> cmd = new ArrayList<>(List.of("python3", script().resolveSibling(script).toString()));
    cmd.addAll(List.of(args));
    try {
      Process p = new ProcessBuilder(cmd).redirectErrorStream(false).start();
      byte[] out = p.getInputStream().readAllBytes();
      byte[] err = p.getErrorStream().readAllBytes();
      if (!p.waitFor(120, TimeUnit.SECONDS) || p.exitValue() != 0) {
        throw new IllegalStateException("reference failed: " + String.join(" ", cmd) + "\n"
            + new String(err, StandardCharsets.UTF_8));
      }
      return new String(out, StandardCharsets.UTF_8);
    } catch (IOException e) {
      throw new IllegalStateException("cannot run python3 for the reference implementation", e);
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      throw new IllegalStateException(e);
    }
  }

  /** max |a - b| / max |b|: the error relative to the reference's scale. */
  static double relativeError(float[] actual, float[] expected) {
    if (actual.length != expected.length) {
      throw new AssertionError("length " + actual.length + " != " + expected.length);
    }
    double maxDiff = 0;
    double maxRef = 0;
    for (int i = 0; i < actual.length; i++) {
      maxDiff = Math.max(maxDiff, Math.abs(actual[i] - expected[i]));
      maxRef = Math.max(maxRef, Math.abs(expected[i]));
    }
    return maxDiff / Math.max(maxRef, 1e-30);
  }
}
