package dev.memgen.model.train;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ai.djl.engine.Engine;
import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.Shape;
import ai.djl.training.GradientCollector;
import dev.memgen.model.Decoder;
import dev.memgen.model.KvCache;
import dev.memgen.model.Reference;
import dev.memgen.model.Weaver;
import dev.memgen.model.checkpoint.Checkpoint;
import dev.memgen.model.checkpoint.DType;
import dev.memgen.model.checkpoint.TinyCheckpoint;
import dev.memgen.model.memory.Memory;
import dev.memgen.model.text.DelimiterTable;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Random;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The training forward: teacher forcing with latents computes what generation computes, and its gradients with
 * respect to every kind of weaver parameter agree with finite differences of the loss.
 */
class TeacherForcingTest {
  @TempDir static Path tmp;
  static Decoder base;
  static Memory memory;
  static NDManager m;
  static DelimiterTable delimiters;

  @BeforeAll
  static void setUp() throws Exception {
    Path dir = tmp.resolve("base");
    TinyCheckpoint.write(dir, TinyCheckpoint.tiny("qwen2"), DType.F32, 1, 31);
    String fingerprint = Checkpoint.open(dir).fingerprint();
    Path mem = tmp.resolve("memory"); // random LoRA B too, so every weaver tensor has a gradient
    Reference.run("memgen_reference.py", "make-memory", "--model", dir.toString(), "--out", mem.toString(),
        "--prompt-k", "3", "--inference-k", "2", "--r", "4", "--alpha", "8", "--fingerprint", fingerprint, "--seed", "5");
    base = Decoder.load(dir);
    memory = Memory.load(mem, base, fingerprint);
    m = base.manager().newSubManager();
    delimiters = DelimiterTable.ofTokenIds(base.config().vocabSize(), id -> id % 5 == 0);
  }

  @AfterAll
  static void tearDown() {
    m.close();
    memory.close();
    base.close();
  }

  /** Two examples of different lengths with 1 and 3 delimiters in their answers (ids divisible by 5). */
  static List<TokenizedExample> examples() {
    return List.of(
        new TokenizedExample(new int[] {257, 11, 12, 13, 14}, new int[] {21, 22, 25, 23, 24, 258}),
        new TokenizedExample(new int[] {257, 31, 32}, new int[] {40, 41, 45, 42, 50, 43, 55, 44, 258}));
  }

  @Test
  void slotsFollowTheRule() {
    TeacherForcing tf = new TeacherForcing(base, delimiters, 2);
    // first two delimiters only; never after the last token
    assertEquals(List.of(0, 2), box(tf.inferenceSlots(new int[] {40, 41, 45, 42, 50, 43})));
    assertEquals(List.of(), box(tf.inferenceSlots(new int[] {41, 42, 45})));
  }

  static List<Integer> box(int[] a) {
    return java.util.Arrays.stream(a).boxed().toList();
  }

  /**
   * The batched, stateless training path equals the generate loop's incremental path: a weaver session fed the
   * prefix weaves the latents, the reasoner's KV cache takes tokens and latents block by block, and the answer
   * tokens' log-probabilities are read off as they come.
   */
  @Test
  void batchedLossEqualsIncrementalComputation() {
    int cap = 3;
    TeacherForcing tf = new TeacherForcing(base, delimiters, cap);
    List<TokenizedExample> batch = examples();
    try (NDManager s = m.newSubManager()) {
      TeacherForcing.Loss loss = tf.loss(s, batch, TeacherForcing.weaver(memory.weaver()));
      double expected = 0;
      int tokens = 0;
      for (TokenizedExample e : batch) {
        expected += incrementalNll(s, e, tf.inferenceSlots(e.answer()));
        tokens += e.answer().length;
      }
      assertEquals(tokens, loss.tokens());
      assertEquals(expected, loss.sum().getFloat(), 1e-3 * Math.abs(expected));
      TeacherForcing.Loss plain = tf.loss(s, batch, null);
      assertTrue(Math.abs(plain.sum().getFloat() - loss.sum().getFloat()) > 1e-2, "latents change the loss");
    }
  }

  /** Summed NLL of the answer, computed the way generation runs: incrementally, one block at a time. */
  static double incrementalNll(NDManager s, TokenizedExample e, int[] slots) {
    Weaver.Session weaver = memory.weaver().newSession(64);
    KvCache cache = base.newCache(1, 64);
    try {
      NDArray promptRows = base.embed(s, new int[][] {e.prompt()});
      weaver.append(promptRows);
      base.forward(cache, promptRows, all(e.prompt().length));
      NDArray latents = weaver.weave(Weaver.Kind.PROMPT, s);
      weaver.append(latents);
      NDArray last = lastRow(base.forward(cache, latents, all((int) latents.getShape().get(1))));
      double nll = 0;
      int next = 0;
      for (int t = 0; t < e.answer().length; t++) {
        nll -= base.logits(last).logSoftmax(-1).getFloat(0, e.answer()[t]);
        NDArray row = base.embed(s, new int[][] {{e.answer()[t]}});
        weaver.append(row);
        last = lastRow(base.forward(cache, row, all(1)));
        if (next < slots.length && slots[next] == t) {
          next++;
          NDArray inf = weaver.weave(Weaver.Kind.INFERENCE, s);
          weaver.append(inf);
          last = lastRow(base.forward(cache, inf, all((int) inf.getShape().get(1))));
        }
      }
      return nll;
    } finally {
      weaver.close();
      cache.close();
    }
  }

  static NDArray lastRow(NDArray hidden) {
    long n = hidden.getShape().get(1);
    return hidden.get(":, " + (n - 1) + ", :").reshape(1, hidden.getShape().get(2));
  }

  static boolean[][] all(int n) {
    boolean[][] v = new boolean[1][n];
    java.util.Arrays.fill(v[0], true);
    return v;
  }

  /**
   * Autograd against central finite differences, per weaver tensor, along a direction that mixes the gradient with
   * random noise (so both its size and its direction are checked).
   */
  @Test
  void gradientsMatchFiniteDifferences() {
    TeacherForcing tf = new TeacherForcing(base, delimiters, 3);
    List<TokenizedExample> batch = examples();
    TeacherForcing.MemorySource source = TeacherForcing.weaver(memory.weaver());
    Map<String, NDArray> params = memory.tensors("weaver");
    List<String> checked = List.of(
        "weaver.lora.layers.0.self_attn.q_proj.lora_A", "weaver.lora.layers.1.self_attn.v_proj.lora_B",
        "weaver.reasoner_to_weaver.weight", "weaver.reasoner_to_weaver.bias", "weaver.weaver_to_reasoner.weight",
        "weaver.weaver_to_reasoner.bias", "weaver.prompt_queries", "weaver.inference_queries",
        "weaver.prompt_query_norm.weight", "weaver.inference_query_norm.bias", "weaver.prompt_query_scale");
    Engine engine = base.manager().getEngine();
    params.values().forEach(p -> p.setRequiresGradient(true));
    try (NDManager s = m.newSubManager()) {
      try (GradientCollector c = engine.newGradientCollector()) {
        TeacherForcing.Loss l = tf.loss(s, batch, source);
        c.backward(l.sum().div(l.tokens()));
      }
      Random random = new Random(3);
      List<String> report = new ArrayList<>();
      for (String name : checked) {
        NDArray p = params.get(name);
        NDArray g = p.getGradient().duplicate();
        g.attach(s);
        double gNorm = Math.sqrt(g.square().sum().getFloat());
        assertTrue(gNorm > 1e-6, name + " has no gradient");
        float[] noise = new float[(int) p.size()];
        for (int i = 0; i < noise.length; i++) {
          noise[i] = (float) random.nextGaussian();
        }
        NDArray r = s.create(noise, p.getShape());
        NDArray d = g.div(gNorm).add(r.div(2 * Math.sqrt(r.square().sum().getFloat()))); // never 0
        d = d.div(Math.sqrt(d.square().sum().getFloat()));
        double analytic = g.mul(d).sum().getFloat();
        double eps = 1e-2;
        p.addi(d.mul(eps));
        double up = meanLoss(tf, s, batch, source);
        p.subi(d.mul(2 * eps));
        double down = meanLoss(tf, s, batch, source);
        p.addi(d.mul(eps));
        double numeric = (up - down) / (2 * eps);
        report.add(String.format("%s: autograd %.6g, finite differences %.6g", name, analytic, numeric));
        assertEquals(analytic, numeric, 0.03 * Math.abs(analytic) + 2e-4, String.join("\n", report));
      }
      System.out.println(String.join("\n", report));
    } finally {
      params.values().forEach(p -> {
        p.getGradient().muli(0);
        p.setRequiresGradient(false);
      });
    }
  }

  static double meanLoss(TeacherForcing tf, NDManager s, List<TokenizedExample> batch, TeacherForcing.MemorySource src) {
    try (NDManager step = s.newSubManager()) {
      TeacherForcing.Loss l = tf.loss(step, batch, src);
      return l.sum().getFloat() / l.tokens();
    }
  }
}
