package dev.memgen.model;

import static dev.memgen.model.GoldenForwardTest.assertClose;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDArrays;
import ai.djl.ndarray.NDList;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.Shape;
import com.fasterxml.jackson.databind.JsonNode;
import dev.memgen.model.generate.Generator;
import dev.memgen.model.generate.SamplingParams;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Random;
import java.util.Set;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;
import org.junit.jupiter.api.io.TempDir;

/**
 * The KV cache changes nothing but speed: decoding step by step, appending raw embedding rows (future latent
 * memory) mid-sequence, and decoding rows of different lengths together all give what a full recomputation, the
 * numpy reference, and one-at-a-time decoding give.
 */
class DecodeConsistencyTest {
  @TempDir static Path tmp;
  static Path model;
  static Decoder decoder;
  static NDManager m;

  @BeforeAll
  static void load() {
    model = Reference.makeCheckpoint(tmp.resolve("m"), "--arch", "qwen2", "--dtype", "f32", "--untied", "--seed", "5");
    decoder = Decoder.load(model);
    m = decoder.manager().newSubManager();
  }

  @AfterAll
  static void close() {
    m.close();
    decoder.close();
  }

  static boolean[][] valid(int n) {
    return GoldenForwardTest.allValid(1, n);
  }

  /** Hidden state of the last row after one forward over everything from scratch. */
  static float[] fullRecompute(NDArray embeds) {
    try (KvCache cache = decoder.newCache(1, 4)) {
      int n = (int) embeds.getShape().get(1);
      return decoder.forward(cache, embeds, valid(n)).get("0, -1").toFloatArray();
    }
  }

  @Test
  void incrementalDecodeEqualsFullRecomputation() {
    int[] ids = new Random(1).ints(14, 0, 300).toArray();
    try (KvCache cache = decoder.newCache(1, 8)) {
      decoder.forward(cache, decoder.embed(m, new int[][] {Arrays.copyOf(ids, 8)}), valid(8));
      for (int t = 8; t < ids.length; t++) {
        float[] step = decoder.forward(cache, decoder.embed(m, new int[][] {{ids[t]}}), valid(1)).get("0, 0").toFloatArray();
        float[] full = fullRecompute(decoder.embed(m, new int[][] {Arrays.copyOf(ids, t + 1)}));
        assertClose("hidden at position " + t, step, full);
      }
      assertEquals(ids.length, cache.position(0));
    }
  }

  @Test
  void appendingEmbeddingRowsMidSequenceMatchesReferenceAndRecomputation() {
    int hidden = decoder.config().hiddenSize();
    int[] before = {11, 42, 7, 99, 3};
    int[] after = {17, 250, 8, 64};
    float[][] latent = new float[3][hidden];
    Random r = new Random(2);
    for (float[] row : latent) {
      for (int i = 0; i < hidden; i++) {
        row[i] = (float) r.nextGaussian();
      }
    }
    NDArray latentRows = m.create(latent).reshape(1, latent.length, hidden);
    float[] incremental;
    float[] logits;
    try (KvCache cache = decoder.newCache(1, 4)) {
      decoder.forward(cache, decoder.embed(m, new int[][] {before}), valid(before.length));
      decoder.forward(cache, latentRows, valid(latent.length)); // one call for all K rows, no re-prefill
      NDArray last = null;
      for (int id : after) {
        last = decoder.forward(cache, decoder.embed(m, new int[][] {{id}}), valid(1)).get("0, 0");
      }
      incremental = last.toFloatArray();
      logits = decoder.logits(last).toFloatArray();
      assertEquals(before.length + latent.length + after.length, cache.position(0), "latent rows take positions");
    }
    NDArray all = NDArrays.concat(new NDList(decoder.embed(m, new int[][] {before}), latentRows,
        decoder.embed(m, new int[][] {after})), 1);
    assertClose("incremental vs recompute", incremental, fullRecompute(all));

    List<Object> inputs = new ArrayList<>();
    Arrays.stream(before).forEach(inputs::add);
    inputs.addAll(Arrays.asList(latent));
    Arrays.stream(after).forEach(inputs::add);
    JsonNode golden = Reference.forward(model, inputs, false);
    assertClose("hidden vs reference", incremental, Reference.floats(golden.get("hidden")));
    assertClose("logits vs reference", logits, Reference.floats(golden.get("logits")));
  }

  @ParameterizedTest(name = "padding packed: {0}")
  @ValueSource(booleans = {false, true})
  void batchedGenerationEqualsOneByOne(boolean packed) {
    long bound = Decoder.packPaddingAbove(packed ? 0 : Long.MAX_VALUE);
    try {
      batchedGenerationEqualsOneByOne();
    } finally {
      Decoder.packPaddingAbove(bound);
    }
  }

  void batchedGenerationEqualsOneByOne() {
    Generator generator = new Generator(decoder);
    List<Generator.Request> requests = List.of(
        new Generator.Request(new int[] {5, 6, 7}, 12, SamplingParams.GREEDY, Set.of()),
        new Generator.Request(new Random(3).ints(9, 0, 300).toArray(), 7, new SamplingParams(0.9, 0, 0.95, 11), Set.of()),
        new Generator.Request(new int[] {200, 1, 2, 3, 4}, 12, new SamplingParams(1.2, 20, 1, 5), Set.of()));
    List<Generator.Result> batched = generator.generate(requests);
    for (int i = 0; i < requests.size(); i++) {
      Generator.Result alone = generator.generate(List.of(requests.get(i))).get(0);
      assertArrayEquals(alone.tokens(), batched.get(i).tokens(), "row " + i);
      assertEquals(requests.get(i).maxNewTokens(), batched.get(i).tokens().length);
    }
  }

  @Test
  void requestsBeyondTheContextWindowAreRefused() {
    Generator generator = new Generator(decoder);
    IllegalArgumentException e = org.junit.jupiter.api.Assertions.assertThrows(IllegalArgumentException.class,
        () -> generator.generate(List.of(new Generator.Request(new int[] {1, 2, 3}, 5000, SamplingParams.GREEDY, Set.of()))));
    assertTrue(e.getMessage().contains("max_position_embeddings (2048)"), e.getMessage());
    e = org.junit.jupiter.api.Assertions.assertThrows(IllegalArgumentException.class,
        () -> generator.generate(List.of(new Generator.Request(new int[] {1, 300}, 5, SamplingParams.GREEDY, Set.of()))));
    assertTrue(e.getMessage().contains("300"), e.getMessage());
  }

  @Test
  void eachRowStopsOnItsOwn() {
    Generator generator = new Generator(decoder);
    int[] prompt = {9, 8, 7, 6};
    int[] free = generator.generate(List.of(new Generator.Request(prompt, 10, SamplingParams.GREEDY, Set.of()))).get(0).tokens();
    int stopAt = free[3];
    int firstStop = 0;
    while (free[firstStop] != stopAt) {
      firstStop++;
    }
    List<Generator.Result> both = generator.generate(List.of(
        new Generator.Request(prompt, 10, SamplingParams.GREEDY, Set.of(stopAt)),
        new Generator.Request(new int[] {1, 2}, 10, SamplingParams.GREEDY, Set.of())));
    assertArrayEquals(Arrays.copyOf(free, firstStop + 1), both.get(0).tokens(), "stops at (and includes) the stop token");
    assertEquals(Generator.FinishReason.STOP_TOKEN, both.get(0).reason());
    assertEquals(10, both.get(1).tokens().length, "the other row runs to its budget");
    assertEquals(Generator.FinishReason.LENGTH, both.get(1).reason());
  }

  @ParameterizedTest(name = "padding packed: {0}")
  @ValueSource(booleans = {false, true})
  void forwardEachComputesAndLeavesWhatEachCacheAloneDoes(boolean packed) {
    long bound = Decoder.packPaddingAbove(packed ? 0 : Long.MAX_VALUE);
    int[][] before = {{4, 5, 6, 7, 8}, {}, {30, 31}};
    int[][] now = {{9, 10}, {40, 41, 42, 43}, {50}};
    KvCache[] together = new KvCache[3];
    KvCache[] alone = new KvCache[3];
    try {
      for (int i = 0; i < 3; i++) {
        together[i] = decoder.newCache(1, 2); // small: the copy back must grow it
        alone[i] = decoder.newCache(1, 2);
        if (before[i].length > 0) {
          decoder.forward(together[i], decoder.embed(m, new int[][] {before[i]}), valid(before[i].length));
          decoder.forward(alone[i], decoder.embed(m, new int[][] {before[i]}), valid(before[i].length));
        }
      }
      List<NDArray> rows = new ArrayList<>();
      for (int[] ids : now) {
        rows.add(decoder.embed(m, new int[][] {ids}));
      }
      List<NDArray> hidden = decoder.forwardEach(List.of(together), rows, m);
      for (int i = 0; i < 3; i++) {
        float[] expected = decoder.forward(alone[i], decoder.embed(m, new int[][] {now[i]}), valid(now[i].length)).toFloatArray();
        assertClose("row " + i, hidden.get(i).toFloatArray(), expected);
        assertEquals(alone[i].position(0), together[i].position(0));
        assertEquals(alone[i].length(), together[i].length());
        // What each kept: the next token computes the same on both.
        assertClose("row " + i + " after", decoder.forward(together[i], decoder.embed(m, new int[][] {{77}}), valid(1)).toFloatArray(),
            decoder.forward(alone[i], decoder.embed(m, new int[][] {{77}}), valid(1)).toFloatArray());
      }
    } finally {
      Decoder.packPaddingAbove(bound);
      for (int i = 0; i < 3; i++) {
        if (together[i] != null) {
          together[i].close();
        }
        if (alone[i] != null) {
          alone[i].close();
        }
      }
    }
  }

  @ParameterizedTest(name = "padding packed: {0}")
  @ValueSource(booleans = {false, true})
  void latentRowsForOneRowOfABatchLeaveTheOtherRowUnchanged(boolean packed) {
    long bound = Decoder.packPaddingAbove(packed ? 0 : Long.MAX_VALUE);
    try {
      latentRowsForOneRowOfABatchLeaveTheOtherRowUnchanged();
    } finally {
      Decoder.packPaddingAbove(bound);
    }
  }

  void latentRowsForOneRowOfABatchLeaveTheOtherRowUnchanged() {
    int hidden = decoder.config().hiddenSize();
    int[][] prompts = {{4, 5, 6, 7, 8}, {30, 31, 32}};
    float[] latentValues = new float[2 * hidden];
    Random r = new Random(4);
    for (int i = 0; i < latentValues.length; i++) {
      latentValues[i] = (float) r.nextGaussian();
    }
    float[][] batched = new float[2][];
    try (KvCache cache = decoder.newCache(2, 4)) {
      int[][] padded = {prompts[0], {30, 31, 32, -1, -1}};
      decoder.forward(cache, decoder.embed(m, padded), new boolean[][] {{true, true, true, true, true}, {true, true, true, false, false}});
      // Row 0 receives two latent rows; row 1's slots are invalid (zeros, masked out).
      float[] both = Arrays.copyOf(latentValues, 4 * hidden);
      decoder.forward(cache, m.create(both, new Shape(2, 2, hidden)), new boolean[][] {{true, true}, {false, false}});
      NDArray h = decoder.forward(cache, decoder.embed(m, new int[][] {{9}, {33}}), new boolean[][] {{true}, {true}});
      batched[0] = h.get("0, 0").toFloatArray();
      batched[1] = h.get("1, 0").toFloatArray();
      assertEquals(5 + 2 + 1, cache.position(0));
      assertEquals(3 + 1, cache.position(1));
    }
    try (KvCache cache = decoder.newCache(1, 4)) {
      decoder.forward(cache, decoder.embed(m, new int[][] {prompts[0]}), valid(5));
      decoder.forward(cache, m.create(latentValues, new Shape(1, 2, hidden)), valid(2));
      assertClose("row 0", batched[0], decoder.forward(cache, decoder.embed(m, new int[][] {{9}}), valid(1)).get("0, 0").toFloatArray());
    }
    try (KvCache cache = decoder.newCache(1, 4)) {
      decoder.forward(cache, decoder.embed(m, new int[][] {prompts[1]}), valid(3));
      assertClose("row 1", batched[1], decoder.forward(cache, decoder.embed(m, new int[][] {{33}}), valid(1)).get("0, 0").toFloatArray());
    }
    assertTrue(Reference.relativeError(batched[0], batched[1]) > 1e-2, "the two rows differ (the test can fail)");
  }
}
