package dev.memgen.model.train;

import ai.djl.engine.Engine;
import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.training.GradientCollector;
import dev.memgen.model.Decoder;
import dev.memgen.model.eval.Evaluator;
import dev.memgen.model.generate.MemGenInterleaver;
import dev.memgen.model.memory.InProcessMemory;
import dev.memgen.model.memory.Memory;
import dev.memgen.model.memory.MemoryManifest;
import dev.memgen.model.text.DelimiterTable;
import dev.memgen.model.text.TextTokenizer;
import java.io.IOException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;

/**
 * Trigger RL (MemGen's second stage): the weaver is frozen; the policy is the trigger's invoke-or-skip decision at
 * each delimiter it is consulted at. Rollouts sample decisions from P(invoke); each trajectory's reward is the task
 * reward minus the paper's reward-adaptive penalty {@code lambda * sum_t max(0, d_t - p)}, with {@code d_t = 1} for
 * an invocation and {@code p} the mean invocation rate of the batch's trajectories whose task reward beats the batch
 * median (all trajectories when none does): invoking costs more the less the successful trajectories needed to. (The
 * reference code leaves the penalty out.) Each trajectory's advantage is its reward minus its group's mean (not
 * divided by the group's spread, see below), and the decisions' log-probabilities are raised in proportion (policy
 * gradient with a group baseline).
 */
public final class TriggerRl {
  public record Settings(int steps, int problemsPerStep, int groupSize, double lr, int warmupSteps, double penalty,
      int maxNewTokens, double temperature, AdamW.Settings optimizer, int checkpointEvery, long seed) {
    public Settings {
      if (steps < 1 || problemsPerStep < 1 || groupSize < 2 || maxNewTokens < 1 || penalty < 0) {
        throw new IllegalArgumentException("need steps, problems per step and max new tokens >= 1, a group of >= 2 "
            + "samples and a penalty >= 0");
      }
    }
  }

  /** Told after every update: mean task reward, invocation rate, and the penalty's reference rate. */
  public interface Listener {
    void step(int step, int steps, double meanReward, double invocationRate, double referenceRate);

    default void resumed(int step) {}
  }

  public record Result(int steps, double lastInvocationRate, double lastMeanReward, double seconds, MemoryManifest manifest) {}

  private TriggerRl() {}

  public static Result train(Decoder base, String fingerprint, TextTokenizer tokenizer, Path memoryIn, Path out,
      List<Evaluator.Problem> problems, Reward reward, DelimiterTable delimiters, Settings s, Listener listener)
      throws IOException {
    try (MemoryTrainingRun run = new MemoryTrainingRun(base, fingerprint, memoryIn, out, "trigger", s.optimizer(), listener::resumed)) {
      Memory memory = run.memory;
      MemoryManifest manifest = memory.manifest();
      NDManager manager = run.manager;
      CosineSchedule schedule = new CosineSchedule(s.lr(), s.warmupSteps(), s.steps(), 1.0);
      Batches<Evaluator.Problem> batches = new Batches<>(problems, s.problemsPerStep(), s.seed());
      InProcessMemory sampler = new InProcessMemory(base, memory);
      Engine engine = base.manager().getEngine();
      double rate = Double.NaN;
      double meanReward = Double.NaN;
      long t0 = System.nanoTime();
      for (int step = run.start; step < s.steps(); step++) {
        long seed = s.seed() * 1_000_003L + (long) step * s.problemsPerStep() * s.groupSize();
        MemGenInterleaver.Options sampling = new MemGenInterleaver.Options(true, manifest.maxInferenceAug(),
            MemGenInterleaver.TriggerMode.SAMPLE, 0.5, seed);
        List<Rollout> rollouts = WeaverGrpo.rollouts(base, tokenizer, batches.get(step), reward, s.groupSize(),
            s.maxNewTokens(), s.temperature(), seed, ids -> MemGenInterleaver.inProcess(sampler, ids.size(), delimiters, sampling));
        meanReward = rollouts.stream().mapToDouble(Rollout::reward).average().orElse(0);
        rate = rollouts.stream().filter(r -> !r.decisions().isEmpty()).mapToDouble(Rollout::invocationRate).average().orElse(0);
        double reference = referenceRate(rollouts);
        List<Rollout> shaped = new ArrayList<>();
        for (Rollout r : rollouts) {
          double cost = r.decisions().stream().mapToDouble(d -> Math.max(0, (d.invoke() ? 1 : 0) - reference)).sum();
          shaped.add(new Rollout(r.problem(), r.example(), r.text(), r.reward() - s.penalty() * cost, r.decisions()));
        }
        // Not divided by the group's spread: in a group whose task rewards are all equal, only the small penalty
        // differs, and dividing by its spread would blow it up into a signal as strong as a solved problem's.
        double[] advantages = WeaverGrpo.groupAdvantages(shaped, s.groupSize(), false);
        List<Integer> informative = new ArrayList<>();
        for (int i = 0; i < shaped.size(); i++) {
          if (advantages[i] != 0 && !shaped.get(i).decisions().isEmpty()) {
            informative.add(i);
          }
        }
        if (!informative.isEmpty()) {
          try (NDManager m = manager.newSubManager(); GradientCollector collector = engine.newGradientCollector()) {
            collector.backward(objective(m, memory, shaped, informative, advantages).neg());
          }
          run.optimizer.step(schedule.at(step)); // skips a non-finite update; throws when training diverged
        }
        listener.step(step + 1, s.steps(), meanReward, rate, reference);
        run.maybeCheckpoint(step + 1, s.checkpointEvery(), s.steps());
      }
      return new Result(s.steps(), rate, meanReward, (System.nanoTime() - t0) / 1e9, run.finish());
    }
  }

  /** Mean invocation rate of the trajectories whose task reward beats the batch median (all, when none does). */
  static double referenceRate(List<Rollout> rollouts) {
    double[] rewards = rollouts.stream().mapToDouble(Rollout::reward).sorted().toArray();
    int n = rewards.length;
    double median = n % 2 == 1 ? rewards[n / 2] : (rewards[n / 2 - 1] + rewards[n / 2]) / 2;
    List<Rollout> better = rollouts.stream().filter(r -> r.reward() > median).toList();
    return (better.isEmpty() ? rollouts : better).stream().mapToDouble(Rollout::invocationRate).average().orElse(0);
  }

  /** mean over informative trajectories of A_i times the mean log-probability of their decisions. */
  private static NDArray objective(NDManager m, Memory memory, List<Rollout> rollouts, List<Integer> informative,
      double[] advantages) {
    int[][] tokens = new int[informative.size()][];
    List<int[]> at = new ArrayList<>();
    List<Float> weights = new ArrayList<>();
    List<Integer> chosen = new ArrayList<>();
    for (int j = 0; j < informative.size(); j++) {
      Rollout r = rollouts.get(informative.get(j));
      int[] prompt = r.example().prompt();
      int[] completion = r.example().answer();
      tokens[j] = Arrays.copyOf(prompt, prompt.length + completion.length);
      System.arraycopy(completion, 0, tokens[j], prompt.length, completion.length);
      for (MemGenInterleaver.Decision d : r.decisions()) {
        at.add(new int[] {j, prompt.length + d.tokenIndex() - 1}); // the trigger had read through the delimiter
        weights.add((float) (advantages[informative.get(j)] / r.decisions().size() / informative.size()));
        chosen.add(d.invoke() ? 1 : 0);
      }
    }
    NDArray logProbs = memory.trigger().logProbs(m, tokens, at.toArray(int[][]::new)); // [N, 2]
    long[] index = chosen.stream().mapToLong(Integer::longValue).toArray();
    float[] w = new float[weights.size()];
    for (int i = 0; i < w.length; i++) {
      w[i] = weights.get(i);
    }
    NDArray picked = logProbs.gather(m.create(index, new ai.djl.ndarray.types.Shape(index.length, 1)), 1).reshape(index.length);
    return picked.mul(m.create(w)).sum();
  }
}
