package dev.memgen.model;

import static org.junit.jupiter.api.Assertions.assertTrue;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import com.fasterxml.jackson.databind.JsonNode;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

/**
 * The decoder against the independent numpy implementation, llm.c style: random checkpoints the Java code has
 * never seen, in every layout and dtype we load, must give the reference's last-position logits and final-norm
 * hidden state within 1e-4 (relative to the reference's largest value).
 */
class GoldenForwardTest {
  static final double TOLERANCE = 1e-4;

  @TempDir Path tmp;

  @ParameterizedTest(name = "{0} {1} shards={2} {3}")
  @CsvSource({
    "qwen2, f32,  1, --tied",
    "qwen2, f32,  1, --untied",
    "qwen2, bf16, 3, --tied",
    "qwen2, f16,  1, --untied",
    "llama, f32,  1, --untied",
    "llama, f32,  2, --tied",
    "llama, bf16, 1, --untied",
    "llama, bf16, 4, --untied",
  })
  void lastPositionMatchesReference(String arch, String dtype, int shards, String tie) {
    Path model = Reference.makeCheckpoint(tmp.resolve("m"), "--arch", arch, "--dtype", dtype,
        "--shards", String.valueOf(shards), tie, "--seed", String.valueOf(arch.hashCode() & 0xff ^ shards));
    int[] ids = new Random(shards).ints(11, 0, 300).toArray();
    List<Object> inputs = new ArrayList<>();
    for (int id : ids) {
      inputs.add(id);
    }
    JsonNode golden = Reference.forward(model, inputs, false);

    try (Decoder decoder = Decoder.load(model);
        NDManager m = decoder.manager().newSubManager();
        KvCache cache = decoder.newCache(1, 16)) {
      NDArray hidden = decoder.forward(cache, decoder.embed(m, new int[][] {ids}), allValid(1, ids.length));
      NDArray last = hidden.get("0, -1");
      float[] h = last.toFloatArray();
      float[] logits = decoder.logits(last).toFloatArray();
      assertClose("hidden", h, Reference.floats(golden.get("hidden")));
      assertClose("logits", logits, Reference.floats(golden.get("logits")));
    }
  }

  static boolean[][] allValid(int batch, int n) {
    boolean[][] v = new boolean[batch][n];
    for (boolean[] row : v) {
      java.util.Arrays.fill(row, true);
    }
    return v;
  }

  static void assertClose(String what, float[] actual, float[] expected) {
    double err = Reference.relativeError(actual, expected);
    assertTrue(err <= TOLERANCE, what + ": relative error " + err + " > " + TOLERANCE);
  }
}
