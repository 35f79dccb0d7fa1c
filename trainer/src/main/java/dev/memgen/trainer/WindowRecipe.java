package dev.memgen.trainer;

import dev.memgen.model.Decoder;
import dev.memgen.model.checkpoint.Directories;
import dev.memgen.model.eval.Evaluator;
import dev.memgen.model.memory.Memory;
import dev.memgen.model.text.DelimiterTable;
import dev.memgen.model.text.TextTokenizer;
import dev.memgen.model.train.AdamW;
import dev.memgen.model.train.RejectionSampling;
import dev.memgen.model.train.Reward;
import dev.memgen.model.train.TokenizedExample;
import dev.memgen.model.train.TrainingDivergedException;
import dev.memgen.model.train.TriggerRl;
import dev.memgen.model.train.WeaverGrpo;
import dev.memgen.model.train.WeaverSft;
import java.io.IOException;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import java.util.function.Consumer;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * How a window is trained, written into the version it publishes ({@code recipe_*} metrics) so that {@code adapters
 * rebuild} can run the same steps again — and the steps themselves, shared by the trainer and the rebuild: rejection
 * sampling of the window's prompts, SFT, GRPO, trigger RL. Everything sampled is seeded from here: the rollouts by
 * {@code rolloutSeed} (also written beside each rolled-out trajectory in the ledger, exactly), the updates by {@code seed}.
 *
 * @param seed the seed of the window's updates (SFT batches, GRPO and trigger RL sampling)
 * @param threads libtorch's compute threads (sums split per thread: a rebuild uses as many)
 * @param maxNewTokens tokens per rollout (rejection sampling, GRPO, trigger RL)
 * @param rolloutSeed the seed of the window's rejection sampling (its attempt's own; 0 without rollouts)
 * @param rolloutPrompts how many prompts that sampling rolled out, in one batch
 * @param verifier the verifier, as {@link Verifier#named} knows it ("" without one, or one it does not make)
 */
public record WindowRecipe(int sftSteps, int sftBatch, double sftLr, long seed, int threads, int grpoSteps,
    int maxNewTokens, double sftMinReward, ContinualTrainer.Rollouts rollouts, long rolloutSeed, int rolloutPrompts,
    ContinualTrainer.TriggerTraining trigger, String verifier) {

  /** The decoder, tokenizer and delimiters a window trains against (the frozen base). */
  public record Base(Decoder decoder, String fingerprint, TextTokenizer tokenizer, DelimiterTable delimiters) {}

  /** Verifiers a recipe can name; its index is what a version's metrics record. */
  static final List<String> VERIFIERS = List.of("arithmetic");

  /** The name {@link Verifier#named} knows {@code v} by, or "" for a verifier it does not make. */
  static String key(Verifier v) {
    return VERIFIERS.stream().filter(k -> Verifier.named(k).name().equals(v.name())).findFirst().orElse("");
  }

  /** A ledger note's mark of a rolled-out trajectory: its place in the batch, and the batch's seed. */
  private static final Pattern ROLLOUT = Pattern.compile("rollout (\\d+)@(-?\\d+)");

  static String rolloutMark(int index, long seed) {
    return "rollout " + index + "@" + seed;
  }

  /** The {@code [index, seed]} of a ledger note's rollout mark, or null when the note has none. */
  static long[] rolloutMark(String note) {
    Matcher m = ROLLOUT.matcher(note);
    return m.find() ? new long[] {Long.parseLong(m.group(1)), Long.parseLong(m.group(2))} : null;
  }

  /** Writes the recipe into a version's metrics. */
  void record(Map<String, Double> metrics) {
    metrics.put("recipe_sft_steps", (double) sftSteps);
    metrics.put("recipe_sft_batch", (double) sftBatch);
    metrics.put("recipe_sft_lr", sftLr);
    metrics.put("recipe_seed", (double) seed);
    metrics.put("recipe_threads", (double) threads);
    metrics.put("recipe_mkl_reproducible", VersionRebuild.mklReproducible() ? 1.0 : 0.0);
    metrics.put("recipe_grpo_steps", (double) grpoSteps);
    metrics.put("recipe_max_new_tokens", (double) maxNewTokens);
    metrics.put("recipe_sft_min_reward", sftMinReward);
    metrics.put("recipe_rollout_samples", (double) rollouts.samples());
    metrics.put("recipe_rollout_base_samples", (double) rollouts.baseSamples());
    metrics.put("recipe_rollout_temperature", rollouts.temperature());
    metrics.put("recipe_rollout_max_per_prompt", (double) rollouts.maxPerPrompt());
    metrics.put("recipe_rollout_prompts", (double) rolloutPrompts);
    metrics.put("recipe_rollout_seed", (double) rolloutSeed); // exact below 2^53; the ledger's marks carry it exactly
    metrics.put("recipe_trigger_steps", (double) trigger.steps());
    metrics.put("recipe_trigger_problems_per_step", (double) trigger.problemsPerStep());
    metrics.put("recipe_trigger_group", (double) trigger.group());
    metrics.put("recipe_trigger_lr", trigger.lr());
    metrics.put("recipe_trigger_penalty", trigger.penalty());
    metrics.put("recipe_trigger_threshold", trigger.threshold());
    metrics.put("recipe_verifier", (double) VERIFIERS.indexOf(verifier));
  }

  /**
   * The recipe a version's metrics record. Versions from before sampled windows recorded theirs have only the SFT
   * part; they are read so when they did not sample.
   *
   * @throws IllegalArgumentException naming what is missing
   */
  static WindowRecipe of(Map<String, Double> m, String what) {
    for (String key : List.of("recipe_sft_steps", "recipe_sft_batch", "recipe_sft_lr", "recipe_seed", "recipe_threads")) {
      if (!m.containsKey(key)) {
        throw new IllegalArgumentException(what + ": its record has no " + key + " (published before versions recorded "
            + "their recipe, or not by the trainer)");
      }
    }
    boolean sampled = m.containsKey("grpo_last_mean_reward") || m.getOrDefault("rollout_prompts", 0.0) > 0
        || m.getOrDefault("trigger_rl_steps", 0.0) > 0;
    if (sampled && !m.containsKey("recipe_rollout_prompts")) {
      throw new IllegalArgumentException(what + " was trained with sampled rollouts before versions recorded their "
          + "sampling recipe (seeds and settings): it cannot be replayed");
    }
    int verifier = (int) m.getOrDefault("recipe_verifier", -1.0).doubleValue();
    return new WindowRecipe(m.get("recipe_sft_steps").intValue(), m.get("recipe_sft_batch").intValue(), m.get("recipe_sft_lr"),
        m.get("recipe_seed").longValue(), m.get("recipe_threads").intValue(), get(m, "recipe_grpo_steps", 0),
        get(m, "recipe_max_new_tokens", 1), m.getOrDefault("recipe_sft_min_reward", 1.0),
        new ContinualTrainer.Rollouts(get(m, "recipe_rollout_samples", 0), get(m, "recipe_rollout_base_samples", 0),
            m.getOrDefault("recipe_rollout_temperature", 1.0), get(m, "recipe_rollout_max_per_prompt", 1)),
        m.getOrDefault("recipe_rollout_seed", 0.0).longValue(), get(m, "recipe_rollout_prompts", 0),
        new ContinualTrainer.TriggerTraining(get(m, "recipe_trigger_steps", 0), get(m, "recipe_trigger_problems_per_step", 4),
            get(m, "recipe_trigger_group", 4), m.getOrDefault("recipe_trigger_lr", 1e-4),
            m.getOrDefault("recipe_trigger_penalty", 0.1), m.getOrDefault("recipe_trigger_threshold", 0.5)),
        verifier >= 0 && verifier < VERIFIERS.size() ? VERIFIERS.get(verifier) : "");
  }

  private static int get(Map<String, Double> m, String key, int otherwise) {
    Double v = m.get(key);
    return v == null ? otherwise : v.intValue();
  }

  WindowRecipe withRolloutSeed(long rolloutSeed, int rolloutPrompts) {
    return new WindowRecipe(sftSteps, sftBatch, sftLr, seed, threads, grpoSteps, maxNewTokens, sftMinReward, rollouts,
        rolloutSeed, rolloutPrompts, trigger, verifier);
  }

  /** The window's rejection sampling: {@code prompts} rolled out with the memory in {@code memoryDir} and the base alone. */
  RejectionSampling.Result rollOut(Base b, Path memoryDir, List<Evaluator.Problem> prompts, Reward reward) {
    try (Memory memory = Memory.load(memoryDir, b.decoder(), b.fingerprint())) {
      return RejectionSampling.sample(b.decoder(), b.tokenizer(), memory, b.delimiters(), prompts, reward,
          new RejectionSampling.Settings(rollouts.samples(), rollouts.baseSamples(), rollouts.temperature(), maxNewTokens,
              sftMinReward, rollouts.maxPerPrompt(), rolloutSeed));
    }
  }

  /**
   * A digest of the rollouts a window kept (every prompt's, in order, token by token), as a version's metric: 52 bits
   * of their SHA-256, which a double holds exactly. A rebuild compares it to tell "the rollouts came out differently"
   * from "the updates summed differently".
   */
  static double digest(RejectionSampling.Result found) {
    try {
      java.security.MessageDigest sha = java.security.MessageDigest.getInstance("SHA-256");
      java.nio.ByteBuffer b = java.nio.ByteBuffer.allocate(4);
      for (List<TokenizedExample> kept : found.accepted()) {
        sha.update((byte) '|');
        for (TokenizedExample x : kept) {
          for (int[] ids : List.of(x.prompt(), x.answer())) {
            for (int id : ids) {
              sha.update(b.clear().putInt(id).array());
            }
            sha.update((byte) ';');
          }
        }
      }
      return java.nio.ByteBuffer.wrap(sha.digest()).getLong() >>> 12;
    } catch (java.security.NoSuchAlgorithmException e) {
      throw new IllegalStateException(e);
    }
  }

  /** The SFT of a window's weaver update. */
  WeaverSft.Settings sft(int steps) {
    return new WeaverSft.Settings(steps, sftBatch, 1, sftLr, Math.min(10, steps / 5), 0.1, AdamW.Settings.DEFAULT, 0, seed);
  }

  /**
   * The weaver's update: SFT on {@code examples} ({@code sftSteps} updates) into {@code work}/candidate-sft, then
   * GRPO by re-rollout of {@code prompts} ({@code grpoSteps}) into {@code work}/candidate-grpo; returns the last.
   */
  Path trainWeaver(Base b, Path from, Path work, List<TokenizedExample> examples, List<Evaluator.Problem> prompts,
      int sftSteps, int grpoSteps, Reward reward, Map<String, Double> metrics, Consumer<String> status) throws IOException {
    Path trained = from;
    if (!examples.isEmpty()) {
      status.accept("training weaver (sft)");
      Path out = work.resolve("candidate-sft");
      Directories.deleteRecursively(out);
      WeaverSft.Result r = WeaverSft.train(b.decoder(), b.fingerprint(), trained, out, examples, b.delimiters(), sft(sftSteps),
          (step, steps, loss, lr, norm, tps) -> {});
      metrics.put("sft_last_loss", r.lastLoss());
      metrics.put("sft_skipped_updates", (double) r.skippedSteps());
      if (!Double.isFinite(r.lastLoss()) || 2 * r.skippedSteps() > r.steps()) {
        throw new TrainingDivergedException("SFT ended with loss " + r.lastLoss() + " after skipping " + r.skippedSteps()
            + " of " + r.steps() + " updates for non-finite gradients");
      }
      trained = out;
    }
    if (grpoSteps > 0 && !prompts.isEmpty()) {
      status.accept("training weaver (grpo)");
      Path out = work.resolve("candidate-grpo");
      Directories.deleteRecursively(out);
      WeaverGrpo.Result r = WeaverGrpo.train(b.decoder(), b.fingerprint(), b.tokenizer(), trained, out, prompts, reward,
          b.delimiters(), new WeaverGrpo.Settings(grpoSteps, Math.min(4, prompts.size()), 4, sftLr / 3, 0, 0.2, 0.0, 1, 8,
              maxNewTokens, 1.0, AdamW.Settings.DEFAULT, 0, seed), (step, steps, meanReward, loss, informative) -> {});
      metrics.put("grpo_last_mean_reward", r.lastMeanReward());
      trained = out;
    }
    if (trained.equals(from)) {
      throw new IllegalArgumentException("nothing to train: no SFT example and no GRPO prompt");
    }
    return trained;
  }

  /** Trigger RL on {@code prompts}, the weaver of {@code from} frozen, into {@code work}/candidate-trigger. */
  Path trainTrigger(Base b, Path from, Path work, List<Evaluator.Problem> prompts, Reward reward, Map<String, Double> metrics)
      throws IOException {
    Path out = work.resolve("candidate-trigger");
    Directories.deleteRecursively(out); // a fresh run, not a resumed one
    TriggerRl.Result r = TriggerRl.train(b.decoder(), b.fingerprint(), b.tokenizer(), from, out, prompts, reward,
        b.delimiters(), new TriggerRl.Settings(trigger.steps(), Math.min(trigger.problemsPerStep(), prompts.size()),
            trigger.group(), trigger.lr(), 0, trigger.penalty(), maxNewTokens, 1.0, AdamW.Settings.DEFAULT, 0, seed),
        (step, steps, rewardMean, rate, reference) -> {});
    metrics.put("trigger_rl_steps", (double) r.steps());
    metrics.put("trigger_rl_invocation_rate", r.lastInvocationRate());
    metrics.put("trigger_rl_mean_reward", r.lastMeanReward());
    return out;
  }
}
