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
import dev.memgen.model.train.WeaverSft;
import dev.memgen.proto.v1.Feedback;
import dev.memgen.proto.v1.Trajectory;
import ai.djl.ndarray.NDArray;
import java.io.IOException;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
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
      boolean bitIdentical, Map<String, Double> maxAbsDiff, double storedAccuracy, double rebuiltAccuracy, int heldOut,
      String why, Path rebuilt) {}

  private VersionRebuild() {}

  /**
   * Rebuilds version {@code version} of {@code name} into {@code work}/rebuilt.
   *
   * @throws IllegalArgumentException the version cannot be rebuilt (the initial version, a record without its recipe, a
   *     sampled window, trajectories gone from the log), with the reason
   */
  public static Result run(AdapterStore store, String name, long version, String bootstrapServers, Path modelDir, Path work,
      List<Evaluator.Problem> heldOut, int evalMaxNewTokens) throws IOException {
    AdapterStore.Version v = store.get(name, version);
    if (v.parent() < 1) {
      throw new IllegalArgumentException(name + " v" + version + " is an initial memory (no parent): nothing was trained");
    }
    Map<String, Double> m = v.metrics();
    for (String key : List.of("recipe_sft_steps", "recipe_sft_batch", "recipe_sft_lr", "recipe_seed", "recipe_threads")) {
      if (!m.containsKey(key)) {
        throw new IllegalArgumentException(name + " v" + version + ": its record has no " + key + " (published before "
            + "versions recorded their recipe, or not by the trainer)");
      }
    }
    for (String sampled : List.of("grpo_last_mean_reward", "rollout_examples", "trigger_rl_steps")) {
      if (sampled.startsWith("grpo") ? m.containsKey(sampled) : m.getOrDefault(sampled, 0.0) > 0) {
        throw new IllegalArgumentException(name + " v" + version + " was trained with sampled rollouts (" + sampled
            + "): rebuilding those is not supported yet (their sampling seeds were per process, not recorded)");
      }
    }
    String fingerprint = Checkpoint.open(modelDir).fingerprint();
    if (!fingerprint.equals(v.baseFingerprint())) {
      throw new IllegalArgumentException(name + " v" + version + " was trained on base " + v.baseFingerprint() + ", not "
          + modelDir + " (" + fingerprint + ")");
    }
    List<Ledger.Entry> taught = store.ledger(name, version).entries(Ledger.Outcome.TRAINED);
    Map<String, ConsumerRecord<String, byte[]>> records = ExperienceLog.readAt(bootstrapServers,
        taught.stream().map(Ledger.Entry::source).toList(), "memgen-rebuild", KAFKA_TIMEOUT);
    Map<String, String> corrections = corrections(bootstrapServers, v, Set.copyOf(taught.stream()
        .filter(e -> notes(e).contains("correction")).map(Ledger.Entry::trajectoryId).toList()));

    Directories.deleteRecursively(work);
    Path parentDir = store.materialize(name, v.parent(), work.resolve("parent"));
    Path storedDir = store.materialize(name, version, work.resolve("stored"));
    Path rebuilt = work.resolve("rebuilt");
    int threads = m.get("recipe_threads").intValue();
    Engines.computeThreads(threads);
    try (Decoder base = Decoder.load(modelDir); TextTokenizer tokenizer = TextTokenizer.load(modelDir)) {
      MemoryManifest manifest = MemoryManifest.read(parentDir);
      DelimiterTable delimiters = DelimiterTable.build(tokenizer, base.config().vocabSize(), manifest.delimiters());
      // The window's SFT targets in the trainer's order: per trajectory, its completion if it was rewarded enough, then
      // its correction.
      List<TokenizedExample> examples = new ArrayList<>();
      for (Ledger.Entry e : taught) {
        ConsumerRecord<String, byte[]> r = records.get(e.source());
        Trajectory t = r == null ? null : Records.TRAJECTORY.deserializeOrNull(r.value());
        if (t == null || !t.getTrajectoryId().equals(e.trajectoryId())) {
          throw new IllegalArgumentException(name + " v" + version + ": trajectory " + e.trajectoryId() + " is no longer "
              + "in the log at " + e.source() + " (past the topic's retention?): the window cannot be replayed");
        }
        int[] prompt = t.getPromptTokenIdsList().stream().mapToInt(Integer::intValue).toArray();
        List<String> notes = notes(e);
        if (notes.contains("sft")) {
          examples.add(new TokenizedExample(prompt, t.getCompletionTokenIdsList().stream().mapToInt(Integer::intValue).toArray()));
        }
        if (notes.contains("correction")) {
          String c = corrections.get(e.trajectoryId());
          if (c == null) {
            throw new IllegalArgumentException(name + " v" + version + ": the correction of " + e.trajectoryId()
                + " is no longer in the feedback log");
          }
          examples.add(TokenizedExample.of(tokenizer, tokenizer.decode(prompt, false), c));
        }
      }
      WeaverSft.train(base, fingerprint, parentDir, rebuilt, examples, delimiters, ContinualTrainer.sftSettings(
          m.get("recipe_sft_steps").intValue(), m.get("recipe_sft_batch").intValue(), m.get("recipe_sft_lr"),
          m.get("recipe_seed").longValue()), (step, steps, loss, lr, norm, tps) -> {});
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
      // Both scored as a weaver-only window is gated: memory at every delimiter, the trigger inactive.
      double stored = ContinualTrainer.evaluate(base, fingerprint, tokenizer, delimiters, storedDir, heldOut, evalMaxNewTokens,
          ContinualTrainer.TriggerTraining.OFF).accuracy();
      double again = ContinualTrainer.evaluate(base, fingerprint, tokenizer, delimiters, rebuilt, heldOut, evalMaxNewTokens,
          ContinualTrainer.TriggerTraining.OFF).accuracy();
      double trainedReproducibly = m.getOrDefault("recipe_mkl_reproducible", -1.0); // -1: not recorded
      String why = identical ? "" : threads != Engines.THREADS
          ? "trained with " + threads + " libtorch threads, rebuilt with " + Engines.THREADS + " (sums split differently)"
          : !mklReproducible()
              ? "same thread count, but this process runs without MKL_CBWR and MKL_DYNAMIC=FALSE: MKL's float sums "
                  + "then depend on how the arrays happen to be aligned and on how busy the machine is"
              : trainedReproducibly == 0
                  ? "same thread count, but the trainer ran without MKL_CBWR and MKL_DYNAMIC=FALSE (its record says so): "
                      + "its float sums depended on alignment and load"
                  : "same thread count and MKL settings on both sides: another libtorch build or CPU sums the floats in "
                      + "another order";
      return new Result(name, version, v.parent(), taught.size(), examples.size(), corrections.size(), identical, diff, stored,
          again, heldOut.size(), why, rebuilt);
    }
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
