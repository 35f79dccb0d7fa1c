package dev.memgen.trainer;

import dev.memgen.log.ExperienceLog;
import dev.memgen.log.Records;
import dev.memgen.log.Topics;
import dev.memgen.log.store.AdapterStore;
import dev.memgen.log.store.Ledger;
import dev.memgen.model.Decoder;
import dev.memgen.model.Engines;
import dev.memgen.model.checkpoint.Checkpoint;
import dev.memgen.model.checkpoint.Directories;
import dev.memgen.model.eval.Evaluator;
import dev.memgen.model.memory.Memory;
import dev.memgen.model.memory.MemoryManifest;
import dev.memgen.model.text.DelimiterTable;
import dev.memgen.model.text.TextTokenizer;
import dev.memgen.model.train.TokenizedExample;
import dev.memgen.model.train.RejectionSampling;
import dev.memgen.model.train.Reward;
import dev.memgen.proto.v1.Feedback;
import dev.memgen.proto.v1.Trajectory;
import ai.djl.ndarray.NDArray;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.Set;
import java.util.TreeMap;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.common.TopicPartition;

/**
 * Audits a stored version by training it again: from its parent (materialised from the store), on the trajectories its
 * ledger says it trained (read back from the log at their offsets), with the corrections the feedback log held up to
 * the version's recorded feedback positions, by the recipe its record names (SFT steps, batch, learning rate, seed,
 * threads). The result is compared with the stored version tensor by tensor and on a held-out set.
 *
 * <p>Bit-identical tensors need the same computation: the same libtorch build, CPU kind and thread count (a parallel
 * reduction splits its sums by thread), which the record's {@code recipe_threads} names, and MKL's conditional numerical
 * reproducibility ({@code MKL_CBWR=AUTO}: sums independent of how the arrays happen to be aligned) and a fixed MKL
 * thread count ({@code MKL_DYNAMIC=FALSE}: by default MKL uses fewer threads on a busy machine) in both processes;
 * trainer-service's launchers set them, and so does {@code ./memgen adapters rebuild}. What most likely differs is
 * reported when the tensors do. Windows whose training sampled (GRPO, rejection sampling,
 * trigger RL) are refused for now: their rollouts were seeded per process, not recorded.
 */
public final class VersionRebuild {
  private static final Duration KAFKA_TIMEOUT = Duration.ofSeconds(30);

  /**
   * What the rebuild came to. {@code maxAbsDiff}: per tensor, the largest difference between the stored and the rebuilt
   * values (0 for identical ones); {@code why}: "" when bit-identical, else what most likely differs.
   */
  public record Result(String name, long version, long parent, int trajectories, int sftExamples, int corrections,
      int rolloutExamples, boolean bitIdentical, Map<String, Double> maxAbsDiff, double storedAccuracy,
      double rebuiltAccuracy, int heldOut, String why, Path rebuilt) {}

  private VersionRebuild() {}

  /**
   * Rebuilds version {@code version} of {@code name} into {@code work}/rebuilt.
   *
   * @throws IllegalArgumentException the version cannot be rebuilt (the initial version, a record without its recipe,
   *     a sampled window recorded before sampling recipes were, or scored by a verifier this process cannot make, a
   *     rollout batch missing a member, trajectories gone from the log), with the reason
   */
  public static Result run(AdapterStore store, String name, long version, String bootstrapServers, Path modelDir, Path work,
      List<Evaluator.Problem> heldOut, int evalMaxNewTokens) throws IOException {
    return run(store, name, version, bootstrapServers, modelDir, work, heldOut, evalMaxNewTokens, Optional.empty());
  }

  /**
   * The same, scoring the window's rollouts with {@code verifier} — for a trainer run with a verifier of its own, which
   * a version cannot name — instead of the verifier its record names.
   */
  public static Result run(AdapterStore store, String name, long version, String bootstrapServers, Path modelDir, Path work,
      List<Evaluator.Problem> heldOut, int evalMaxNewTokens, Optional<Verifier> given) throws IOException {
    AdapterStore.Version v = store.get(name, version);
    String what = name + " v" + version;
    if (v.parent() < 1) {
      throw new IllegalArgumentException(what + " is an initial memory (no parent): nothing was trained");
    }
    Map<String, Double> m = v.metrics();
    WindowRecipe recipe = WindowRecipe.of(m, what);
    String fingerprint = Checkpoint.open(modelDir).fingerprint();
    if (!fingerprint.equals(v.baseFingerprint())) {
      throw new IllegalArgumentException(what + " was trained on base " + v.baseFingerprint() + ", not " + modelDir + " ("
          + fingerprint + ")");
    }
    Ledger ledger = store.ledger(name, version);
    List<Ledger.Entry> taught = ledger.entries(Ledger.Outcome.TRAINED);
    List<Ledger.Entry> batch = rolloutBatch(ledger, recipe, what);
    boolean sampled = !batch.isEmpty() || recipe.grpoSteps() > 0 || recipe.trigger().on();
    Verifier verifier = given.orElse(null);
    if (sampled && verifier == null) {
      if (recipe.verifier().isEmpty()) {
        throw new IllegalArgumentException(what + " was trained with sampled rollouts scored by a verifier rebuild does "
            + "not know (known: " + String.join(", ", WindowRecipe.VERIFIERS) + ")");
      }
      verifier = Verifier.named(recipe.verifier());
    }
    Set<String> sources = new java.util.LinkedHashSet<>(taught.stream().map(Ledger.Entry::source).toList());
    batch.forEach(e -> sources.add(e.source()));
    Map<String, ConsumerRecord<String, byte[]>> records = ExperienceLog.readAt(bootstrapServers, sources,
        "memgen-rebuild", KAFKA_TIMEOUT);
    Map<String, String> corrections = corrections(bootstrapServers, v, Set.copyOf(taught.stream()
        .filter(e -> notes(e).contains("correction")).map(Ledger.Entry::trajectoryId).toList()));

    Directories.deleteRecursively(work);
    Path parentDir = store.materialize(name, v.parent(), work.resolve("parent"));
    Path storedDir = store.materialize(name, version, work.resolve("stored"));
    Path rebuilt = work.resolve("rebuilt");
    Engines.computeThreads(recipe.threads());
    try (Decoder base = Decoder.load(modelDir); TextTokenizer tokenizer = TextTokenizer.load(modelDir)) {
      MemoryManifest manifest = MemoryManifest.read(parentDir);
      DelimiterTable delimiters = DelimiterTable.build(tokenizer, base.config().vocabSize(), manifest.delimiters());
      WindowRecipe.Base frozen = new WindowRecipe.Base(base, fingerprint, tokenizer, delimiters);
      Verifier judge = verifier;
      Reward reward = judge == null ? null : (completion, refs) -> judge.score(completion, refs.get(0));

      // The window's rejection sampling again: the same prompts in the same batch, the parent's memory, the same seed.
      List<List<TokenizedExample>> accepted = List.of();
      int rolloutExamples = 0;
      boolean rolloutsDiffer = false;
      if (!batch.isEmpty()) {
        List<Evaluator.Problem> problems = new ArrayList<>();
        for (Ledger.Entry e : batch) {
          problems.add(problem(judge, tokenizer, prompt(trajectory(records, e, what)), what, e));
        }
        long seed = WindowRecipe.rolloutMark(batch.get(0).detail())[1];
        RejectionSampling.Result found = recipe.withRolloutSeed(seed, batch.size()).rollOut(frozen, parentDir, problems, reward);
        accepted = found.accepted();
        rolloutExamples = found.all().size();
        rolloutsDiffer = m.containsKey("rollout_digest") && m.get("rollout_digest") != WindowRecipe.digest(found);
      }
      // The window's SFT targets in the trainer's order: per trajectory, its completion if it was rewarded enough, its
      // correction, then the rollouts of its prompt the verifier rewarded; its prompt for GRPO and trigger RL.
      List<TokenizedExample> examples = new ArrayList<>();
      List<Evaluator.Problem> prompts = new ArrayList<>();
      for (Ledger.Entry e : taught) {
        Trajectory t = trajectory(records, e, what);
        int[] prompt = prompt(t);
        List<String> notes = notes(e);
        if (notes.contains("sft")) {
          examples.add(new TokenizedExample(prompt, t.getCompletionTokenIdsList().stream().mapToInt(Integer::intValue)
              .toArray()));
        }
        if (notes.contains("correction")) {
          String c = corrections.get(e.trajectoryId());
          if (c == null) {
            throw new IllegalArgumentException(what + ": the correction of " + e.trajectoryId()
                + " is no longer in the feedback log");
          }
          examples.add(TokenizedExample.of(tokenizer, tokenizer.decode(prompt, false), c));
        }
        long[] mark = WindowRecipe.rolloutMark(e.detail());
        if (mark != null) {
          examples.addAll(accepted.get((int) mark[0]));
        }
        if (notes.contains("grpo") || notes.contains("trigger rl")) {
          prompts.add(problem(judge, tokenizer, prompt, what, e));
        }
      }
      Map<String, Double> measured = new HashMap<>();
      Path trained = parentDir;
      if (!examples.isEmpty() || (recipe.grpoSteps() > 0 && !prompts.isEmpty())) {
        trained = recipe.trainWeaver(frozen, parentDir, work, examples, prompts, recipe.sftSteps(),
            prompts.isEmpty() ? 0 : recipe.grpoSteps(), reward, measured, status -> {});
      }
      if (recipe.trigger().on() && !prompts.isEmpty()) {
        trained = recipe.trainTrigger(frozen, trained, work, prompts, reward, measured);
      }
      if (trained.equals(parentDir)) {
        throw new IllegalArgumentException(what + ": its ledger names nothing the window trained on");
      }
      Files.move(trained, rebuilt);
      MemoryManifest.read(rebuilt).withVersion(version).write(rebuilt);

      Map<String, Double> diff = new TreeMap<>();
      boolean identical = true;
      try (Memory a = Memory.load(storedDir, base, fingerprint); Memory b = Memory.load(rebuilt, base, fingerprint)) {
        for (Map.Entry<String, NDArray> t : a.tensors().entrySet()) {
          NDArray other = b.tensors().get(t.getKey());
          if (other == null || !other.getShape().equals(t.getValue().getShape())) {
            throw new IllegalStateException("the rebuilt memory has no tensor " + t.getKey() + " of shape "
                + t.getValue().getShape());
          }
          identical &= java.util.Arrays.equals(t.getValue().toByteArray(), other.toByteArray());
          try (NDArray d = t.getValue().sub(other).abs().max()) {
            diff.put(t.getKey(), (double) d.getFloat());
          }
        }
      }
      // Both scored as the window was gated: with the trigger at its threshold if it trained one, else memory at every
      // delimiter.
      double stored = ContinualTrainer.evaluate(base, fingerprint, tokenizer, delimiters, storedDir, heldOut, evalMaxNewTokens,
          recipe.trigger()).accuracy();
      double again = ContinualTrainer.evaluate(base, fingerprint, tokenizer, delimiters, rebuilt, heldOut, evalMaxNewTokens,
          recipe.trigger()).accuracy();
      int threads = recipe.threads();
      double storedRollouts = m.getOrDefault("rollout_examples", 0.0);
      rolloutsDiffer |= !batch.isEmpty() && rolloutExamples != storedRollouts;
      String why = identical ? "" : rolloutsDiffer
          ? "the window's rollouts came out differently (" + rolloutExamples + " rewarded rollouts kept, the trainer kept "
              + (long) storedRollouts + (rolloutExamples == storedRollouts ? ", not the same ones" : "") + "): another "
              + "verifier, or sums that differ before sampling (sampling follows the logits); "
              + sums(threads, trainedReproducibly(m))
          : sums(threads, trainedReproducibly(m));
      return new Result(name, version, v.parent(), taught.size(), examples.size(), corrections.size(), rolloutExamples,
          identical, diff, stored, again, heldOut.size(), why, rebuilt);
    }
  }

  private static double trainedReproducibly(Map<String, Double> m) {
    return m.getOrDefault("recipe_mkl_reproducible", -1.0); // -1: not recorded
  }

  /** Why float sums may differ between the trainer and this process. */
  private static String sums(int threads, double trainedReproducibly) {
    return threads != Engines.THREADS
          ? "trained with " + threads + " libtorch threads, rebuilt with " + Engines.THREADS + " (sums split differently)"
          : !mklReproducible()
              ? "same thread count, but this process runs without MKL_CBWR and MKL_DYNAMIC=FALSE: MKL's float sums "
                  + "then depend on how the arrays happen to be aligned and on how busy the machine is"
              : trainedReproducibly == 0
                  ? "same thread count, but the trainer ran without MKL_CBWR and MKL_DYNAMIC=FALSE (its record says so): "
                      + "its float sums depended on alignment and load"
                  : "same thread count and MKL settings on both sides: another libtorch build or CPU sums the floats in "
                      + "another order";
  }

  /**
   * The window's rollout batch, in batch order: the ledger's entries (trained, or judged too low after their
   * rollouts) marked with the published attempt's rollout seed. Empty for a window that did not roll out.
   */
  private static List<Ledger.Entry> rolloutBatch(Ledger ledger, WindowRecipe recipe, String what) {
    int n = recipe.rolloutPrompts();
    if (n == 0) {
      return List.of();
    }
    Ledger.Entry[] batch = new Ledger.Entry[n];
    for (Ledger.Entry e : ledger.entries()) {
      long[] mark = WindowRecipe.rolloutMark(e.detail());
      if (mark != null && mark[1] == recipe.rolloutSeed() && mark[0] < n) {
        batch[(int) mark[0]] = e;
      }
    }
    for (int j = 0; j < n; j++) {
      if (batch[j] == null) {
        throw new IllegalArgumentException(what + ": its window rolled out " + n + " prompts, but the ledger names no "
            + "trajectory at place " + j + " of that batch (one dead-lettered after the rollouts?): the rollouts cannot be "
            + "replayed as they were");
      }
    }
    return List.of(batch);
  }

  private static Trajectory trajectory(Map<String, ConsumerRecord<String, byte[]>> records, Ledger.Entry e, String what) {
    ConsumerRecord<String, byte[]> r = records.get(e.source());
    Trajectory t = r == null ? null : Records.TRAJECTORY.deserializeOrNull(r.value());
    if (t == null || !t.getTrajectoryId().equals(e.trajectoryId())) {
      throw new IllegalArgumentException(what + ": trajectory " + e.trajectoryId() + " is no longer in the log at "
          + e.source() + " (past the topic's retention?): the window cannot be replayed");
    }
    return t;
  }

  private static int[] prompt(Trajectory t) {
    return t.getPromptTokenIdsList().stream().mapToInt(Integer::intValue).toArray();
  }

  /** The verifiable problem a logged prompt poses, as the trainer made it. */
  private static Evaluator.Problem problem(Verifier v, TextTokenizer tokenizer, int[] prompt, String what, Ledger.Entry e) {
    String text = tokenizer.decode(prompt, false);
    return new Evaluator.Problem(text, v.expected(text).orElseThrow(() -> new IllegalArgumentException(what + ": the "
        + "verifier cannot judge the prompt of " + e.trajectoryId() + ", which the window rolled out")));
  }

  /**
   * Whether this process runs MKL as reproducible results need: conditional numerical reproducibility on
   * ({@code MKL_CBWR} set) and a fixed thread count ({@code MKL_DYNAMIC=FALSE}). Recorded in each version's recipe.
   */
  static boolean mklReproducible() {
    String cnr = System.getenv("MKL_CBWR");
    return cnr != null && !cnr.isBlank() && "false".equalsIgnoreCase(System.getenv("MKL_DYNAMIC"));
  }

  private static List<String> notes(Ledger.Entry e) {
    return List.of(e.detail().split(",\\s*"));
  }

  /**
   * The latest correction of each of {@code ids} in the feedback log below the version's recorded feedback positions
   * (what the trainer had read when it published).
   */
  private static Map<String, String> corrections(String bootstrapServers, AdapterStore.Version v, Set<String> ids)
      throws IOException {
    Map<String, String> out = new HashMap<>();
    if (ids.isEmpty()) {
      return out;
    }
    try (KafkaConsumer<String, byte[]> c = ExperienceLog.consumer(bootstrapServers, "memgen-rebuild-feedback", null)) {
      Map<TopicPartition, Long> upTo = new HashMap<>();
      v.offsets().forEach((k, o) -> {
        if (k.startsWith(Topics.FEEDBACK + "-") && k.substring(Topics.FEEDBACK.length() + 1).matches("\\d+")) {
          upTo.put(new TopicPartition(Topics.FEEDBACK, Integer.parseInt(k.substring(Topics.FEEDBACK.length() + 1))), o);
        }
      });
      c.assign(upTo.keySet());
      c.seekToBeginning(upTo.keySet());
      long deadline = System.nanoTime() + KAFKA_TIMEOUT.toNanos();
      while (upTo.entrySet().stream().anyMatch(e -> c.position(e.getKey(), KAFKA_TIMEOUT) < e.getValue())) {
        if (System.nanoTime() > deadline) {
          throw new IOException("reading the feedback log up to " + upTo + " took over " + KAFKA_TIMEOUT);
        }
        for (ConsumerRecord<String, byte[]> r : c.poll(Duration.ofMillis(200))) {
          Feedback f = Records.FEEDBACK.deserializeOrNull(r.value());
          if (r.offset() < upTo.get(new TopicPartition(r.topic(), r.partition())) && f != null
              && ids.contains(f.getTrajectoryId()) && !f.getCorrectedAnswer().isEmpty()) {
            out.put(f.getTrajectoryId(), f.getCorrectedAnswer());
          }
        }
      }
    }
    return out;
  }
}
