package dev.memgen.model.train;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

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
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashSet;
import java.util.List;
import java.util.Set;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Learning from a verifier's reward alone: rejection sampling keeps exactly the distinct rollouts the reward accepts,
 * and SFT on them raises the reward the memory earns, with no reference answer anywhere.
 */
class RejectionSamplingTest {
  @TempDir static Path tmp;
  static Decoder base;
  static TextTokenizer tokenizer;
  static String fingerprint;
  static DelimiterTable delimiters;

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

  /** A verifier a random base passes about a quarter of the time: the answer starts with a character below 'A'. */
  static final Reward LOW_FIRST_CHARACTER = (completion, refs) -> !completion.isEmpty() && completion.charAt(0) < 'A' ? 1 : 0;

  static List<Evaluator.Problem> problems(int n, int from) {
    List<Evaluator.Problem> out = new ArrayList<>();
    for (int i = from; i < from + n; i++) {
      out.add(new Evaluator.Problem(ChatTemplate.userPrompt("Q:" + i + "+" + (i % 7) + "=?"), "unused"));
    }
    return out;
  }

  @Test
  void keepsExactlyTheDistinctRewardedRolloutsUpToTheCap() throws Exception {
    Path mem = freshMemory("rs-keep", 2, new LoraConfig(4, 8, List.of(LoraAdapter.Target.Q_PROJ), 0.0));
    List<Evaluator.Problem> problems = problems(3, 0);
    RejectionSampling.Settings s = new RejectionSampling.Settings(8, 0, 1.0, 2, 1.0, 3, 5);
    try (Memory memory = Memory.load(mem, base, fingerprint)) {
      RejectionSampling.Result r = RejectionSampling.sample(base, tokenizer, memory, delimiters, problems, LOW_FIRST_CHARACTER, s);
      // The same rollouts, independently: the same seeds through the GRPO sampler, filtered here.
      InProcessMemory sampler = new InProcessMemory(base, memory);
      MemGenInterleaver.Options rule = new MemGenInterleaver.Options(true, memory.manifest().maxInferenceAug(),
          MemGenInterleaver.TriggerMode.INACTIVE, 0.5, 0);
      List<Rollout> all = WeaverGrpo.rollouts(base, tokenizer, problems, LOW_FIRST_CHARACTER, 8, 2, 1.0, 5,
          ids -> MemGenInterleaver.inProcess(sampler, ids.size(), delimiters, rule));
      int total = 0;
      for (int p = 0; p < problems.size(); p++) {
        List<int[]> want = new ArrayList<>();
        Set<String> seen = new HashSet<>();
        int right = 0;
        for (Rollout x : all.subList(p * 8, p * 8 + 8)) {
          if (x.reward() >= 1) {
            right++;
            if (want.size() < 3 && seen.add(Arrays.toString(x.example().answer()))) {
              want.add(x.example().answer());
            }
          }
        }
        assertEquals(right, r.rightPerProblem()[p], "problem " + p);
        assertEquals(want.size(), r.accepted().get(p).size(), "problem " + p);
        for (int i = 0; i < want.size(); i++) {
          assertArrayEquals(want.get(i), r.accepted().get(p).get(i).answer());
          assertArrayEquals(tokenizer.encode(problems.get(p).chatPrompt()), r.accepted().get(p).get(i).prompt());
        }
        total += right;
      }
      assertTrue(total > 0 && total < 24, "the verifier must accept some rollouts and refuse others, accepted " + total);
      assertEquals(total / 24.0, r.rolloutAccuracy(), 1e-12);
    }
  }

  @Test
  void sftOnTheRewardedRolloutsRaisesTheReward() throws Exception {
    Path mem = freshMemory("rs-learn", 4, new LoraConfig(4, 8, List.of(LoraAdapter.Target.Q_PROJ, LoraAdapter.Target.V_PROJ), 0.0));
    List<Evaluator.Problem> train = problems(8, 0);
    // The reward is measured on new samples (other seeds) of the prompts: the traffic the memory learns from.
    RejectionSampling.Settings measure = new RejectionSampling.Settings(16, 0, 1.0, 2, 1.0, 1, 777);
    double before;
    try (Memory memory = Memory.load(mem, base, fingerprint)) {
      before = RejectionSampling.sample(base, tokenizer, memory, delimiters, train, LOW_FIRST_CHARACTER, measure).rolloutAccuracy();
    }
    Path current = mem;
    for (int round = 0; round < 2; round++) { // expert iteration: sample from the latest memory, keep, fine-tune
      List<TokenizedExample> accepted;
      try (Memory memory = Memory.load(current, base, fingerprint)) {
        accepted = RejectionSampling.sample(base, tokenizer, memory, delimiters, train, LOW_FIRST_CHARACTER,
            new RejectionSampling.Settings(8, 0, 1.0, 2, 1.0, 4, 1 + round)).all();
      }
      assertTrue(!accepted.isEmpty(), "nothing accepted to learn from in round " + round);
      Path out = tmp.resolve("rs-learned-" + round);
      WeaverSft.train(base, fingerprint, current, out, accepted, delimiters,
          new WeaverSft.Settings(60, 8, 1, 1e-2, 5, 0.1, AdamW.Settings.DEFAULT, 0, 3 + round), (step, steps, loss, lr, norm, tps) -> {});
      current = out;
    }
    double after;
    try (Memory memory = Memory.load(current, base, fingerprint)) {
      after = RejectionSampling.sample(base, tokenizer, memory, delimiters, train, LOW_FIRST_CHARACTER, measure).rolloutAccuracy();

    }
    assertTrue(before < 0.5, "the task must not be solved before training: " + before);
    assertTrue(after > before + 0.2, "the reward went from " + before + " to " + after);
  }
}
