package dev.memgen.model.train;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ai.djl.ndarray.NDArray;
import dev.memgen.model.Decoder;
import dev.memgen.model.LoraAdapter;
import dev.memgen.model.eval.Evaluator;
import dev.memgen.model.generate.MemGenInterleaver;
import dev.memgen.model.memory.InProcessMemory;
import dev.memgen.model.memory.LoraConfig;
import dev.memgen.model.memory.Memory;
import dev.memgen.model.text.ChatTemplate;
import dev.memgen.model.text.DelimiterTable;
import dev.memgen.model.text.TextTokenizer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.MessageDigest;
import java.util.ArrayList;
import java.util.HexFormat;
import java.util.List;
import java.util.Map;
import java.util.Random;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** Weaver SFT on a tiny random base: it learns, resumes exactly, and never touches the base. */
class WeaverSftTest {
  @TempDir static Path tmp;
  static Decoder base;
  static TextTokenizer tokenizer;
  static String fingerprint;
  static DelimiterTable delimiters;
  static final List<LoraAdapter.Target> ALL_LINEAR = List.of(LoraAdapter.Target.values());

  static TinyTrainingBase tiny;

  @BeforeAll
  static void setUp() throws Exception {
    tiny = new TinyTrainingBase(tmp, 41);
    base = tiny.base;
    tokenizer = tiny.tokenizer;
    fingerprint = tiny.fingerprint;
    delimiters = tiny.delimiters;
  }

  @AfterAll
  static void tearDown() {
    tiny.close();
  }

  static Path freshMemory(String name, int k, LoraConfig lora) throws Exception {
    return tiny.freshMemory(tmp.resolve(name), k, lora);
  }

  /** sha256 over every base weight's values: the frozen base must come out of training bit-identical. */
  static String baseDigest() throws Exception {
    return digest(base);
  }

  static String digest(Decoder model) throws Exception {
    MessageDigest sha = MessageDigest.getInstance("SHA-256");
    for (Map.Entry<String, NDArray> e : model.parameters().entrySet()) {
      sha.update(e.getKey().getBytes());
      sha.update(e.getValue().toByteArray());
    }
    return HexFormat.of().formatHex(sha.digest());
  }

  /**
   * A fresh weaver makes the frozen random base answer 16 sums it cannot answer alone (0%), every one of them
   * (100%), in a few hundred updates; the base's weights are bit-identical afterwards.
   */
  @Test
  void overfitsSixteenExamples() throws Exception {
    List<Evaluator.Problem> problems = new ArrayList<>();
    List<TokenizedExample> data = new ArrayList<>();
    Random r = new Random(1);
    for (int i = 0; i < 16; i++) {
      int a = r.nextInt(50);
      int b = r.nextInt(50);
      String prompt = "Q:" + a + "+" + b + "=?";
      problems.add(new Evaluator.Problem(ChatTemplate.userPrompt(prompt), String.valueOf(a + b)));
      data.add(TokenizedExample.of(tokenizer, ChatTemplate.userPrompt(prompt), "\\boxed{" + (a + b) + "}"));
    }
    String before = baseDigest();
    Path mem = freshMemory("overfit-in", 8, new LoraConfig(16, 32, ALL_LINEAR, 0.0));
    Path out = tmp.resolve("overfit-out");
    List<Double> losses = new ArrayList<>();
    WeaverSft.Result result = WeaverSft.train(base, fingerprint, mem, out, data, delimiters,
        new WeaverSft.Settings(500, 16, 1, 1e-2, 10, 0.1, AdamW.Settings.DEFAULT, 0, 1),
        (step, steps, loss, lr, norm, tps) -> losses.add(loss));
    assertEquals(500, losses.size());
    assertTrue(losses.get(499) < 0.5 * losses.get(0), "loss " + losses.get(0) + " -> " + losses.get(499));
    assertEquals(2, result.manifest().version(), "the trained memory is the next version");
    assertEquals(before, baseDigest(), "the base's weights changed");

    Evaluator evaluator = new Evaluator(base, tokenizer, 16, 16);
    assertEquals(0, evaluator.run(problems, null, c -> {}).correct(), "the base alone must not know these");
    try (Memory trained = Memory.load(out, base, fingerprint)) {
      InProcessMemory memory = new InProcessMemory(base, trained);
      Evaluator.Score score = evaluator.run(problems, ids -> MemGenInterleaver.inProcess(memory, ids.size(), delimiters,
          new MemGenInterleaver.Options(true, 2, MemGenInterleaver.TriggerMode.INACTIVE, 0.5, 0)), c -> {});
      assertEquals(100.0, score.accuracy(), "greedy accuracy with the trained memory");
    }
  }

  /**
   * Interrupted after a checkpoint and run again, training resumes there and ends bit-identical to an uninterrupted
   * run, with LoRA dropout and gradient accumulation on (both depend on the step being restored exactly).
   */
  @Test
  void resumesExactlyFromItsCheckpoint() throws Exception {
    List<TokenizedExample> data = new ArrayList<>();
    for (int i = 0; i < 6; i++) {
      data.add(TokenizedExample.of(tokenizer, ChatTemplate.userPrompt("Q:" + i + "+1=?"), i + "+1=" + (i + 1) + ".\\boxed{" + (i + 1) + "}"));
    }
    LoraConfig lora = new LoraConfig(4, 8, List.of(LoraAdapter.Target.Q_PROJ, LoraAdapter.Target.V_PROJ), 0.1);
    Path mem = freshMemory("resume-in", 2, lora);
    WeaverSft.Settings settings = new WeaverSft.Settings(8, 2, 2, 5e-3, 2, 0.1, AdamW.Settings.DEFAULT, 3, 9);
    WeaverSft.Listener quiet = (step, steps, loss, lr, norm, tps) -> {};

    Path straight = tmp.resolve("resume-straight");
    WeaverSft.train(base, fingerprint, mem, straight, data, delimiters, settings, quiet);

    Path interrupted = tmp.resolve("resume-interrupted");
    RuntimeException crash = assertThrows(RuntimeException.class, () -> WeaverSft.train(base, fingerprint, mem,
        interrupted, data, delimiters, settings, new WeaverSft.Listener() {
          @Override
          public void step(int step, int steps, double loss, double lr, double gradNorm, double tokensPerSecond) {}

          @Override
          public void checkpointed(int step) {
            if (step == 6) {
              throw new RuntimeException("simulated crash after the checkpoint of step 6");
            }
          }
        }));
    assertTrue(crash.getMessage().contains("simulated"));
    assertTrue(Files.isDirectory(interrupted.resolve(WeaverSft.CHECKPOINT)));
    int[] resumedAt = {-1};
    WeaverSft.Result resumed = WeaverSft.train(base, fingerprint, mem, interrupted, data, delimiters, settings,
        new WeaverSft.Listener() {
          @Override
          public void step(int step, int steps, double loss, double lr, double gradNorm, double tokensPerSecond) {}

          @Override
          public void resumed(int step) {
            resumedAt[0] = step;
          }
        });
    assertEquals(6, resumedAt[0]);
    assertEquals(6, resumed.resumedFrom());
    assertEquals(2, resumed.manifest().version());
    assertFalse(Files.exists(interrupted.resolve(WeaverSft.CHECKPOINT)), "the checkpoint is gone once training is done");
    assertArrayEquals(Files.readAllBytes(straight.resolve(Memory.TENSORS)), Files.readAllBytes(interrupted.resolve(Memory.TENSORS)));
    assertFalse(java.util.Arrays.equals(Files.readAllBytes(mem.resolve(Memory.TENSORS)), Files.readAllBytes(straight.resolve(Memory.TENSORS))),
        "training changed the memory");
  }
}
