package dev.memgen.model.train;

import ai.djl.engine.Engine;
import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.training.GradientCollector;
import dev.memgen.model.Decoder;
import dev.memgen.model.eval.Evaluator;
import dev.memgen.model.generate.Generator;
import dev.memgen.model.generate.MemGenInterleaver;
import dev.memgen.model.generate.SamplingParams;
import dev.memgen.model.memory.InProcessMemory;
import dev.memgen.model.memory.Memory;
import dev.memgen.model.memory.MemoryManifest;
import dev.memgen.model.text.ChatTemplate;
import dev.memgen.model.text.DelimiterTable;
import dev.memgen.model.text.TextTokenizer;
import java.io.IOException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashSet;
import java.util.List;
import java.util.Set;

/**
 * Weaver GRPO (MemGen's weaver RL stage; DeepSeekMath's GRPO). Each update samples {@code groupSize} completions per
 * problem with the current weaver (trigger inactive), scores them with a {@link Reward}, normalises rewards within
 * each group into advantages, and maximises the PPO-clipped objective
 * {@code mean_i (1/|o_i|) sum_t min(rho A_i, clip(rho, 1 - eps, 1 + eps) A_i) - beta KL}, where
 * {@code rho = p(o_t) / p_old(o_t)} and the log-probabilities are recomputed by teacher forcing with latents
 * re-inserted by the same rule the sampler used. KL (k3 estimator) is against the weaver training started from, and
 * off by default, as in the reference. Groups whose rewards are all equal carry no signal and are skipped.
 */
public final class WeaverGrpo {
  public record Settings(int steps, int problemsPerStep, int groupSize, double lr, int warmupSteps, double clipEps,
      double klCoef, int updatesPerBatch, int microBatch, int maxNewTokens, double temperature, AdamW.Settings optimizer,
      int checkpointEvery, long seed) {
    public Settings {
      if (steps < 1 || problemsPerStep < 1 || groupSize < 2 || updatesPerBatch < 1 || microBatch < 1 || maxNewTokens < 1) {
        throw new IllegalArgumentException("need steps, problems per step, updates, micro-batch and max new tokens >= 1 "
            + "and a group of >= 2 samples");
      }
    }
  }

  /** Told after every update: the rollouts' mean reward, the objective, and the fraction of groups with signal. */
  public interface Listener {
    void step(int step, int steps, double meanReward, double loss, double informativeGroups);

    default void resumed(int step) {}
  }

  public record Result(int steps, double lastMeanReward, double seconds, MemoryManifest manifest) {}

  private WeaverGrpo() {}

  public static Result train(Decoder base, String fingerprint, TextTokenizer tokenizer, Path memoryIn, Path out,
      List<Evaluator.Problem> problems, Reward reward, DelimiterTable delimiters, Settings s, Listener listener)
      throws IOException {
    try (MemoryTrainingRun run = new MemoryTrainingRun(base, fingerprint, memoryIn, out, "weaver", s.optimizer(), listener::resumed);
        Memory reference = s.klCoef() > 0 ? Memory.load(memoryIn, base, fingerprint) : null) {
      Memory memory = run.memory;
      MemoryManifest manifest = memory.manifest();
      NDManager manager = run.manager;
      TeacherForcing forcing = new TeacherForcing(base, delimiters, manifest.maxInferenceAug());
      TeacherForcing.MemorySource weaver = TeacherForcing.weaver(memory.weaver());
      TeacherForcing.MemorySource frozen = reference == null ? null : TeacherForcing.weaver(reference.weaver());
      CosineSchedule schedule = new CosineSchedule(s.lr(), s.warmupSteps(), s.steps(), 1.0);
      Batches<Evaluator.Problem> batches = new Batches<>(problems, s.problemsPerStep(), s.seed());
      InProcessMemory sampler = new InProcessMemory(base, memory);
      MemGenInterleaver.Options rule = new MemGenInterleaver.Options(true, manifest.maxInferenceAug(),
          MemGenInterleaver.TriggerMode.INACTIVE, 0.5, 0);
      Engine engine = base.manager().getEngine();
      double meanReward = Double.NaN;
      long t0 = System.nanoTime();
      for (int step = run.start; step < s.steps(); step++) {
        List<Evaluator.Problem> batch = batches.get(step);
        List<Rollout> rollouts = rollouts(base, tokenizer, batch, reward, s.groupSize(), s.maxNewTokens(), s.temperature(),
            s.seed() * 1_000_003L + (long) step * s.problemsPerStep() * s.groupSize(),
            ids -> MemGenInterleaver.inProcess(sampler, ids.size(), delimiters, rule));
        meanReward = rollouts.stream().mapToDouble(Rollout::reward).average().orElse(0);
        double[] advantages = groupAdvantages(rollouts, s.groupSize());
        List<Integer> informative = new ArrayList<>();
        for (int i = 0; i < rollouts.size(); i++) {
          if (advantages[i] != 0) {
            informative.add(i);
          }
        }
        double loss = 0;
        if (!informative.isEmpty()) {
          float[][] old = new float[rollouts.size()][];
          for (int update = 0; update < s.updatesPerBatch(); update++) {
            for (int from = 0; from < informative.size(); from += s.microBatch()) {
              List<Integer> micro = informative.subList(from, Math.min(informative.size(), from + s.microBatch()));
              try (NDManager m = manager.newSubManager()) {
                List<TokenizedExample> examples = micro.stream().map(i -> rollouts.get(i).example()).toList();
                float[] ref = frozen == null ? null : forcing.logProbs(m, examples, frozen).values().toFloatArray();
                try (GradientCollector collector = engine.newGradientCollector()) {
                  TeacherForcing.TokenLogProbs lp = forcing.logProbs(m, examples, weaver);
                  if (update == 0) { // the policy has not moved since sampling: these are the old log-probs too
                    split(lp, micro, old);
                  }
                  NDArray objective = objective(m, lp, micro, old, advantages, ref, s, informative.size());
                  collector.backward(objective.neg());
                  loss -= objective.getFloat();
                }
              }
            }
            run.optimizer.step(schedule.at(step)); // skips a non-finite update; throws when training diverged
          }
          loss /= s.updatesPerBatch();
        }
        listener.step(step + 1, s.steps(), meanReward, loss, (double) informative.size() / rollouts.size());
        run.maybeCheckpoint(step + 1, s.checkpointEvery(), s.steps());
      }
      return new Result(s.steps(), meanReward, (System.nanoTime() - t0) / 1e9, run.finish());
    }
  }

  /**
   * {@code groupSize} seeded samples of each problem (consecutive rows form a group), decoded with memory from
   * {@code memory} (null: the plain base), scored, and tokenised for teacher forcing.
   */
  static List<Rollout> rollouts(Decoder base, TextTokenizer tokenizer, List<Evaluator.Problem> problems, Reward reward,
      int groupSize, int maxNewTokens, double temperature, long seed, Evaluator.Memory memory) {
    Set<Integer> stops = new HashSet<>(base.config().eosTokenIds());
    int end = tokenizer.tokenId(ChatTemplate.IM_END);
    stops.add(end);
    List<Generator.Request> requests = new ArrayList<>();
    List<int[]> prompts = new ArrayList<>();
    for (int p = 0; p < problems.size(); p++) {
      int[] prompt = tokenizer.encode(problems.get(p).chatPrompt());
      for (int g = 0; g < groupSize; g++) {
        prompts.add(prompt);
        requests.add(new Generator.Request(prompt, maxNewTokens,
            new SamplingParams(temperature, 0, 1, seed + (long) p * groupSize + g), stops));
      }
    }
    List<String> ids = new ArrayList<>();
    for (int i = 0; i < requests.size(); i++) {
      ids.add("rollout-" + i);
    }
    List<Generator.Result> results;
    List<MemGenInterleaver.Trace> traces = new ArrayList<>();
    Generator generator = new Generator(base);
    if (memory == null) {
      results = generator.generate(requests);
    } else {
      try (MemGenInterleaver loop = memory.open(ids)) {
        results = generator.generate(requests, (row, token, hidden) -> {}, loop);
        for (int i = 0; i < requests.size(); i++) {
          traces.add(loop.trace(i));
        }
      }
    }
    List<Rollout> rollouts = new ArrayList<>();
    for (int i = 0; i < requests.size(); i++) {
      int[] tokens = results.get(i).tokens(); // at least one: max new tokens >= 1
      Evaluator.Problem problem = problems.get(i / groupSize);
      String text = tokenizer.decode(tokens, true);
      List<MemGenInterleaver.Decision> decisions = traces.isEmpty() ? List.of() : traces.get(i).decisions();
      rollouts.add(new Rollout(i / groupSize, new TokenizedExample(prompts.get(i), tokens), text,
          reward.score(text, List.of(problem.expected())), decisions));
    }
    return rollouts;
  }

  /** (r - mean) / std within each group of {@code groupSize} consecutive rollouts; 0 for a group without spread. */
  static double[] groupAdvantages(List<Rollout> rollouts, int groupSize) {
    return groupAdvantages(rollouts, groupSize, true);
  }

  /** r - mean within each group, divided by the group's standard deviation when {@code byStd}. */
  static double[] groupAdvantages(List<Rollout> rollouts, int groupSize, boolean byStd) {
    double[] a = new double[rollouts.size()];
    for (int from = 0; from < rollouts.size(); from += groupSize) {
      double mean = 0;
      for (int i = from; i < from + groupSize; i++) {
        mean += rollouts.get(i).reward();
      }
      mean /= groupSize;
      double var = 0;
      for (int i = from; i < from + groupSize; i++) {
        var += Math.pow(rollouts.get(i).reward() - mean, 2);
      }
      double std = Math.sqrt(var / (groupSize - 1));
      for (int i = from; i < from + groupSize; i++) {
        a[i] = std < 1e-8 ? 0 : (rollouts.get(i).reward() - mean) / (byStd ? std : 1);
      }
    }
    return a;
  }

  private static void split(TeacherForcing.TokenLogProbs lp, List<Integer> micro, float[][] into) {
    float[] all = lp.values().toFloatArray();
    int at = 0;
    for (int j = 0; j < micro.size(); j++) {
      int n = 0;
      while (at + n < all.length && lp.example()[at + n] == j) {
        n++;
      }
      into[micro.get(j)] = Arrays.copyOfRange(all, at, at + n);
      at += n;
    }
  }

  /** The clipped surrogate (minus the KL term) of a micro-batch, weighted so micro-batches sum to the batch mean. */
  private static NDArray objective(NDManager m, TeacherForcing.TokenLogProbs lp, List<Integer> micro, float[][] old,
      double[] advantages, float[] ref, Settings s, int sequences) {
    int n = lp.example().length;
    float[] oldFlat = new float[n];
    float[] advantage = new float[n];
    float[] weight = new float[n];
    int at = 0;
    for (int j = 0; j < micro.size(); j++) {
      float[] o = old[micro.get(j)];
      for (float v : o) {
        oldFlat[at] = v;
        advantage[at] = (float) advantages[micro.get(j)];
        weight[at] = 1f / (o.length * sequences);
        at++;
      }
    }
    NDArray adv = m.create(advantage);
    NDArray ratio = lp.values().sub(m.create(oldFlat)).exp();
    NDArray clipped = ratio.clip(1 - s.clipEps(), 1 + s.clipEps());
    NDArray surrogate = ratio.mul(adv).minimum(clipped.mul(adv));
    if (ref != null) {
      NDArray delta = m.create(ref).sub(lp.values()); // k3: exp(ref - lp) - (ref - lp) - 1 >= 0
      surrogate = surrogate.sub(delta.exp().sub(delta).sub(1).mul(s.klCoef()));
    }
    return surrogate.mul(m.create(weight)).sum();
  }
}
