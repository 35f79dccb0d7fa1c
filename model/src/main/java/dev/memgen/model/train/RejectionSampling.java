package dev.memgen.model.train;

import dev.memgen.model.Decoder;
import dev.memgen.model.eval.Evaluator;
import dev.memgen.model.generate.MemGenInterleaver;
import dev.memgen.model.memory.InProcessMemory;
import dev.memgen.model.memory.Memory;
import dev.memgen.model.text.DelimiterTable;
import dev.memgen.model.text.TextTokenizer;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashSet;
import java.util.List;
import java.util.Set;

/**
 * Rejection sampling (STaR, RFT, expert iteration): {@code samples} completions per problem from the memory as it
 * serves (latents inserted by its rule, the trigger inactive, as the weaver is trained), each scored by a
 * {@link Reward}; the distinct completions that earn at least {@code minReward} become SFT targets. Learning from a
 * verifier alone this way needs no reference answer: only problems the policy sometimes solves teach anything,
 * which is why the traffic must be one the base partly solves (DESIGN.md section 3d).
 */
public final class RejectionSampling {
  /**
   * @param samples rollouts per problem (G) from the memory given (the base alone when there is none)
   * @param baseSamples more rollouts per problem from the frozen base alone, memory off: a problem the memory never
   *     solves can still teach when the base sometimes does
   * @param maxPerProblem distinct accepted completions kept per problem, so that an easy problem solved by every
   *     sample does not crowd out the hard ones
   */
  public record Settings(int samples, int baseSamples, double temperature, int maxNewTokens, double minReward,
      int maxPerProblem, long seed) {
    public Settings {
      if (samples < 0 || baseSamples < 0 || samples + baseSamples < 1 || maxPerProblem < 1 || maxNewTokens < 1
          || !(temperature > 0)) {
        throw new IllegalArgumentException("need samples and base samples >= 0 (>= 1 together), max per problem and max new "
            + "tokens >= 1 and a temperature > 0");
      }
    }
  }

  /**
   * What the sampling found, per problem (in order): the accepted completions as SFT examples, and how many of its
   * rollouts earned the reward.
   */
  public record Result(List<List<TokenizedExample>> accepted, int[] rightPerProblem, int samples) {
    /** Every accepted example. */
    public List<TokenizedExample> all() {
      return accepted.stream().flatMap(List::stream).toList();
    }

    /** Problems with at least one rollout that earned the reward. */
    public int solved() {
      return (int) Arrays.stream(rightPerProblem).filter(n -> n > 0).count();
    }

    /**
     * This result and {@code other} (of the same problems) together: per problem, the distinct accepted examples of
     * both (this one's first) up to {@code maxPerProblem}, and the rollouts and rewarded counts summed.
     */
    Result and(Result other, int maxPerProblem) {
      List<List<TokenizedExample>> merged = new ArrayList<>();
      int[] right = new int[rightPerProblem.length];
      for (int p = 0; p < accepted.size(); p++) {
        List<TokenizedExample> kept = new ArrayList<>();
        Set<String> seen = new HashSet<>();
        for (TokenizedExample e : concat(accepted.get(p), other.accepted.get(p))) {
          if (kept.size() < maxPerProblem && seen.add(Arrays.toString(e.answer()))) {
            kept.add(e);
          }
        }
        merged.add(kept);
        right[p] = rightPerProblem[p] + other.rightPerProblem[p];
      }
      return new Result(merged, right, samples + other.samples);
    }

    private static List<TokenizedExample> concat(List<TokenizedExample> a, List<TokenizedExample> b) {
      List<TokenizedExample> all = new ArrayList<>(a);
      all.addAll(b);
      return all;
    }

    /** Rollouts that earned the reward, over every problem. */
    public long rewarded() {
      return Arrays.stream(rightPerProblem).sum();
    }

    /** The share of rollouts that earned the reward. */
    public double rolloutAccuracy() {
      return rightPerProblem.length == 0 ? 0 : (double) Arrays.stream(rightPerProblem).sum() / (rightPerProblem.length * samples);
    }
  }

  private RejectionSampling() {}

  /**
   * Samples {@code s.samples()} answers per problem from {@code memory} (null: the frozen base alone) and
   * {@code s.baseSamples()} more from the base alone, and keeps what the reward accepts.
   */
  public static Result sample(Decoder base, TextTokenizer tokenizer, Memory memory, DelimiterTable delimiters,
      List<Evaluator.Problem> problems, Reward reward, Settings s) {
    Result found = s.samples() == 0 ? null : sample(base, tokenizer, memory, delimiters, problems, reward, s, s.samples(), s.seed());
    if (s.baseSamples() == 0) {
      return found;
    }
    Result plain = sample(base, tokenizer, null, null, problems, reward, s, s.baseSamples(), s.seed() + 500_009L);
    return found == null ? plain : found.and(plain, s.maxPerProblem());
  }

  /** One arm: {@code samples} seeded answers per problem from {@code memory} (null: the base alone). */
  private static Result sample(Decoder base, TextTokenizer tokenizer, Memory memory, DelimiterTable delimiters,
      List<Evaluator.Problem> problems, Reward reward, Settings s, int samples, long seed) {
    Evaluator.Memory source = null;
    if (memory != null) {
      InProcessMemory sampler = new InProcessMemory(base, memory);
      MemGenInterleaver.Options rule = new MemGenInterleaver.Options(true, memory.manifest().maxInferenceAug(),
          MemGenInterleaver.TriggerMode.INACTIVE, 0.5, 0);
      source = ids -> MemGenInterleaver.inProcess(sampler, ids.size(), delimiters, rule);
    }
    List<List<TokenizedExample>> accepted = new ArrayList<>();
    int[] right = new int[problems.size()];
    // Rollouts of a few problems at a time: one batch of up to 64 rows keeps the KV cache small.
    int perBatch = Math.max(1, 64 / samples);
    for (int from = 0; from < problems.size(); from += perBatch) {
      List<Evaluator.Problem> chunk = problems.subList(from, Math.min(problems.size(), from + perBatch));
      List<Rollout> rollouts = WeaverGrpo.rollouts(base, tokenizer, chunk, reward, samples, s.maxNewTokens(),
          s.temperature(), seed + (long) from * samples, source);
      for (int p = 0; p < chunk.size(); p++) {
        List<TokenizedExample> kept = new ArrayList<>();
        Set<String> seen = new HashSet<>();
        for (int g = 0; g < samples; g++) {
          Rollout r = rollouts.get(p * samples + g);
          if (r.reward() >= s.minReward()) {
            right[from + p]++;
            if (kept.size() < s.maxPerProblem() && seen.add(Arrays.toString(r.example().answer()))) {
              kept.add(r.example());
            }
          }
        }
        accepted.add(kept);
      }
    }
    return new Result(accepted, right, samples);
  }
}
