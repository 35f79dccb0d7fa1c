package dev.memgen.trainer;

import dev.memgen.log.AdapterLog;
import dev.memgen.log.ExperienceLog;
import dev.memgen.log.Records;
import dev.memgen.log.Topics;
import dev.memgen.log.store.AdapterStore;
import dev.memgen.model.Decoder;
import dev.memgen.model.checkpoint.Checkpoint;
import dev.memgen.model.checkpoint.Directories;
import dev.memgen.model.eval.Evaluator;
import dev.memgen.model.generate.MemGenInterleaver;
import dev.memgen.model.memory.InProcessMemory;
import dev.memgen.model.memory.Memory;
import dev.memgen.model.memory.MemoryManifest;
import dev.memgen.model.text.DelimiterTable;
import dev.memgen.model.text.TextTokenizer;
import dev.memgen.model.train.AdamW;
import dev.memgen.model.train.Reward;
import dev.memgen.model.train.TokenizedExample;
import dev.memgen.model.train.TrainingDivergedException;
import dev.memgen.model.train.WeaverGrpo;
import dev.memgen.model.train.WeaverSft;
import dev.memgen.proto.v1.AdapterComponent;
import dev.memgen.proto.v1.AdapterPublished;
import dev.memgen.proto.v1.Feedback;
import dev.memgen.proto.v1.FinishReason;
import dev.memgen.proto.v1.OffsetRange;
import dev.memgen.proto.v1.Trajectory;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.time.Instant;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.OptionalDouble;
import java.util.Queue;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ConcurrentLinkedQueue;
import java.util.concurrent.atomic.AtomicBoolean;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.ConsumerRecords;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.common.TopicPartition;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The continual-learning loop: consumes trajectories and feedback from the experience log in windows, trains the
 * weaver of one named adapter on each window, and publishes the result only when it does not regress on a held-out
 * set. The frozen base is never touched.
 *
 * <p>Exactly-once accounting rests on one rule: <b>the adapter store is the commit point</b>. A version's store
 * record holds the input offsets consumed up to it, and its announcement's {@code trained_on} holds the ranges since
 * its parent's, so the published ranges tile the trajectory log with no gap and no overlap. The order of a publish
 * is store, then announcement, then consumer-group offsets (informational, for lag). A trainer killed at any point
 * restarts from the offsets of the latest stored version and re-consumes the rest; a version stored but never
 * announced (killed between the two) is announced at restart. A window that teaches nothing or fails the gate stays
 * open: its range is carried into the next published version, so every trajectory is accounted for once.
 */
public final class ContinualTrainer implements AutoCloseable {
  private static final Logger LOG = LoggerFactory.getLogger(ContinualTrainer.class);
  private static final Duration KAFKA_TIMEOUT = Duration.ofSeconds(30);
  private static final int MAX_REMEMBERED_FEEDBACK = 1_000_000;

  /**
   * How the trainer runs.
   *
   * @param initialMemory the memory the weaver service starts with; stored as version 1 when the store has none
   * @param windowRewarded rewarded trajectories that make a window due
   * @param maxWindowWait a window with at least one rewarded trajectory is due after this long anyway
   * @param feedbackGrace a due window waits up to this long for feedback on its trajectories younger than this
   * @param sftMinReward trajectories whose reward reaches this are SFT targets
   * @param gateTolerance the candidate may score at most this many points below the current version
   */
  public record Settings(String bootstrapServers, String adapterName, Path modelDir, Path initialMemory, Path storeDir,
      Path workDir, List<Evaluator.Problem> heldOut, double gateTolerance, int windowRewarded, Duration maxWindowWait,
      Duration feedbackGrace, double sftMinReward, int sftSteps, int sftBatch, double sftLr, int grpoSteps, Optional<Verifier> verifier,
      int evalMaxNewTokens, int partitions, long seed) {
    public Settings {
      if (windowRewarded < 1 || sftSteps < 1 || sftBatch < 1 || grpoSteps < 0 || partitions < 1) {
        throw new IllegalArgumentException("need a window of >= 1 rewarded trajectories, SFT steps and batch >= 1, "
            + "GRPO steps >= 0 and >= 1 partition");
      }
      if (heldOut.isEmpty()) {
        throw new IllegalArgumentException("the held-out evaluation set is empty: the gate needs problems to score");
      }
    }
  }

  /**
   * What the trainer has done so far, for status reports and tests. {@code committed}: per trajectory partition, the
   * offset up to which trajectories are in published versions (what the consumer group has committed).
   */
  public record Status(long currentVersion, int windowTrajectories, int windowRewarded, int windowTarget, int published,
      int rejected, long consumed, long deadLettered, String activity, AdapterPublished lastPublished,
      Map<String, Double> lastEvalMetrics, Instant lastEvalAt, Map<TopicPartition, Long> committed) {}

  /** What a window came to: the announcement of the version it became, or why nothing was published. */
  public record Outcome(Optional<AdapterPublished> published, String refusal) {
    static Outcome refused(String why) {
      return new Outcome(Optional.empty(), why);
    }
  }

  private record Forced(String reason, CompletableFuture<Outcome> done) {}

  private final Settings s;
  private final AdapterStore store;
  private final ExperienceLog log;
  private final Decoder base;
  private final TextTokenizer tokenizer;
  private final String fingerprint;
  private final DelimiterTable delimiters;
  private final KafkaConsumer<String, byte[]> trajectories;
  private final KafkaConsumer<String, byte[]> feedback;
  private final AtomicBoolean stop = new AtomicBoolean();
  private final Map<String, Map<String, Double>> rewards = new LinkedHashMap<>(); // trajectory id -> feedback id -> reward
  private final Map<Long, Double> heldOutScore = new HashMap<>();

  private AdapterStore.Version current;
  private Path currentDir;
  private Map<TopicPartition, Long> rangeStart; // where the next published version's trained_on begins
  private final Map<TopicPartition, Long> position = new HashMap<>(); // next offset to consume
  private final Map<TopicPartition, Long> feedbackPosition = new HashMap<>();
  private Map<TopicPartition, Long> feedbackJudged = Map.of(); // feedback below was validated by an earlier run
  private final List<Trajectory> window = new ArrayList<>();
  private final java.util.Set<String> windowIds = new java.util.HashSet<>();
  private final Map<String, OptionalDouble> verified = new HashMap<>(); // verifier scores of the window's trajectories
  private long windowOpenedNanos;
  private long dueSinceNanos; // when the open window became due; 0: it is not
  private int dueWindowSize; // how many trajectories it held then
  private volatile Status status;
  private final Queue<Forced> forced = new ConcurrentLinkedQueue<>();
  private AdapterPublished lastPublished;
  private Map<String, Double> lastEvalMetrics = Map.of();
  private Instant lastEvalAt;
  private int published;
  private int rejected;
  private long consumed;
  private long deadLettered;

  public ContinualTrainer(Settings settings) throws Exception {
    this.s = settings;
    Files.createDirectories(s.workDir());
    store = AdapterStore.open(s.storeDir());
    log = new ExperienceLog(s.bootstrapServers());
    log.ensureTopics(s.partitions());
    fingerprint = Checkpoint.open(s.modelDir()).fingerprint();
    base = Decoder.load(s.modelDir());
    tokenizer = TextTokenizer.load(s.modelDir());
    delimiters = DelimiterTable.build(tokenizer, base.config().vocabSize(), MemoryManifest.read(s.initialMemory()).delimiters());
    trajectories = ExperienceLog.consumer(s.bootstrapServers(), "memgen-trainer-" + s.adapterName(), groupId());
    feedback = ExperienceLog.consumer(s.bootstrapServers(), "memgen-trainer-feedback-" + s.adapterName(), null);
    recover();
  }

  /** Consumer group the trainer commits its positions under (for lag monitoring; the store holds the truth). */
  String groupId() {
    return "memgen-trainer-" + s.adapterName();
  }

  public Status status() {
    return status;
  }

  /**
   * Trains the open window now, whatever its size (an operator's Publish); completes when the window is published or
   * refused. The gate still applies: forcing skips the wait, not the evaluation.
   */
  public CompletableFuture<Outcome> publishNow(String reason) {
    CompletableFuture<Outcome> done = new CompletableFuture<>();
    forced.add(new Forced(reason, done));
    if (stop.get()) {
      done.completeExceptionally(new IllegalStateException("the trainer is stopping"));
    }
    return done;
  }

  /** Runs windows until {@link #close} (from another thread). */
  public void run() {
    windowOpenedNanos = System.nanoTime();
    try {
      while (!stop.get()) {
        pollOnce(Duration.ofMillis(200));
        Forced f = forced.poll();
        if (f != null) {
          f.done().complete(rewarded() == 0 ? Outcome.refused("the window holds no rewarded trajectory ("
              + window.size() + " trajectories)") : trainWindow("forced: " + f.reason()));
        } else if (due()) {
          trainWindow("window");
        }
      }
    } catch (Exception e) {
      throw new IllegalStateException("the trainer stopped: " + e.getMessage(), e);
    } finally {
      for (Forced f; (f = forced.poll()) != null; ) {
        f.done().completeExceptionally(new IllegalStateException("the trainer stopped"));
      }
    }
  }

  /** Reads what is there now (trajectories and feedback) into the window. */
  private void pollOnce(Duration wait) {
    // Feedback is re-read from the start at every restart (a late reward may name any trajectory still in the
    // window); bad records below the last stored version's feedback position were dead-lettered before, so once.
    List<ConsumerRecord<String, byte[]>> fresh = new ArrayList<>();
    for (ConsumerRecord<String, byte[]> r : feedback.poll(Duration.ZERO)) {
      TopicPartition tp = new TopicPartition(r.topic(), r.partition());
      feedbackPosition.put(tp, r.offset() + 1);
      if (r.offset() >= feedbackJudged.getOrDefault(tp, 0L)) {
        fresh.add(r);
      } else {
        Feedback f = Records.FEEDBACK.deserializeOrNull(r.value());
        if (f != null && checkFeedback(f) == null) {
          remember(f);
        }
      }
    }
    List<ExperienceLog.Decoded<Feedback>> rewarded = log.decode(fresh, Records.FEEDBACK, ContinualTrainer::checkFeedback);
    rewarded.forEach(d -> remember(d.value()));
    ConsumerRecords<String, byte[]> records = trajectories.poll(wait);
    List<ExperienceLog.Decoded<Trajectory>> good = log.decode(records, Records.TRAJECTORY, ContinualTrainer::checkTrajectory);
    deadLettered += fresh.size() - rewarded.size() + records.count() - good.size();
    for (var r : records) {
      position.put(new TopicPartition(r.topic(), r.partition()), r.offset() + 1);
      consumed++;
    }
    if (window.isEmpty() && !good.isEmpty()) {
      windowOpenedNanos = System.nanoTime();
    }
    for (ExperienceLog.Decoded<Trajectory> d : good) {
      if (windowIds.add(d.value().getTrajectoryId())) { // a reasoner's spool resends what a crash left unconfirmed
        window.add(d.value());
      }
    }
    updateStatus("collecting");
  }

  private boolean due() {
    int rewarded = rewarded();
    boolean due = rewarded >= s.windowRewarded()
        || (rewarded > 0 && System.nanoTime() - windowOpenedNanos > s.maxWindowWait().toNanos());
    if (!due) {
      dueSinceNanos = 0;
      return false;
    }
    if (dueSinceNanos == 0) {
      dueSinceNanos = System.nanoTime();
      dueWindowSize = window.size();
    }
    // Feedback comes after its generation: give the window's youngest unrewarded trajectories a moment to get theirs.
    return System.nanoTime() - dueSinceNanos >= s.feedbackGrace().toNanos() || !awaitingFeedback();
  }

  /**
   * Whether a trajectory the window held when it became due has no reward yet but finished less than the grace period
   * ago. (Later arrivals join the window but do not hold it up: under steady traffic there always is a newest one.)
   */
  private boolean awaitingFeedback() {
    long graceStartSeconds = Instant.now().minus(s.feedbackGrace()).getEpochSecond();
    for (Trajectory t : window.subList(0, dueWindowSize)) {
      if (eligible(t) && t.getCreatedAt().getSeconds() >= graceStartSeconds && reward(t).isEmpty()) {
        return true;
      }
    }
    return false;
  }

  /** Eligible window trajectories with a reward (from feedback, else from the verifier). */
  private int rewarded() {
    int n = 0;
    for (Trajectory t : window) {
      if (eligible(t) && reward(t).isPresent()) {
        n++;
      }
    }
    return n;
  }

  /**
   * Trajectories the weaver can learn from: memory on, this adapter, this base, finished normally (by the stop token,
   * or at the length limit: a rewarded answer cut short still teaches its tokens, just not where to stop).
   */
  private boolean eligible(Trajectory t) {
    return t.getMemoryEnabled() && t.getAdapterName().equals(s.adapterName()) && t.getBaseFingerprint().equals(fingerprint)
        && (t.getFinishReason() == FinishReason.STOP_TOKEN || t.getFinishReason() == FinishReason.LENGTH)
        && t.getCompletionTokenIdsCount() > 0;
  }

  /** The mean of the trajectory's feedback; without any, the verifier's score; else empty. */
  private OptionalDouble reward(Trajectory t) {
    Map<String, Double> given = rewards.get(t.getTrajectoryId());
    if (given != null && !given.isEmpty()) {
      return given.values().stream().mapToDouble(Double::doubleValue).average();
    }
    if (s.verifier().isEmpty()) {
      return OptionalDouble.empty();
    }
    // Asked at every poll while the window fills: decode and verify each trajectory once.
    return verified.computeIfAbsent(t.getTrajectoryId(), id -> {
      Verifier v = s.verifier().get();
      String prompt = tokenizer.decode(toArray(t.getPromptTokenIdsList()), false);
      return v.expected(prompt).map(e -> OptionalDouble.of(v.score(tokenizer.decode(toArray(t.getCompletionTokenIdsList()),
          false), e))).orElse(OptionalDouble.empty());
    });
  }

  private Outcome trainWindow(String reason) throws Exception {
    List<TokenizedExample> examples = new ArrayList<>();
    List<Evaluator.Problem> prompts = new ArrayList<>();
    int rewarded = 0;
    for (Trajectory t : window) {
      OptionalDouble r = eligible(t) ? reward(t) : OptionalDouble.empty();
      if (r.isEmpty()) {
        continue;
      }
      rewarded++;
      int[] prompt = toArray(t.getPromptTokenIdsList());
      if (r.getAsDouble() >= s.sftMinReward()) {
        examples.add(new TokenizedExample(prompt, toArray(t.getCompletionTokenIdsList())));
      }
      String text = tokenizer.decode(prompt, false);
      s.verifier().flatMap(v -> v.expected(text)).ifPresent(e -> prompts.add(new Evaluator.Problem(text, e)));
    }
    int windowSize = window.size();
    window.clear();
    windowIds.clear();
    verified.clear();
    dueSinceNanos = 0;
    windowOpenedNanos = System.nanoTime();
    if (examples.isEmpty() && (s.grpoSteps() == 0 || prompts.isEmpty())) {
      LOG.info("window of {} trajectories ({} rewarded) has nothing to learn from; its range carries over", windowSize, rewarded);
      return Outcome.refused("no trajectory in the window is rewarded >= " + s.sftMinReward() + " (" + windowSize
          + " trajectories, " + rewarded + " rewarded)");
    }
    followRollback();
    long started = System.nanoTime();
    LOG.info("training window of {} trajectories ({} rewarded, {} SFT examples) from v{}", windowSize, rewarded,
        examples.size(), current.version());
    Path candidate = s.workDir().resolve("candidate");
    Directories.deleteRecursively(candidate);
    Map<String, Double> metrics = new LinkedHashMap<>();
    metrics.put("window_trajectories", (double) windowSize);
    metrics.put("window_rewarded", (double) rewarded);
    metrics.put("sft_examples", (double) examples.size());
    try {
      Path trained = currentDir;
      if (!examples.isEmpty()) {
        updateStatus("training weaver (sft)");
        Path out = s.workDir().resolve("candidate-sft");
        Directories.deleteRecursively(out);
        WeaverSft.Result r = WeaverSft.train(base, fingerprint, trained, out, examples, delimiters,
            new WeaverSft.Settings(s.sftSteps(), s.sftBatch(), 1, s.sftLr(), Math.min(10, s.sftSteps() / 5), 0.1,
                AdamW.Settings.DEFAULT, 0, s.seed() + current.version()), (step, steps, loss, lr, norm, tps) -> {});
        metrics.put("sft_last_loss", r.lastLoss());
        metrics.put("sft_skipped_updates", (double) r.skippedSteps());
        if (!Double.isFinite(r.lastLoss()) || 2 * r.skippedSteps() > r.steps()) {
          throw new TrainingDivergedException("SFT ended with loss " + r.lastLoss() + " after skipping " + r.skippedSteps()
              + " of " + r.steps() + " updates for non-finite gradients");
        }
        trained = out;
      }
      if (s.grpoSteps() > 0 && !prompts.isEmpty()) {
        updateStatus("training weaver (grpo)");
        Verifier v = s.verifier().orElseThrow();
        Path out = s.workDir().resolve("candidate-grpo");
        Directories.deleteRecursively(out);
        Reward reward = (completion, refs) -> v.score(completion, refs.get(0));
        WeaverGrpo.Result r = WeaverGrpo.train(base, fingerprint, tokenizer, trained, out, prompts, reward, delimiters,
            new WeaverGrpo.Settings(s.grpoSteps(), Math.min(4, prompts.size()), 4, s.sftLr() / 3, 0, 0.2, 0.0, 1, 8,
                s.evalMaxNewTokens(), 1.0, AdamW.Settings.DEFAULT, 0, s.seed() + current.version()),
            (step, steps, meanReward, loss, informative) -> {});
        metrics.put("grpo_last_mean_reward", r.lastMeanReward());
        trained = out;
      }
      checkFinite(trained);
      Files.move(trained, candidate);
    } catch (TrainingDivergedException e) {
      rejected++;
      LOG.warn("window of {} trajectories: training diverged, nothing published ({}); its range carries over", windowSize,
          e.getMessage());
      updateStatus("collecting");
      return Outcome.refused("training diverged: " + e.getMessage());
    }
    long next = store.latest(s.adapterName()).map(v -> v.version() + 1).orElse(1L);
    MemoryManifest trained = MemoryManifest.read(candidate);
    trained.withVersion(next).write(candidate); // serving reports the store's version number

    updateStatus("evaluating");
    double before = heldOutScore(current.version(), currentDir);
    double after = score(candidate);
    metrics.put("eval_accuracy", after);
    metrics.put("eval_accuracy_parent", before);
    metrics.put("window_seconds", (System.nanoTime() - started) / 1e9);
    lastEvalMetrics = Map.copyOf(metrics);
    lastEvalAt = Instant.now();
    if (!(after >= before - s.gateTolerance())) {
      rejected++;
      LOG.info("candidate from {} trajectories scores {} on the held-out set against {} for v{}: not published; its range "
          + "carries over", windowSize, fmt(after), fmt(before), current.version());
      updateStatus("collecting");
      return Outcome.refused("the candidate scores " + fmt(after) + " on the held-out set against " + fmt(before)
          + " for v" + current.version() + " (tolerance " + s.gateTolerance() + " points)");
    }
    AdapterPublished a = publish(candidate, metrics, after, reason);
    LOG.info("published {} v{} (held-out {} -> {}) trained on {} trajectories ({} SFT examples)", s.adapterName(),
        current.version(), fmt(before), fmt(after), windowSize, examples.size());
    return new Outcome(Optional.of(a), "");
  }

  /** A candidate with a NaN or infinite weight is diverged, whatever it scores. */
  private void checkFinite(Path dir) {
    try (Memory m = Memory.load(dir, base, fingerprint)) {
      for (Map.Entry<String, ai.djl.ndarray.NDArray> t : m.tensors().entrySet()) {
        try (ai.djl.ndarray.NDArray bad = t.getValue().isNaN().logicalOr(t.getValue().isInfinite())) {
          if (bad.any().getBoolean()) {
            throw new TrainingDivergedException("the trained tensor " + t.getKey() + " has non-finite values");
          }
        }
      }
    }
  }

  /**
   * An operator may have rolled the adapter back (an announcement of an older version) while this trainer ran: the
   * next version must grow from what serves, not from what this trainer published last.
   */
  private void followRollback() throws IOException {
    AdapterPublished now = AdapterLog.current(s.bootstrapServers(), KAFKA_TIMEOUT)
        .get(AdapterLog.key(s.adapterName(), AdapterComponent.WEAVER));
    if (now != null && now.getVersion() != current.version()) {
      LOG.info("{} v{} serves now ({}): training from it instead of v{}", s.adapterName(), now.getVersion(),
          now.getReason().isEmpty() ? "announced elsewhere" : now.getReason(), current.version());
      adopt(store.get(s.adapterName(), now.getVersion()));
    }
  }

  /** Store, then announce, then commit: see the class comment for why this order. */
  private AdapterPublished publish(Path candidate, Map<String, Double> metrics, double score, String reason)
      throws Exception {
    updateStatus("publishing");
    Map<String, Long> offsets = new LinkedHashMap<>();
    List<OffsetRange> ranges = new ArrayList<>();
    for (Map.Entry<TopicPartition, Long> e : position.entrySet()) {
      TopicPartition tp = e.getKey();
      long from = rangeStart.getOrDefault(tp, 0L);
      offsets.put(tp.toString(), e.getValue());
      ranges.add(OffsetRange.newBuilder().setTopic(tp.topic()).setPartition(tp.partition()).setFromOffset(from)
          .setToOffset(e.getValue()).build());
    }
    feedbackPosition.forEach((tp, o) -> offsets.put(tp.toString(), o));
    AdapterStore.Version v = store.publish(s.adapterName(), candidate, current.version(), fingerprint, metrics, offsets);
    AdapterPublished a = AdapterLog.announcement(store, v, AdapterComponent.WEAVER, ranges, 0, reason);
    AdapterLog.publish(log, a, KAFKA_TIMEOUT);
    Map<TopicPartition, OffsetAndMetadata> commit = new HashMap<>();
    position.forEach((tp, o) -> commit.put(tp, new OffsetAndMetadata(o, "v" + v.version())));
    trajectories.commitSync(commit, KAFKA_TIMEOUT);
    heldOutScore.put(v.version(), score);
    adopt(v);
    rangeStart = new HashMap<>(position);
    published++;
    lastPublished = a;
    updateStatus("collecting");
    return a;
  }

  /**
   * Restart: finds the latest stored version (storing the initial memory as version 1 if there is none), announces
   * it if a crash came between storing and announcing, and positions the consumers at its offsets.
   */
  private void recover() throws Exception {
    Optional<AdapterStore.Version> latest = store.latest(s.adapterName());
    Map<String, AdapterPublished> announced = AdapterLog.current(s.bootstrapServers(), KAFKA_TIMEOUT);
    AdapterPublished now = announced.get(AdapterLog.key(s.adapterName(), AdapterComponent.WEAVER));
    if (latest.isEmpty()) {
      Path initial = s.workDir().resolve("initial");
      Directories.deleteRecursively(initial);
      Directories.copyFiles(s.initialMemory(), initial);
      MemoryManifest.read(initial).withVersion(1).write(initial);
      Memory.load(initial, base, fingerprint).close(); // refuse a memory made for another base before storing it
      latest = Optional.of(store.publish(s.adapterName(), initial, 0, fingerprint, Map.of(), Map.of()));
      LOG.info("stored the initial memory {} as {} v1", s.initialMemory(), s.adapterName());
    }
    AdapterStore.Version v = latest.get();
    long announcedUpTo = now == null ? 0 : Math.max(now.getVersion(), now.getRolledBackFrom());
    if (v.version() > announcedUpTo) {
      AdapterStore.Version parent = v.parent() > 0 ? store.get(s.adapterName(), v.parent()) : null;
      AdapterPublished a = AdapterLog.announcement(store, v, AdapterComponent.WEAVER, ranges(parent, v), 0,
          v.version() == 1 ? "initial" : "window (announced at restart)");
      AdapterLog.publish(log, a, KAFKA_TIMEOUT);
      LOG.info("announced {} v{} ({})", s.adapterName(), v.version(), a.getReason());
      now = a;
    }
    lastPublished = now;
    // Train on from what serves now: the latest version, or the one an operator rolled back to.
    adopt(now.getVersion() == v.version() ? v : store.get(s.adapterName(), now.getVersion()));
    List<TopicPartition> parts = trajectories.partitionsFor(Topics.TRAJECTORIES, KAFKA_TIMEOUT).stream()
        .map(p -> new TopicPartition(p.topic(), p.partition())).toList();
    trajectories.assign(parts);
    rangeStart = new HashMap<>();
    for (TopicPartition tp : parts) {
      long offset = v.offsets().getOrDefault(tp.toString(), 0L);
      trajectories.seek(tp, offset);
      position.put(tp, offset);
      rangeStart.put(tp, offset);
    }
    // The group's committed offsets follow the store (a crash may have come between storing and committing).
    Map<TopicPartition, OffsetAndMetadata> commit = new HashMap<>();
    position.forEach((tp, o) -> commit.put(tp, new OffsetAndMetadata(o, "v" + v.version())));
    trajectories.commitSync(commit, KAFKA_TIMEOUT);
    List<TopicPartition> fbParts = feedback.partitionsFor(Topics.FEEDBACK, KAFKA_TIMEOUT).stream()
        .map(p -> new TopicPartition(p.topic(), p.partition())).toList();
    feedback.assign(fbParts);
    feedback.seekToBeginning(fbParts); // late rewards may name any trajectory still in the window
    Map<TopicPartition, Long> judged = new HashMap<>();
    for (TopicPartition tp : fbParts) {
      judged.put(tp, v.offsets().getOrDefault(tp.toString(), 0L));
    }
    feedbackJudged = judged;
    updateStatus("collecting");
    LOG.info("training {} from v{} on {}, trajectories from {}", s.adapterName(), current.version(), s.bootstrapServers(), position);
  }

  /** The ranges version {@code v} consumed beyond {@code parent} (from its store record's cumulative offsets). */
  private static List<OffsetRange> ranges(AdapterStore.Version parent, AdapterStore.Version v) {
    List<OffsetRange> out = new ArrayList<>();
    for (Map.Entry<String, Long> e : v.offsets().entrySet()) {
      if (!e.getKey().startsWith(Topics.TRAJECTORIES + "-")) {
        continue; // feedback positions are recorded too, but trained_on is about trajectories
      }
      int dash = e.getKey().lastIndexOf('-');
      long from = parent == null ? 0 : parent.offsets().getOrDefault(e.getKey(), 0L);
      out.add(OffsetRange.newBuilder().setTopic(e.getKey().substring(0, dash))
          .setPartition(Integer.parseInt(e.getKey().substring(dash + 1))).setFromOffset(from).setToOffset(e.getValue()).build());
    }
    return out;
  }

  /** Makes {@code v} the version new windows train from, materialised (and hash-checked) from the store. */
  private void adopt(AdapterStore.Version v) throws IOException {
    Path dir = s.workDir().resolve("versions").resolve(String.valueOf(v.version()));
    Directories.deleteRecursively(dir);
    store.materialize(v.name(), v.version(), store.recordSha256(v.name(), v.version()), dir);
    current = v;
    currentDir = dir;
  }

  private double heldOutScore(long version, Path dir) {
    return heldOutScore.computeIfAbsent(version, k -> score(dir));
  }

  /** Held-out accuracy (%) of the memory in {@code dir}, weaving at every delimiter up to the cap (trigger inactive). */
  private double score(Path dir) {
    try (Memory memory = Memory.load(dir, base, fingerprint)) {
      InProcessMemory mem = new InProcessMemory(base, memory);
      MemGenInterleaver.Options options = new MemGenInterleaver.Options(true, memory.manifest().maxInferenceAug(),
          MemGenInterleaver.TriggerMode.INACTIVE, 0.5, 0);
      Evaluator evaluator = new Evaluator(base, tokenizer, s.evalMaxNewTokens(), 32);
      return evaluator.run(s.heldOut(), ids -> MemGenInterleaver.inProcess(mem, ids.size(), delimiters, options), c -> {})
          .accuracy();
    }
  }

  private void remember(Feedback f) {
    rewards.computeIfAbsent(f.getTrajectoryId(), k -> new LinkedHashMap<>()).put(f.getFeedbackId(), f.getReward());
    if (rewards.size() > MAX_REMEMBERED_FEEDBACK) { // the oldest trajectories' windows are long closed
      rewards.remove(rewards.keySet().iterator().next());
    }
  }

  static String checkTrajectory(Trajectory t) {
    if (t.getSchemaVersion() != 1) {
      return "schema_version " + t.getSchemaVersion() + " (this trainer reads 1)";
    }
    if (t.getTrajectoryId().isEmpty()) {
      return "trajectory_id is empty";
    }
    if (t.getPromptTokenIdsCount() == 0) {
      return "prompt_token_ids is empty";
    }
    return null;
  }

  static String checkFeedback(Feedback f) {
    if (f.getSchemaVersion() != 1) {
      return "schema_version " + f.getSchemaVersion() + " (this trainer reads 1)";
    }
    if (f.getTrajectoryId().isEmpty()) {
      return "trajectory_id is empty";
    }
    if (!Double.isFinite(f.getReward())) {
      return "reward " + f.getReward() + " is not finite";
    }
    return null;
  }

  private void updateStatus(String activity) {
    status = new Status(current == null ? 0 : current.version(), window.size(), activity.equals("collecting") ? rewarded() : 0,
        s.windowRewarded(), published, rejected, consumed, deadLettered, activity, lastPublished, lastEvalMetrics, lastEvalAt,
        rangeStart == null ? Map.of() : Map.copyOf(rangeStart));
  }

  private static int[] toArray(List<Integer> ids) {
    return ids.stream().mapToInt(Integer::intValue).toArray();
  }

  private static String fmt(double accuracy) {
    return String.format("%.1f%%", accuracy);
  }

  /**
   * Stops {@link #run}: it returns within a poll (200 ms), or after the window it is training is published or refused.
   * (No consumer wake-up: it would also abort the offset commit of a publish in progress.)
   */
  @Override
  public void close() {
    stop.set(true);
  }

  /** Releases Kafka clients and the base; call after {@link #run} has returned. */
  public void release() {
    trajectories.close(Duration.ofSeconds(5));
    feedback.close(Duration.ofSeconds(5));
    log.close();
    tokenizer.close();
    base.close();
  }
}
