package dev.memgen.model.train;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.memgen.model.Decoder;
import dev.memgen.model.LoraAdapter;
import dev.memgen.model.checkpoint.Checkpoint;
import dev.memgen.model.checkpoint.DType;
import dev.memgen.model.checkpoint.TinyCheckpoint;
import dev.memgen.model.eval.Evaluator;
import dev.memgen.model.generate.MemGenInterleaver;
import dev.memgen.model.memory.InProcessMemory;
import dev.memgen.model.memory.LoraConfig;
import dev.memgen.model.memory.Memory;
import dev.memgen.model.memory.MemoryManifest;
import dev.memgen.model.text.ChatTemplate;
import dev.memgen.model.text.DelimiterTable;
import dev.memgen.model.text.TextTokenizer;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** The RL stages on a tiny random base: each moves its policy the way its reward says, and leaves the base alone. */
class RlTest {
  @TempDir static Path tmp;
  static Decoder base;
  static TextTokenizer tokenizer;
  static String fingerprint;
  static List<Evaluator.Problem> problems = new ArrayList<>();

  @BeforeAll
  static void setUp() throws Exception {
    Path dir = tmp.resolve("base");
    TinyCheckpoint.write(dir, TinyCheckpoint.tiny("qwen2"), DType.F32, 1, 43);
    fingerprint = Checkpoint.open(dir).fingerprint();
    base = Decoder.load(dir);
    tokenizer = TextTokenizer.load(dir);
    for (int i = 0; i < 8; i++) {
      problems.add(new Evaluator.Problem(ChatTemplate.userPrompt("Q:" + i + "+" + (7 * i % 10) + "=?"), "x"));
    }
  }

  @AfterAll
  static void tearDown() {
    tokenizer.close();
    base.close();
  }

  static Path freshMemory(String name, List<String> delimiters, int maxAug) throws Exception {
    Path dir = tmp.resolve(name);
    var c = base.config();
    LoraConfig lora = new LoraConfig(8, 16, List.of(LoraAdapter.Target.values()), 0.0);
    Memory.init(dir, c, new MemoryManifest(1, fingerprint, c.hiddenSize(), c.numLayers(), 4, 4, "embeddings", lora, lora,
        delimiters, maxAug), 3);
    return dir;
  }

  /**
   * Trivially learnable: whether the completion starts with an ASCII letter. The first token is the one the prompt
   * latents steer most directly (the last latent row predicts it).
   */
  static final Reward LETTERS = (completion, references) ->
      !completion.isEmpty() && completion.charAt(0) < 128 && Character.isLetter(completion.charAt(0)) ? 1 : 0;

  static double meanReward(Path memoryDir, DelimiterTable delimiters, MemGenInterleaver.TriggerMode mode) {
    try (Memory memory = Memory.load(memoryDir, base, fingerprint)) {
      InProcessMemory mem = new InProcessMemory(base, memory);
      MemGenInterleaver.Options options = new MemGenInterleaver.Options(true, 3, mode, 0.5, 99);
      return WeaverGrpo.rollouts(base, tokenizer, problems, LETTERS, 4, 8, 1.0, 12345,
          ids -> MemGenInterleaver.inProcess(mem, ids.size(), delimiters, options)).stream()
          .mapToDouble(Rollout::reward).average().orElseThrow();
    }
  }

  @Test
  void grpoRaisesATriviallyLearnableReward() throws Exception {
    DelimiterTable delimiters = DelimiterTable.build(tokenizer, base.config().vocabSize(), DelimiterTable.DEFAULT);
    Path in = freshMemory("grpo-in", DelimiterTable.DEFAULT, 3);
    Path out = tmp.resolve("grpo-out");
    String before = WeaverSftTest.digest(base);
    double start = meanReward(in, delimiters, MemGenInterleaver.TriggerMode.INACTIVE);
    List<Double> rewards = new ArrayList<>();
    WeaverGrpo.train(base, fingerprint, tokenizer, in, out, problems, LETTERS, delimiters,
        new WeaverGrpo.Settings(25, 4, 8, 1e-2, 2, 0.2, 0.0, 1, 16, 8, 1.0, AdamW.Settings.DEFAULT, 0, 5),
        (step, steps, meanReward, loss, informative) -> rewards.add(meanReward));
    double end = meanReward(out, delimiters, MemGenInterleaver.TriggerMode.INACTIVE);
    assertEquals(25, rewards.size());
    assertTrue(start < 0.3 && end > 0.75, "mean reward on held-out samples: " + start + " -> " + end + "; during training " + rewards);
    assertEquals(before, WeaverSftTest.digest(base), "the base's weights changed");
  }

  /**
   * When memory does not change the task reward (here the reward is constant), the adaptive penalty is all that
   * differs between trajectories, and the trigger learns to invoke less.
   */
  @Test
  void triggerRlLowersTheInvocationRateWhenInvokingDoesNotHelp() throws Exception {
    // Every third token id is a delimiter, so a random model meets many.
    DelimiterTable delimiters = DelimiterTable.ofTokenIds(base.config().vocabSize(), id -> id % 3 == 0);
    Path in = freshMemory("trigger-in", DelimiterTable.DEFAULT, 8);
    Path out = tmp.resolve("trigger-out");
    String before = WeaverSftTest.digest(base);
    Reward constant = (completion, references) -> 1.0;
    List<Double> rates = new ArrayList<>();
    TriggerRl.Result result = TriggerRl.train(base, fingerprint, tokenizer, in, out, problems, constant, delimiters,
        new TriggerRl.Settings(15, 4, 8, 5e-3, 2, 1.0, 12, 1.0, AdamW.Settings.DEFAULT, 0, 5),
        (step, steps, meanReward, rate, reference) -> rates.add(rate));
    double last = (rates.get(12) + rates.get(13) + rates.get(14)) / 3;
    assertTrue(rates.get(0) > 0.3 && last < 0.1, "invocation rate per step " + rates);
    assertEquals(2, result.manifest().version());
    assertEquals(before, WeaverSftTest.digest(base), "the base's weights changed");
    // The weaver is frozen in this stage: its tensors are unchanged.
    try (Memory a = Memory.load(in, base, fingerprint); Memory b = Memory.load(out, base, fingerprint)) {
      a.tensors("weaver").forEach((name, t) -> assertTrue(t.contentEquals(b.tensors().get(name)), name + " changed"));
      assertTrue(a.tensors("trigger").entrySet().stream().anyMatch(e -> !e.getValue().contentEquals(b.tensors().get(e.getKey()))));
    }
  }
}
