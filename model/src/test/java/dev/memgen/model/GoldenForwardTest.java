package dev.memgen.model;

import static org.junit.jupiter.api.Assertions.assertTrue;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import com.fasterxml.jackson.databind.JsonNode;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
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

  /** Wide enough that every linear is split over the cores (see Linear), and a llama3-scaled RoPE. */
  static final String WIDE = "--hidden 256 --heads 8 --kv-heads 2 --intermediate 1024 --vocab 1100";

  @ParameterizedTest(name = "{0} {1} shards={2} {3} {4}")
  @CsvSource({
    "qwen2, f32,  1, --tied,   ''",
    "qwen2, f32,  1, --untied, ''",
    "qwen2, bf16, 3, --tied,   ''",
    "qwen2, f16,  1, --untied, ''",
    "llama, f32,  1, --untied, ''",
    "llama, f32,  2, --tied,   ''",
    "llama, bf16, 1, --untied, ''",
    "llama, bf16, 4, --untied, ''",
    "llama, f32,  1, --untied, --attention-bias --mlp-bias --llama3-rope-factor 8",
    "qwen2, f32,  2, --tied,   " + WIDE,
    "llama, bf16, 1, --untied, " + WIDE + " --llama3-rope-factor 4",
  })
  void lastPositionMatchesReference(String arch, String dtype, int shards, String tie, String extra) {
    List<String> args = new ArrayList<>(List.of("--arch", arch, "--dtype", dtype, "--shards", String.valueOf(shards),
        tie, "--seed", String.valueOf(arch.hashCode() & 0xff ^ shards)));
    args.addAll(Arrays.asList(extra.split(" ")).stream().filter(a -> !a.isEmpty()).toList());
    Path model = Reference.makeCheckpoint(tmp.resolve("m"), args.toArray(String[]::new));
    int[] ids = new Random(shards).ints(70, 0, 300).toArray(); // past original_max_positions=64 of the llama3 cases
    List<Object> inputs = new ArrayList<>();
    for (int id : ids) {
      inputs.add(id);
    }
    JsonNode golden = Reference.forward(model, inputs, false);

    try (Decoder decoder = Decoder.load(model);
        NDManager m = decoder.manager().newSubManager();
        KvCache cache = decoder.newCache(1, 16)) { // grows past 16 slots: exercises KvCache.grow
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
