package dev.memgen.trainer;

import dev.memgen.log.AdapterLog;
import dev.memgen.log.DeadLetters;
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
import dev.memgen.model.generate.MemGenInterleaver;
import dev.memgen.model.memory.InProcessMemory;
import dev.memgen.model.memory.Memory;
import dev.memgen.model.memory.MemoryManifest;
import dev.memgen.model.text.DelimiterTable;
import dev.memgen.model.text.TextTokenizer;
import dev.memgen.model.train.Reward;
import dev.memgen.model.train.TokenizedExample;
import dev.memgen.model.train.TrainingDivergedException;
import dev.memgen.model.train.TriggerRl;
import dev.memgen.model.train.RejectionSampling;
import dev.memgen.proto.v1.AdapterComponent;
import dev.memgen.proto.v1.AdapterPublished;
import dev.memgen.proto.v1.Feedback;
import dev.memgen.proto.v1.OffsetRange;
import dev.memgen.proto.v1.Trajectory;
import io.opentelemetry.api.OpenTelemetry;
import io.opentelemetry.api.common.AttributeKey;
import io.opentelemetry.api.common.Attributes;
import io.opentelemetry.api.trace.Span;
import io.opentelemetry.api.trace.SpanBuilder;
import io.opentelemetry.api.trace.SpanContext;
import io.opentelemetry.api.trace.SpanKind;
import io.opentelemetry.api.trace.StatusCode;
import io.opentelemetry.api.trace.Tracer;
import io.opentelemetry.api.trace.propagation.W3CTraceContextPropagator;
import io.opentelemetry.context.Context;
import io.opentelemetry.context.Scope;
import io.opentelemetry.context.propagation.TextMapGetter;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.time.Instant;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.OptionalDouble;
import java.util.Queue;
import java.util.Set;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ConcurrentLinkedQueue;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.function.UnaryOperator;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.ConsumerRecords;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.header.Header;
import org.apache.kafka.common.header.Headers;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The continual-learning loop: consumes trajectories and feedback from the experience log into an open window, trains
 * the weaver of one named adapter on the window's rewarded trajectories, and publishes the result only when it does
 * not regress on a held-out set. The frozen base is never touched.
 *
 * <p>Exactly-once accounting rests on two rules. <b>The adapter store is the commit point</b>: a version's store
 * record holds the input offsets consumed up to it, and its announcement's {@code trained_on} the ranges since its
 * parent's, so the published ranges tile the trajectory log with no gap and no overlap; the order of a publish is
 * store, then announcement, then consumer-group offsets (informational, for lag). And <b>every record in a range has
 * one outcome in a version's {@link Ledger}</b>, by trajectory id: trained, judged (low reward), a duplicate of an id
 * already trained or waiting, dead-lettered, skipped (memory off, cancelled), expired — or carried: a trajectory
 * still waiting for its reward (or for a candidate that passes the gate) stays in the open window across publishes,
 * and across restarts (the restarted trainer re-reads the carried records at their offsets). A trainer killed at any
 * point restarts from the latest stored version's offsets and ledger; a version stored but never announced is
 * announced at restart; dead letters it sent since the last publish are recognised and not sent again.
 *
 * <p>Before a window trains, both consumers catch up with everything in the log at that moment, so a window trains
 * every trajectory whose reward was logged before it started. A record that makes training fail is
 * isolated: the window is retried once, then each of its trajectories is trained alone, and those that fail alone
 * are dead-lettered with the exception's message while the rest train; a failure no single record explains holds
 * the window back under an exponential back-off (1 s to 5 min) while consumption goes on.
 */
public final class ContinualTrainer implements AutoCloseable {
  private static final Logger LOG = LoggerFactory.getLogger(ContinualTrainer.class);
  private static final Duration KAFKA_TIMEOUT = Duration.ofSeconds(30);
  private static final Duration CATCH_UP = Duration.ofSeconds(30);
  private static final Duration MAX_RETRY_BACKOFF = Duration.ofMinutes(5);
  private static final int MAX_REMEMBERED_FEEDBACK = 1_000_000;
  private static final List<String> INPUTS = List.of(Topics.TRAJECTORIES, Topics.FEEDBACK);
  /**
   * DJL's PyTorch engine records gradients process-wide (one {@code PtGradientCollector} at a time, or "already
   * collecting"): the trainers of one process (a trainer group's member holds several adapters) take turns at
   * training, while the others go on reading the log, rolling out and evaluating.
   */
  private static final Object GRADIENTS = new Object();

  /**
   * What the trainer takes in and how long it remembers.
   *
   * @param rewardHorizon a trajectory waits this long for its reward (across windows) before it expires
   * @param maxWaiting at most this many trajectories wait in the open window; past it the oldest expire
   * @param dedupHorizon trained ids are remembered this long after their version was published (the trajectories
   *     topic's retention by default: an original older than that is gone from the log too)
   * @param maxTrajectoryTokens prompt + completion tokens a trajectory may have to be trained (0: the model's context
   *     with its latent rows); longer ones are dead-lettered
   * @param maxWindow rewarded trajectories one window trains at most (0: all that are rewarded when it starts); the
   *     rest stay in the open window for the next, so a trainer that fell behind publishes version after version of
   *     bounded cost instead of one huge window
   */
  public record Intake(Duration rewardHorizon, int maxWaiting, Duration dedupHorizon, int maxTrajectoryTokens, int maxWindow) {
    public static final Intake DEFAULT = new Intake(Duration.ofHours(1), 100_000, Duration.ofDays(7), 0, 0);

    public Intake {
      if (maxWaiting < 1 || maxTrajectoryTokens < 0 || maxWindow < 0) {
        throw new IllegalArgumentException("need max waiting >= 1, max trajectory tokens >= 0 and max window >= 0, got "
            + maxWaiting + ", " + maxTrajectoryTokens + ", " + maxWindow);
      }
    }

    public Intake(Duration rewardHorizon, int maxWaiting, Duration dedupHorizon, int maxTrajectoryTokens) {
      this(rewardHorizon, maxWaiting, dedupHorizon, maxTrajectoryTokens, 0);
    }
  }

  /**
   * Learning from rewards alone (rejection sampling): each window prompt the verifier can judge is rolled out
   * {@code samples} times with the serving memory at {@code temperature}, and up to {@code maxPerPrompt} distinct
   * rollouts the verifier rewards (>= sft-min-reward) join the window's SFT targets beside the logged completions
   * that earned it; {@code baseSamples} more come from the frozen base alone (memory off), so that a prompt the
   * serving memory never solves can still teach when the base sometimes does. Both 0: off.
   */
  public record Rollouts(int samples, int baseSamples, double temperature, int maxPerPrompt) {
    public static final Rollouts OFF = new Rollouts(0, 0, 1.0, 1);

    public Rollouts {
      if (samples < 0 || baseSamples < 0 || maxPerPrompt < 1 || !(temperature > 0 && Double.isFinite(temperature))) {
        throw new IllegalArgumentException("need rollout samples >= 0, max per prompt >= 1 and a finite temperature > 0, got "
            + samples + ", " + baseSamples + ", " + maxPerPrompt + ", " + temperature);
      }
    }

    boolean on() {
      return samples + baseSamples > 0;
    }
  }

  /**
   * The trigger learned in the loop (MemGen's second stage): after a window's weaver update, {@code steps} updates of
   * trigger RL with that weaver frozen ({@link TriggerRl}: sampled invoke/skip decisions on the window's verifiable
   * prompts, {@code problemsPerStep} x {@code group} rollouts per update, the verifier's reward minus the
   * reward-adaptive invocation penalty {@code penalty}). The candidate is then gated as it will serve: with the
   * trigger deciding at {@code threshold}. A version published so is announced for the trigger as well as the weaver,
   * so trigger-service (and embedded memories) swap it in. Off when {@code steps} is 0.
   */
  public record TriggerTraining(int steps, int problemsPerStep, int group, double lr, double penalty, double threshold) {
    public static final TriggerTraining OFF = new TriggerTraining(0, 4, 4, 1e-4, 0.1, 0.5);

    public TriggerTraining {
      if (steps < 0 || problemsPerStep < 1 || group < 2 || !(lr > 0) || !(penalty >= 0) || !(threshold >= 0 && threshold <= 1)) {
        throw new IllegalArgumentException("trigger training needs steps >= 0, problems per step >= 1, a group >= 2, lr > 0, "
            + "penalty >= 0 and a threshold in [0, 1]; got " + steps + ", " + problemsPerStep + ", " + group + ", " + lr + ", "
            + penalty + ", " + threshold);
      }
    }

    public boolean on() {
      return steps > 0;
    }
  }

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
      int evalMaxNewTokens, int partitions, long seed, Intake intake, Rollouts rollouts, TriggerTraining trigger) {
    /** Without trigger training. */
    public Settings(String bootstrapServers, String adapterName, Path modelDir, Path initialMemory, Path storeDir,
        Path workDir, List<Evaluator.Problem> heldOut, double gateTolerance, int windowRewarded, Duration maxWindowWait,
        Duration feedbackGrace, double sftMinReward, int sftSteps, int sftBatch, double sftLr, int grpoSteps,
        Optional<Verifier> verifier, int evalMaxNewTokens, int partitions, long seed, Intake intake, Rollouts rollouts) {
      this(bootstrapServers, adapterName, modelDir, initialMemory, storeDir, workDir, heldOut, gateTolerance, windowRewarded,
          maxWindowWait, feedbackGrace, sftMinReward, sftSteps, sftBatch, sftLr, grpoSteps, verifier, evalMaxNewTokens,
          partitions, seed, intake, rollouts, TriggerTraining.OFF);
    }

    /** Without re-rollouts: the logged completions (and corrections) are the only SFT targets. */
    public Settings(String bootstrapServers, String adapterName, Path modelDir, Path initialMemory, Path storeDir,
        Path workDir, List<Evaluator.Problem> heldOut, double gateTolerance, int windowRewarded, Duration maxWindowWait,
        Duration feedbackGrace, double sftMinReward, int sftSteps, int sftBatch, double sftLr, int grpoSteps,
        Optional<Verifier> verifier, int evalMaxNewTokens, int partitions, long seed, Intake intake) {
      this(bootstrapServers, adapterName, modelDir, initialMemory, storeDir, workDir, heldOut, gateTolerance, windowRewarded,
          maxWindowWait, feedbackGrace, sftMinReward, sftSteps, sftBatch, sftLr, grpoSteps, verifier, evalMaxNewTokens,
          partitions, seed, intake, Rollouts.OFF);
    }

    public Settings withRollouts(Rollouts r) {
      return new Settings(bootstrapServers, adapterName, modelDir, initialMemory, storeDir, workDir, heldOut, gateTolerance,
          windowRewarded, maxWindowWait, feedbackGrace, sftMinReward, sftSteps, sftBatch, sftLr, grpoSteps, verifier,
          evalMaxNewTokens, partitions, seed, intake, r, trigger);
    }

    public Settings withIntake(Intake i) {
      return new Settings(bootstrapServers, adapterName, modelDir, initialMemory, storeDir, workDir, heldOut, gateTolerance,
          windowRewarded, maxWindowWait, feedbackGrace, sftMinReward, sftSteps, sftBatch, sftLr, grpoSteps, verifier,
          evalMaxNewTokens, partitions, seed, i, rollouts, trigger);
    }

    /** The same settings for adapter {@code name}, working in {@code work} (a trainer group's member per adapter). */
    public Settings forAdapter(String name, Path work) {
      return new Settings(bootstrapServers, name, modelDir, initialMemory, storeDir, work, heldOut, gateTolerance,
          windowRewarded, maxWindowWait, feedbackGrace, sftMinReward, sftSteps, sftBatch, sftLr, grpoSteps, verifier,
          evalMaxNewTokens, partitions, seed, intake, rollouts, trigger);
    }

    public Settings withTrigger(TriggerTraining t) {
      return new Settings(bootstrapServers, adapterName, modelDir, initialMemory, storeDir, workDir, heldOut, gateTolerance,
          windowRewarded, maxWindowWait, feedbackGrace, sftMinReward, sftSteps, sftBatch, sftLr, grpoSteps, verifier,
          evalMaxNewTokens, partitions, seed, intake, rollouts, t);
    }

    public Settings {
      if (windowRewarded < 1 || sftSteps < 1 || sftBatch < 1 || grpoSteps < 0 || partitions < 1) {
        throw new IllegalArgumentException("need a window of >= 1 rewarded trajectories, SFT steps and batch >= 1, "
            + "GRPO steps >= 0 and >= 1 partition");
      }
      if (heldOut.isEmpty()) {
        throw new IllegalArgumentException("the held-out evaluation set is empty: the gate needs problems to score");
      }
      if (trigger.on() && verifier.isEmpty()) {
        throw new IllegalArgumentException("trigger training needs a verifier: its reward is the verifier's score of "
            + "each rollout");
      }
    }
  }

  /**
   * The trajectory accounting, by id: over every version in the store (their ledgers) plus what was decided since the
   * last publish; {@code waiting} is the open window. Feedback counts are since this trainer started.
   */
  public record Counts(long trained, long lowReward, long duplicated, long deadLettered, long skipped, long expired,
      long waiting, long otherAdapters, long feedbackDeadLettered, long feedbackAfterTraining) {}

  /**
   * What the trainer has done so far, for status reports and tests. {@code committed}: per trajectory partition, the
   * offset up to which trajectories are in published versions (what the consumer group has committed);
   * {@code deadLettered}: dead letters this trainer process sent (trajectories and feedback); {@code heldBack}: why a
   * due window is not training ("" when nothing holds it).
   */
  public record Status(long currentVersion, int windowTrajectories, int windowRewarded, int windowTarget, int published,
      int rejected, long consumed, long deadLettered, String activity, AdapterPublished lastPublished,
      Map<String, Double> lastEvalMetrics, Instant lastEvalAt, Map<TopicPartition, Long> committed, Counts counts,
      String heldBack) {}

  /** What a window came to: the announcement of the version it became, or why nothing was published. */
  public record Outcome(Optional<AdapterPublished> published, String refusal) {
    static Outcome refused(String why) {
      return new Outcome(Optional.empty(), why);
    }
  }

  /**
   * Trains a window's candidate from the memory in {@code from}, returning the directory it wrote (under the work
   * directory) with what it measured in {@code metrics}. The trainer's own is SFT then (optionally) GRPO; a
   * constructor takes a decorator of it, so a test can make training fail on a record validation cannot catch.
   */
  interface WindowTraining {
    Path train(Path from, List<TokenizedExample> sft, List<Evaluator.Problem> prompts, int sftSteps, int grpoSteps, long seed,
        Map<String, Double> metrics) throws Exception;
  }

  private record Forced(String reason, CompletableFuture<Outcome> done) {}

  /**
   * A trajectory in the open window: the record, where it is in the log, when it was logged, and the trace of the
   * request it came from (its {@code traceparent} header; null without one).
   */
  private record Waiting(Trajectory t, String key, TopicPartition tp, long offset, long loggedAtMillis, SpanContext request) {
    String source() {
      return DeadLetters.source(tp, offset);
    }

    ConsumerRecord<String, byte[]> asRecord() { // for a dead letter: the parsed record re-encoded, at its source
      return new ConsumerRecord<>(tp.topic(), tp.partition(), offset, key, t.toByteArray());
    }
  }

  /**
   * A window member's part in a training run: its SFT examples (its own completion if rewarded, its correction, the
   * rollouts of its prompt the verifier rewarded; possibly none) and/or its GRPO prompt (may be null); {@code note}
   * says what it taught, for the ledger.
   */
  private record Item(Waiting w, double reward, List<TokenizedExample> sft, Evaluator.Problem prompt, String note) {}

  private final Settings s;
  private final AdapterStore store;
  private final ExperienceLog log;
  private final DeadLetters deadLetters;
  private final Decoder base;
  private final TextTokenizer tokenizer;
  private final String fingerprint;
  private final DelimiterTable delimiters;
  private final WindowRecipe.Base frozen; // the above, as a window's training takes them
  private final TrajectoryCheck check;
  private final WindowTraining training;
  private final KafkaConsumer<String, byte[]> trajectories;
  private final KafkaConsumer<String, byte[]> feedback;
  private final AtomicBoolean stop = new AtomicBoolean();
  private final Map<String, Map<String, Double>> rewards = new LinkedHashMap<>(); // trajectory id -> feedback id -> reward
  private final Map<String, String> corrections = new HashMap<>(); // trajectory id -> the latest corrected answer
  private final Map<Long, Double> heldOutScore = new HashMap<>();
  private final TrainedIds trained;

  private final Set<Integer> owned; // trajectory partitions this trainer reads (empty: all)
  private AdapterStore.Version current;
  private Path currentDir;
  private AdapterStore.Version latestStored; // the newest version in the store as this trainer knows it: it stores the next
  private Map<TopicPartition, Long> rangeStart; // where the next published version's trained_on begins
  private final Map<TopicPartition, Long> position = new HashMap<>(); // next offset to consume
  private final Map<TopicPartition, Long> feedbackPosition = new HashMap<>();
  private Map<TopicPartition, Long> feedbackJudged = Map.of(); // feedback below was validated by an earlier run
  private final LinkedHashMap<String, Waiting> open = new LinkedHashMap<>(); // the open window, by trajectory id
  private final List<Ledger.Entry> decided = new ArrayList<>(); // outcomes since the last publish (but trained/carried)
  private long otherAdapters; // records of other adapters since the last publish
  private final Map<String, Long> stored = new HashMap<>(); // ledger counts of every stored version (carried excluded)
  private final Map<String, OptionalDouble> verified = new HashMap<>(); // verifier scores of waiting trajectories
  private long windowOpenedNanos;
  private long windowStartedAtMs; // when the window being trained started (before reading the log to its end)
  private long dueSinceNanos; // when the open window became due; 0: it is not
  private int dueWindowSize; // how many trajectories it held then
  private int rewardedAtLastAttempt; // rewarded waiting trajectories right after a refused attempt
  private long lastAttemptNanos;
  private int failures; // trainings in a row that failed for no record's fault
  private long retryAtNanos; // a window that failed so is held back until then
  private String heldBack = "";
  private volatile Status status;
  private final Queue<Forced> forced = new ConcurrentLinkedQueue<>();
  private volatile Tracer tracer = OpenTelemetry.noop().getTracer("memgen-trainer");
  private AdapterPublished lastPublished;
  private Map<String, Double> lastEvalMetrics = Map.of();
  private Instant lastEvalAt;
  private int published;
  private int rejected;
  private long consumed;
  private long deadLettered;
  private long feedbackDeadLettered;
  private long feedbackAfterTraining;
  private long rolloutRounds; // seeds each window's rollouts apart
  private long rolloutSeed; // the seed of the window attempt's rollouts, and how many prompts they rolled out
  private int rolloutPrompts;
  private Map<String, Double> lastRollouts = Map.of(); // what the last window's rejection sampling found

  public ContinualTrainer(Settings settings) throws Exception {
    this(settings, Set.of(), UnaryOperator.identity());
  }

  /**
   * A trainer that reads only the trajectory partitions {@code partitions} (empty: all): in a {@link TrainerGroup}, the
   * one its adapter's records land on ({@code Topics.partitionOf}). The stored offsets of the others carry over.
   */
  public ContinualTrainer(Settings settings, Set<Integer> partitions) throws Exception {
    this(settings, partitions, UnaryOperator.identity());
  }

  /** {@code decorate} wraps the trainer's own {@link WindowTraining} (tests inject failures with it). */
  ContinualTrainer(Settings settings, UnaryOperator<WindowTraining> decorate) throws Exception {
    this(settings, Set.of(), decorate);
  }

  private ContinualTrainer(Settings settings, Set<Integer> partitions, UnaryOperator<WindowTraining> decorate)
      throws Exception {
    this.s = settings;
    this.owned = Set.copyOf(partitions);
    Files.createDirectories(s.workDir());
    store = AdapterStore.open(s.storeDir());
    log = new ExperienceLog(s.bootstrapServers());
    log.ensureTopics(s.partitions());
    deadLetters = log.deadLetters("trainer/" + s.adapterName(), KAFKA_TIMEOUT);
    fingerprint = Checkpoint.open(s.modelDir()).fingerprint();
    base = Decoder.load(s.modelDir());
    tokenizer = TextTokenizer.load(s.modelDir());
    MemoryManifest manifest = MemoryManifest.read(s.initialMemory());
    delimiters = DelimiterTable.build(tokenizer, base.config().vocabSize(), manifest.delimiters());
    frozen = new WindowRecipe.Base(base, fingerprint, tokenizer, delimiters);
    check = TrajectoryCheck.of(s.adapterName(), fingerprint, base.config(), manifest, delimiters,
        s.intake().maxTrajectoryTokens());
    training = decorate.apply(this::trainCandidate);
    trained = new TrainedIds(s.intake().dedupHorizon());
    trajectories = ExperienceLog.consumer(s.bootstrapServers(), "memgen-trainer-" + s.adapterName(), groupId());
    feedback = ExperienceLog.consumer(s.bootstrapServers(), "memgen-trainer-feedback-" + s.adapterName(), null);
    recover();
  }

  /** Traces windows with {@code tracer} (a service's OpenTelemetry); untraced otherwise. Returns this trainer. */
  public ContinualTrainer traced(Tracer tracer) {
    this.tracer = tracer;
    return this;
  }

  /** The request span a trajectory record names in its headers (W3C {@code traceparent}), or null. */
  private static SpanContext requestSpan(ConsumerRecord<String, byte[]> r) {
    SpanContext sc = Span.fromContext(W3CTraceContextPropagator.getInstance().extract(Context.root(), r.headers(),
        KAFKA_HEADERS)).getSpanContext();
    return sc.isValid() ? sc : null;
  }

  /** Kafka record headers (UTF-8 values, as the reasoner's spool writes them) as a trace-context carrier. */
  private static final TextMapGetter<Headers> KAFKA_HEADERS = new TextMapGetter<>() {
    @Override
    public Iterable<String> keys(Headers carrier) {
      List<String> keys = new ArrayList<>();
      carrier.forEach(h -> keys.add(h.key()));
      return keys;
    }

    @Override
    public String get(Headers carrier, String key) {
      Header h = carrier == null ? null : carrier.lastHeader(key);
      return h == null ? null : new String(h.value(), StandardCharsets.UTF_8);
    }
  };

  /** Consumer group the trainer commits its positions under (for lag monitoring; the store holds the truth). */
  public String groupId() {
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
    // Training is compute-bound (batched products and their gradients): this thread's libtorch work uses every core.
    // Threads that decode set one for theirs (EngineCore), so a trainer in a serving process leaves them as they are.
    Engines.computeThreads(Engines.THREADS);
    windowOpenedNanos = System.nanoTime();
    try {
      while (!stop.get()) {
        pollOnce(Duration.ofMillis(200));
        Forced f = forced.poll();
        if (f != null) {
          f.done().complete(trainWindow("forced: " + f.reason(), true));
        } else if (due()) {
          trainWindow("window", false);
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

  // ---- intake

  /** Reads what is there now (trajectories and feedback) into the window. */
  private void pollOnce(Duration wait) throws DeadLetters.DeadLetterException, InterruptedException {
    pollFeedback(Duration.ZERO);
    ConsumerRecords<String, byte[]> records = trajectories.poll(wait);
    DeadLetters.Sorted<Trajectory> sorted = deadLetters.decode(records, Records.TRAJECTORY, check::problem);
    for (DeadLetters.Letter l : sorted.dead()) {
      deadLettered += l.earlier() ? 0 : 1;
      Trajectory t = Records.TRAJECTORY.deserializeOrNull(l.record().value());
      decided.add(new Ledger.Entry(DeadLetters.source(l.record()), t == null ? "" : clip(t.getTrajectoryId()),
          Ledger.Outcome.DEAD_LETTERED, l.reason()));
    }
    for (ExperienceLog.Decoded<Trajectory> d : sorted.good()) {
      admit(d.value(), d.record());
    }
    for (ConsumerRecord<String, byte[]> r : records) { // dead letters confirmed: now the position may move past them
      position.put(new TopicPartition(r.topic(), r.partition()), r.offset() + 1);
      consumed++;
    }
    expire();
    updateStatus("collecting");
  }

  /** A valid trajectory record: another adapter's (counted), a duplicate, not trainable (skipped), or waiting. */
  private void admit(Trajectory t, ConsumerRecord<String, byte[]> r) {
    String id = t.getTrajectoryId();
    String source = DeadLetters.source(r);
    String unusable;
    if (!t.getAdapterName().equals(s.adapterName())) {
      otherAdapters++;
    } else if (trained.contains(id)) { // a reasoner's spool resends what a crash left unconfirmed
      decided.add(new Ledger.Entry(source, id, Ledger.Outcome.DUPLICATE, "already trained in a published version"));
    } else if (open.containsKey(id)) {
      decided.add(new Ledger.Entry(source, id, Ledger.Outcome.DUPLICATE, "already waiting (" + open.get(id).source() + ")"));
    } else if ((unusable = TrajectoryCheck.unusable(t)) != null) {
      decided.add(new Ledger.Entry(source, id, Ledger.Outcome.SKIPPED, unusable));
    } else {
      if (open.isEmpty()) {
        windowOpenedNanos = System.nanoTime();
      }
      open.put(id, new Waiting(t, r.key(), new TopicPartition(r.topic(), r.partition()), r.offset(), r.timestamp(),
          requestSpan(r)));
    }
  }

  /**
   * Feedback is re-read from the start at every restart (a late reward may name any waiting trajectory); bad records
   * below the last stored version's feedback position were dead-lettered before, so once.
   */
  private void pollFeedback(Duration wait) throws DeadLetters.DeadLetterException, InterruptedException {
    List<ConsumerRecord<String, byte[]>> fresh = new ArrayList<>();
    ConsumerRecords<String, byte[]> records = feedback.poll(wait);
    for (ConsumerRecord<String, byte[]> r : records) {
      TopicPartition tp = new TopicPartition(r.topic(), r.partition());
      if (r.offset() >= feedbackJudged.getOrDefault(tp, 0L)) {
        fresh.add(r);
      } else {
        Feedback f = Records.FEEDBACK.deserializeOrNull(r.value());
        if (f != null && checkFeedback(f) == null) {
          remember(f, false);
        }
      }
    }
    DeadLetters.Sorted<Feedback> sorted = deadLetters.decode(fresh, Records.FEEDBACK, ContinualTrainer::checkFeedback);
    sorted.good().forEach(d -> remember(d.value(), true));
    for (DeadLetters.Letter l : sorted.dead()) {
      deadLettered += l.earlier() ? 0 : 1;
      feedbackDeadLettered++;
    }
    for (ConsumerRecord<String, byte[]> r : records) {
      feedbackPosition.put(new TopicPartition(r.topic(), r.partition()), r.offset() + 1);
    }
  }

  /**
   * Before a window trains: reads every trajectory and feedback record logged up to now, so that a trajectory whose
   * reward is in the log before training starts is never missed because a consumer had not fetched it yet.
   */
  private void catchUp() throws DeadLetters.DeadLetterException, InterruptedException {
    Map<TopicPartition, Long> end = new HashMap<>(trajectories.endOffsets(trajectories.assignment(), KAFKA_TIMEOUT));
    Map<TopicPartition, Long> feedbackEnd = feedback.endOffsets(feedback.assignment(), KAFKA_TIMEOUT);
    long deadline = System.nanoTime() + CATCH_UP.toNanos();
    while (end.entrySet().stream().anyMatch(e -> trajectories.position(e.getKey(), KAFKA_TIMEOUT) < e.getValue())
        || feedbackEnd.entrySet().stream().anyMatch(e -> feedback.position(e.getKey(), KAFKA_TIMEOUT) < e.getValue())) {
      if (System.nanoTime() > deadline) {
        LOG.warn("the log was not read to its end (trajectories {}, feedback {}) within {}: training with what was read "
            + "(the rest reaches a later window)", end, feedbackEnd, CATCH_UP);
        return;
      }
      pollOnce(Duration.ofMillis(100));
    }
  }

  /** Trajectories past the reward horizon, or beyond the most that may wait, expire (oldest first). */
  private void expire() {
    long horizonStart = System.currentTimeMillis() - s.intake().rewardHorizon().toMillis();
    for (Iterator<Waiting> it = open.values().iterator(); it.hasNext(); ) {
      Waiting w = it.next();
      boolean old = w.loggedAtMillis() < horizonStart;
      if (!old && open.size() <= s.intake().maxWaiting()) {
        return; // arrival order is (nearly) log order: the rest are younger
      }
      decided.add(new Ledger.Entry(w.source(), w.t().getTrajectoryId(), Ledger.Outcome.EXPIRED,
          old ? "no reward within " + s.intake().rewardHorizon() : "more than " + s.intake().maxWaiting() + " trajectories waiting"));
      verified.remove(w.t().getTrajectoryId());
      it.remove();
    }
  }

  private boolean due() {
    if (System.nanoTime() < retryAtNanos) {
      return false;
    }
    int rewarded = rewarded();
    rewardedAtLastAttempt = Math.min(rewardedAtLastAttempt, rewarded); // expiries shrink the window
    if (!enoughRewarded(rewarded)) {
      dueSinceNanos = 0;
      return false;
    }
    if (dueSinceNanos == 0) {
      dueSinceNanos = System.nanoTime();
      dueWindowSize = open.size();
    }
    // Feedback comes after its generation: give the window's youngest unrewarded trajectories a moment to get theirs.
    return System.nanoTime() - dueSinceNanos >= s.feedbackGrace().toNanos() || !awaitingFeedback();
  }

  /**
   * Whether the open window has what a window needs: {@code window-rewarded} rewarded trajectories, or some after
   * {@code max-window-wait}. A refused window trains again only on new rewards, so only rewards since the last attempt
   * count.
   */
  private boolean enoughRewarded(int rewarded) {
    int fresh = rewarded - Math.min(rewardedAtLastAttempt, rewarded);
    long since = Math.max(windowOpenedNanos, lastAttemptNanos);
    return fresh >= s.windowRewarded() || (fresh > 0 && System.nanoTime() - since > s.maxWindowWait().toNanos());
  }

  /**
   * Whether a trajectory the window held when it became due has no reward yet but finished less than the grace period
   * ago. (Later arrivals join the window but do not hold it up: under steady traffic there always is a newest one.)
   */
  private boolean awaitingFeedback() {
    long graceStartSeconds = Instant.now().minus(s.feedbackGrace()).getEpochSecond();
    int i = 0;
    for (Waiting w : open.values()) {
      if (i++ >= dueWindowSize) {
        break;
      }
      if (w.t().getCreatedAt().getSeconds() >= graceStartSeconds && reward(w.t()).isEmpty()) {
        return true;
      }
    }
    return false;
  }

  /** Waiting trajectories with a reward (from feedback, else from the verifier). */
  private int rewarded() {
    int n = 0;
    for (Waiting w : open.values()) {
      if (reward(w.t()).isPresent()) {
        n++;
      }
    }
    return n;
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

  // ---- training

  private Outcome trainWindow(String reason, boolean forcedNow) throws Exception {
    windowStartedAtMs = System.currentTimeMillis(); // before the catch-up: what was in the log then is in the window
    lastRollouts = Map.of();
    rolloutSeed = 0;
    rolloutPrompts = 0;
    updateStatus("reading the log to its end");
    catchUp();
    expire();
    List<Item> items = new ArrayList<>();
    List<Evaluator.Problem> rollouts = new ArrayList<>(); // per item: its prompt to roll out, or null
    int rewarded = 0;
    int cap = s.intake().maxWindow() > 0 ? s.intake().maxWindow() : Integer.MAX_VALUE;
    for (Waiting w : open.values()) {
      OptionalDouble r = reward(w.t());
      if (r.isEmpty()) {
        continue; // carried: its reward may still come
      }
      if (items.size() >= cap) {
        break; // carried to the next window, which is due as soon as this one is published
      }
      rewarded++;
      int[] prompt = toArray(w.t().getPromptTokenIdsList());
      List<TokenizedExample> sft = new ArrayList<>();
      List<String> note = new ArrayList<>();
      note.add("reward " + r.getAsDouble());
      if (r.getAsDouble() >= s.sftMinReward()) {
        sft.add(new TokenizedExample(prompt, toArray(w.t().getCompletionTokenIdsList())));
        note.add("sft");
      }
      String correction = corrections.get(w.t().getTrajectoryId());
      if (correction != null) {
        sft.add(TokenizedExample.of(tokenizer, tokenizer.decode(prompt, false), correction));
        note.add("correction");
      }
      Evaluator.Problem verifiable = null;
      if (s.verifier().isPresent() && (s.grpoSteps() > 0 || s.rollouts().on() || s.trigger().on())) {
        String text = tokenizer.decode(prompt, false);
        verifiable = s.verifier().get().expected(text).map(e -> new Evaluator.Problem(text, e)).orElse(null);
      }
      Evaluator.Problem grpo = s.grpoSteps() > 0 || s.trigger().on() ? verifiable : null; // re-rolled out in training
      if (grpo != null) {
        note.add(s.grpoSteps() > 0 ? "grpo" : "trigger rl");
      }
      Evaluator.Problem rollout = s.rollouts().on() ? verifiable : null;
      items.add(new Item(w, r.getAsDouble(), sft, grpo, String.join(", ", note)));
      rollouts.add(rollout);
    }
    if (rollouts.stream().anyMatch(x -> x != null)) {
      items = withRollouts(items, rollouts);
    }
    for (Iterator<Item> it = items.iterator(); it.hasNext(); ) {
      Item item = it.next();
      if (item.sft().isEmpty() && item.prompt() == null) { // judged, nothing to learn from it: decided now
        Waiting w = item.w();
        decided.add(new Ledger.Entry(w.source(), w.t().getTrajectoryId(), Ledger.Outcome.LOW_REWARD,
            item.note() + " < sft-min-reward " + s.sftMinReward()));
        verified.remove(w.t().getTrajectoryId());
        open.remove(w.t().getTrajectoryId());
        it.remove();
      }
    }
    dueSinceNanos = 0;
    lastAttemptNanos = System.nanoTime();
    if (items.isEmpty()) {
      rewardedAtLastAttempt = rewarded();
      updateStatus("collecting");
      if (forcedNow && rewarded == 0) {
        return Outcome.refused("the window holds no rewarded trajectory (" + open.size() + " trajectories)");
      }
      LOG.info("window of {} trajectories ({} rewarded) has nothing to learn from; its range carries over", open.size() + rewarded,
          rewarded);
      return Outcome.refused("no trajectory in the window is rewarded >= " + s.sftMinReward() + " (" + (open.size() + rewarded)
          + " trajectories, " + rewarded + " rewarded)");
    }
    Outcome o = trainIsolatingFailures(items, reason);
    if (o.published().isEmpty() && failures == 0) { // refused by the gate (a failure retries after its back-off)
      rewardedAtLastAttempt = rewarded();
    }
    updateStatus("collecting");
    return o;
  }

  /**
   * Rejection sampling on the window's prompts ({@code prompts[i]} for item i, null for none): each rolled out with the
   * serving memory and with the base alone, the rollouts the verifier rewards added to the item's SFT targets.
   */
  private List<Item> withRollouts(List<Item> items, List<Evaluator.Problem> prompts) {
    updateStatus("rolling out the window's prompts");
    List<Integer> which = new ArrayList<>();
    List<Evaluator.Problem> problems = new ArrayList<>();
    for (int i = 0; i < prompts.size(); i++) {
      if (prompts.get(i) != null) {
        which.add(i);
        problems.add(prompts.get(i));
      }
    }
    long t0 = System.nanoTime();
    rolloutSeed = s.seed() * 1_000_003L + current.version() * 7919L + rolloutRounds++;
    rolloutPrompts = problems.size();
    // Seeded by rolloutSeed alone (the updates' seed plays no part in it), which the version records.
    RejectionSampling.Result found = recipe(0).rollOut(frozen, currentDir, problems, reward());
    lastRollouts = Map.of("rollout_prompts", (double) problems.size(), "rollout_accuracy", found.rolloutAccuracy(),
        "rollout_prompts_solved", (double) found.solved(), "rollout_examples", (double) found.all().size(),
        "rollout_seconds", (System.nanoTime() - t0) / 1e9, "rollout_digest", WindowRecipe.digest(found));
    LOG.info("rolled out {} prompts x {}: {} of {} rollouts rewarded, {} prompts solved, {} new SFT targets", problems.size(),
        found.samples(), found.rewarded(), (long) problems.size() * found.samples(), found.solved(), found.all().size());
    List<Item> out = new ArrayList<>(items);
    for (int j = 0; j < which.size(); j++) {
      Item item = out.get(which.get(j));
      List<TokenizedExample> sft = new ArrayList<>(item.sft());
      sft.addAll(found.accepted().get(j));
      out.set(which.get(j), new Item(item.w(), item.reward(), sft, item.prompt(),
          item.note() + ", " + WindowRecipe.rolloutMark(j, rolloutSeed) + ", rollouts " + found.rightPerProblem()[j] + "/"
              + found.samples() + " rewarded"));
    }
    return out;
  }

  /**
   * Trains, gates and publishes {@code items}; a failure is retried once, then the items are trained one by one and
   * those that fail alone are dead-lettered (the rest train again without them). When every item trains alone, the
   * failure is the window's, not a record's: it is held back under a back-off and nothing is dead-lettered.
   */
  private Outcome trainIsolatingFailures(List<Item> items, String reason) throws Exception {
    Exception last = null;
    for (int attempt = 0; attempt < 3 && !items.isEmpty(); attempt++) {
      try {
        Outcome o = trainGateAndPublish(items, reason);
        failures = 0;
        retryAtNanos = 0;
        heldBack = "";
        return o;
      } catch (InterruptedException | DeadLetters.DeadLetterException | AdapterStore.VersionConflictException e) {
        throw e; // a conflict: another trainer publishes this adapter now; this one stops (see followRollback)
      } catch (Exception e) {
        last = e;
        if (attempt == 0) {
          LOG.warn("training a window of {} trajectories failed; retrying once: {}", items.size(), e.toString());
          continue;
        }
        List<Map.Entry<Item, String>> culprits = isolate(items);
        if (culprits.isEmpty() || culprits.size() == items.size()) {
          break; // no record explains it (or every one would be blamed): the window's failure
        }
        List<Map.Entry<ConsumerRecord<String, byte[]>, String>> letters = new ArrayList<>();
        for (Map.Entry<Item, String> c : culprits) {
          Waiting w = c.getKey().w();
          letters.add(Map.entry(w.asRecord(), "training failed on this trajectory: " + c.getValue()));
        }
        List<DeadLetters.Letter> sent = deadLetters.send(letters);
        for (int i = 0; i < sent.size(); i++) { // in the order of the culprits
          Waiting w = culprits.get(i).getKey().w();
          deadLettered += sent.get(i).earlier() ? 0 : 1;
          decided.add(new Ledger.Entry(w.source(), w.t().getTrajectoryId(), Ledger.Outcome.DEAD_LETTERED, sent.get(i).reason()));
          open.remove(w.t().getTrajectoryId());
          verified.remove(w.t().getTrajectoryId());
        }
        List<Item> rest = new ArrayList<>(items);
        culprits.forEach(c -> rest.remove(c.getKey()));
        LOG.warn("{} of {} trajectories make training fail on their own; dead-lettered, training the other {}", culprits.size(),
            items.size(), rest.size());
        items = rest;
      }
    }
    failures++;
    long backoff = Math.min(MAX_RETRY_BACKOFF.toMillis(), 1000L << Math.min(20, failures - 1));
    retryAtNanos = System.nanoTime() + backoff * 1_000_000;
    heldBack = "training failed " + failures + " time(s) in a row, next attempt in " + backoff / 1000.0 + " s: " + last;
    rejected++;
    LOG.error("window of {} trajectories: {}", items.size(), heldBack, last);
    return Outcome.refused(heldBack);
  }

  /** Each item trained alone (one update): the ones whose training throws, with the exception's message. */
  private List<Map.Entry<Item, String>> isolate(List<Item> items) {
    updateStatus("isolating a training failure");
    List<Map.Entry<Item, String>> culprits = new ArrayList<>();
    for (Item item : items) {
      boolean grpo = item.prompt() != null && s.grpoSteps() > 0;
      if (item.sft().isEmpty() && !grpo) {
        continue; // nothing of it reaches the weaver's training (a prompt for the trigger only): it cannot be the cause
      }
      try {
        training.train(currentDir, item.sft(), grpo ? List.of(item.prompt()) : List.of(), 1, grpo ? 1 : 0, s.seed(),
            new HashMap<>());
      } catch (Exception e) {
        culprits.add(Map.entry(item, e.toString()));
      }
    }
    return culprits;
  }

  /**
   * One span per window attempt ({@code memgen.trainer.window}), linked to the request spans its trajectories came
   * from: a trace backend leads from an agent's request to the version that learned from it, and back.
   */
  private Outcome trainGateAndPublish(List<Item> items, String reason) throws Exception {
    SpanBuilder b = tracer.spanBuilder("memgen.trainer.window").setSpanKind(SpanKind.INTERNAL)
        .setAttribute("memgen.adapter", s.adapterName()).setAttribute("memgen.window.trajectories", (long) items.size())
        .setAttribute("memgen.window.parent_version", current.version()).setAttribute("memgen.window.reason", reason);
    for (Item item : items) { // the SDK keeps the first 128 links (its default span limits)
      if (item.w().request() != null) {
        b.addLink(item.w().request(), Attributes.of(AttributeKey.stringKey("memgen.trajectory_id"),
            item.w().t().getTrajectoryId()));
      }
    }
    Span span = b.startSpan();
    try (Scope ignored = span.makeCurrent()) {
      Outcome o = trainGateAndPublishTraced(items, reason);
      if (o.published().isPresent()) {
        span.setAttribute("memgen.window.published_version", o.published().get().getVersion());
      } else {
        span.setAttribute("memgen.window.refused", o.refusal());
      }
      return o;
    } catch (Exception e) {
      span.recordException(e);
      span.setStatus(StatusCode.ERROR, e.toString());
      throw e;
    } finally {
      span.end();
    }
  }

  private Outcome trainGateAndPublishTraced(List<Item> items, String reason) throws Exception {
    followRollback();
    long started = System.nanoTime();
    List<TokenizedExample> examples = items.stream().flatMap(i -> i.sft().stream()).toList();
    List<Evaluator.Problem> prompts = items.stream().map(Item::prompt).filter(x -> x != null).toList();
    LOG.info("training window of {} trajectories ({} rewarded, {} SFT examples) from v{}", open.size(), items.size(),
        examples.size(), current.version());
    Path candidate = s.workDir().resolve("candidate");
    Directories.deleteRecursively(candidate);
    Map<String, Double> metrics = new LinkedHashMap<>();
    metrics.put("window_trajectories", (double) open.size());
    metrics.put("window_rewarded", (double) items.size());
    metrics.put("sft_examples", (double) examples.size());
    metrics.put("window_started_at_ms", (double) windowStartedAtMs);
    metrics.putAll(lastRollouts);
    // The recipe, so that `adapters rebuild` can train the version again from its parent and its ledger.
    recipe(s.seed() + current.version()).record(metrics);
    try {
      boolean weaverUpdate = !examples.isEmpty() || (s.grpoSteps() > 0 && !prompts.isEmpty());
      Path trainedDir = !weaverUpdate ? currentDir : training.train(currentDir, examples, prompts, s.sftSteps(),
          prompts.isEmpty() ? 0 : s.grpoSteps(), s.seed() + current.version(), metrics);
      if (s.trigger().on() && !prompts.isEmpty()) {
        trainedDir = trainTrigger(trainedDir, prompts, s.seed() + current.version(), metrics);
      }
      if (trainedDir.equals(currentDir)) {
        throw new IllegalArgumentException("nothing to train: no SFT example and no verifiable prompt");
      }
      checkFinite(trainedDir);
      Files.move(trainedDir, candidate);
    } catch (TrainingDivergedException e) {
      rejected++;
      LOG.warn("window of {} trajectories: training diverged, nothing published ({}); it stays open", items.size(),
          e.getMessage());
      return Outcome.refused("training diverged: " + e.getMessage());
    }
    long next = latestStored.version() + 1;
    MemoryManifest.read(candidate).withVersion(next).write(candidate); // serving reports the store's version number

    updateStatus("evaluating");
    double before = heldOutScore(current.version(), currentDir);
    Evaluator.Score scored = evaluate(candidate);
    double after = scored.accuracy();
    metrics.put("eval_accuracy", after);
    if (s.trigger().on()) {
      metrics.put("eval_invocation_rate", scored.invocationRate());
    }
    metrics.put("eval_accuracy_parent", before);
    metrics.put("window_seconds", (System.nanoTime() - started) / 1e9);
    lastEvalMetrics = Map.copyOf(metrics);
    lastEvalAt = Instant.now();
    if (!(after >= before - s.gateTolerance())) {
      rejected++;
      LOG.info("candidate from {} trajectories scores {} on the held-out set against {} for v{}: not published; the window "
          + "stays open", items.size(), fmt(after), fmt(before), current.version());
      return Outcome.refused("the candidate scores " + fmt(after) + " on the held-out set against " + fmt(before)
          + " for v" + current.version() + " (tolerance " + s.gateTolerance() + " points)");
    }
    AdapterPublished a = publish(candidate, metrics, after, reason, items);
    LOG.info("published {} v{} (held-out {} -> {}) trained on {} trajectories ({} SFT examples)", s.adapterName(),
        current.version(), fmt(before), fmt(after), items.size(), examples.size());
    return new Outcome(Optional.of(a), "");
  }

  /** The trainer's own {@link WindowTraining}: SFT on the rewarded completions, then GRPO by re-rollout of the prompts. */
  private Path trainCandidate(Path from, List<TokenizedExample> examples, List<Evaluator.Problem> prompts, int sftSteps,
      int grpoSteps, long seed, Map<String, Double> metrics) throws IOException {
    synchronized (GRADIENTS) {
      return recipe(seed).trainWeaver(frozen, from, s.workDir(), examples, prompts, sftSteps, grpoSteps, reward(), metrics,
          this::updateStatus);
    }
  }

  /** This trainer's recipe for a window whose updates are seeded with {@code seed}. */
  private WindowRecipe recipe(long seed) {
    return new WindowRecipe(s.sftSteps(), s.sftBatch(), s.sftLr(), seed, Engines.THREADS, s.grpoSteps(), s.evalMaxNewTokens(),
        s.sftMinReward(), s.rollouts(), rolloutSeed, rolloutPrompts, s.trigger(),
        s.verifier().map(WindowRecipe::key).orElse(""));
  }

  /** The verifier's score of a rollout; null without a verifier (a window then makes no rollouts). */
  private Reward reward() {
    return s.verifier().<Reward>map(v -> (completion, refs) -> v.score(completion, refs.get(0))).orElse(null);
  }

  /** Trigger RL on the window's verifiable prompts, the weaver of {@code from} frozen: MemGen's second stage. */
  private Path trainTrigger(Path from, List<Evaluator.Problem> prompts, long seed, Map<String, Double> metrics)
      throws IOException {
    updateStatus("training trigger (rl)");
    synchronized (GRADIENTS) {
      return recipe(seed).trainTrigger(frozen, from, s.workDir(), prompts, reward(), metrics);
    }
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
    long newest = store.latest(s.adapterName()).map(AdapterStore.Version::version).orElse(0L);
    if (newest > latestStored.version()) { // not a rollback: a version this trainer did not store
      throw new AdapterStore.VersionConflictException(s.adapterName(), newest);
    }
    AdapterPublished now = AdapterLog.current(s.bootstrapServers(), KAFKA_TIMEOUT)
        .get(AdapterLog.key(s.adapterName(), AdapterComponent.WEAVER));
    if (now != null && now.getVersion() != current.version()) {
      LOG.info("{} v{} serves now ({}): training from it instead of v{}", s.adapterName(), now.getVersion(),
          now.getReason().isEmpty() ? "announced elsewhere" : now.getReason(), current.version());
      adopt(store.get(s.adapterName(), now.getVersion()));
    }
  }

  // ---- publishing and recovery

  /**
   * Store (with the ledger: the trained items, everything decided since the last publish, and the waiting
   * trajectories as carried), then announce, then commit: see the class comment for why this order.
   */
  private AdapterPublished publish(Path candidate, Map<String, Double> metrics, double score, String reason, List<Item> items)
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
    // Where a restarted trainer looks for the dead letters it sends from now on (every earlier one is confirmed).
    deadLetters.positions(s.bootstrapServers(), INPUTS).forEach((tp, o) -> offsets.put(tp.toString(), o));
    List<Ledger.Entry> entries = new ArrayList<>(decided);
    Set<String> taught = new java.util.HashSet<>();
    for (Item item : items) {
      taught.add(item.w().t().getTrajectoryId());
      entries.add(new Ledger.Entry(item.w().source(), item.w().t().getTrajectoryId(), Ledger.Outcome.TRAINED,
          item.note()));
    }
    for (Waiting w : open.values()) {
      if (!taught.contains(w.t().getTrajectoryId())) {
        entries.add(new Ledger.Entry(w.source(), w.t().getTrajectoryId(), Ledger.Outcome.CARRIED,
            reward(w.t()).isPresent() ? "rewarded after its window started, or beyond max-window" : "no reward yet"));
      }
    }
    // Partitions this trainer does not read keep the offsets the last version stored for them.
    latestStored.offsets().forEach((k, o) -> {
      if (k.startsWith(Topics.TRAJECTORIES + "-")) {
        offsets.putIfAbsent(k, o);
      }
    });
    Ledger ledger = new Ledger(entries, otherAdapters);
    metrics.put("trajectories_trained", (double) items.size());
    // Stored as the version after the newest this trainer knows, or not at all: if another trainer took the adapter
    // over and published meanwhile, the store refuses (VersionConflictException) and nothing of this window shows.
    AdapterStore.Version v = store.publishAs(s.adapterName(), latestStored.version() + 1, candidate, current.version(),
        fingerprint, metrics, offsets, ledger);
    latestStored = v;
    AdapterPublished a = announce(v, ranges, reason);
    Map<TopicPartition, OffsetAndMetadata> commit = new HashMap<>();
    position.forEach((tp, o) -> commit.put(tp, new OffsetAndMetadata(o, "v" + v.version())));
    trajectories.commitSync(commit, KAFKA_TIMEOUT);
    for (String id : taught) {
      trained.add(id, v.created());
      open.remove(id);
      verified.remove(id);
    }
    addStored(v.counts());
    decided.clear();
    otherAdapters = 0;
    rewardedAtLastAttempt = 0;
    heldOutScore.put(v.version(), score);
    adopt(v);
    rangeStart = new HashMap<>(position);
    published++;
    lastPublished = a;
    return a;
  }

  /**
   * Announces {@code v} for the weaver and, when its window trained the trigger too, first for the trigger: the weaver
   * announcement is what a restarted trainer checks, so once it is on the topic the trigger's is as well. Every
   * version is announced for the weaver, even one whose weaver did not change: the weaver key follows the line of
   * versions (rollbacks and restarts read it), and swapping in identical weights costs a load.
   */
  private AdapterPublished announce(AdapterStore.Version v, List<OffsetRange> ranges, String reason) throws Exception {
    if (v.metrics().containsKey("trigger_rl_steps")) {
      AdapterLog.publish(log, AdapterLog.announcement(store, v, AdapterComponent.TRIGGER, ranges, 0, reason), KAFKA_TIMEOUT);
    }
    AdapterPublished a = AdapterLog.announcement(store, v, AdapterComponent.WEAVER, ranges, 0, reason);
    AdapterLog.publish(log, a, KAFKA_TIMEOUT);
    return a;
  }

  /**
   * Restart: finds the latest stored version (storing the initial memory as version 1 if there is none), announces
   * it if a crash came between storing and announcing, positions the consumers at its offsets, learns which ids are
   * trained and which dead letters were sent since, and re-reads the trajectories its ledger carried.
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
      latest = Optional.of(store.publishAs(s.adapterName(), 1, initial, 0, fingerprint, Map.of(), Map.of(), Ledger.EMPTY));
      LOG.info("stored the initial memory {} as {} v1", s.initialMemory(), s.adapterName());
    }
    AdapterStore.Version v = latest.get();
    latestStored = v;
    long announcedUpTo = now == null ? 0 : Math.max(now.getVersion(), now.getRolledBackFrom());
    if (v.version() > announcedUpTo) {
      AdapterStore.Version parent = v.parent() > 0 ? store.get(s.adapterName(), v.parent()) : null;
      AdapterPublished a = announce(v, ranges(parent, v), v.version() == 1 ? "initial" : "window (announced at restart)");
      LOG.info("announced {} v{} ({})", s.adapterName(), v.version(), a.getReason());
      now = a;
    }
    lastPublished = now;
    // Train on from what serves now: the latest version, or the one an operator rolled back to.
    adopt(now.getVersion() == v.version() ? v : store.get(s.adapterName(), now.getVersion()));
    List<TopicPartition> parts = partitions(trajectories, Topics.TRAJECTORIES).stream()
        .filter(tp -> owned.isEmpty() || owned.contains(tp.partition())).toList();
    if (parts.isEmpty()) {
      throw new IllegalStateException(Topics.TRAJECTORIES + " has no partition " + owned);
    }
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
    List<TopicPartition> fbParts = partitions(feedback, Topics.FEEDBACK);
    feedback.assign(fbParts);
    feedback.seekToBeginning(fbParts); // late rewards may name any waiting trajectory
    Map<TopicPartition, Long> judged = new HashMap<>();
    for (TopicPartition tp : fbParts) {
      judged.put(tp, v.offsets().getOrDefault(tp.toString(), 0L));
    }
    feedbackJudged = judged;
    Map<TopicPartition, Long> dlqFrom = new HashMap<>();
    v.offsets().forEach((k, o) -> {
      for (String input : INPUTS) {
        String dlq = Topics.deadLetter(input);
        if (k.startsWith(dlq + "-") && k.substring(dlq.length() + 1).matches("\\d+")) {
          dlqFrom.put(new TopicPartition(dlq, Integer.parseInt(k.substring(dlq.length() + 1))), o);
        }
      }
    });
    int earlier = deadLetters.recover(s.bootstrapServers(), INPUTS, dlqFrom);
    Instant dedupFrom = Instant.now().minus(s.intake().dedupHorizon());
    for (AdapterStore.Version each : store.versions(s.adapterName())) {
      addStored(each.counts());
      if (!each.created().isBefore(dedupFrom) && !each.ledgerSha256().isEmpty()) {
        for (String id : store.ledger(s.adapterName(), each.version()).ids(Ledger.Outcome.TRAINED)) {
          trained.add(id, each.created());
        }
      }
    }
    List<Ledger.Entry> carried = store.ledger(s.adapterName(), v.version()).entries(Ledger.Outcome.CARRIED);
    refetch(carried);
    updateStatus("collecting");
    LOG.info("training {} from v{} on {}, trajectories from {}; {} trained ids remembered, {} carried trajectories waiting, "
        + "{} dead letters of the open range already sent", s.adapterName(), current.version(), s.bootstrapServers(), position,
        trained.size(), open.size(), earlier);
  }

  /** The carried trajectories a version's ledger names, read again at their offsets into the open window. */
  private void refetch(List<Ledger.Entry> carried) throws IOException {
    if (carried.isEmpty()) {
      return;
    }
    Map<String, ConsumerRecord<String, byte[]>> found = ExperienceLog.readAt(s.bootstrapServers(),
        carried.stream().map(Ledger.Entry::source).toList(), "memgen-trainer-carried-" + s.adapterName(), KAFKA_TIMEOUT);
    for (Ledger.Entry e : carried) {
      ConsumerRecord<String, byte[]> r = found.get(e.source());
      Trajectory t = r == null ? null : Records.TRAJECTORY.deserializeOrNull(r.value());
      if (t == null || !t.getTrajectoryId().equals(e.trajectoryId())) {
        decided.add(new Ledger.Entry(e.source(), e.trajectoryId(), Ledger.Outcome.EXPIRED, "no longer in the log"));
      } else {
        admit(t, r);
      }
    }
  }

  private static List<TopicPartition> partitions(KafkaConsumer<String, byte[]> c, String topic) {
    return c.partitionsFor(topic, KAFKA_TIMEOUT).stream().map(p -> new TopicPartition(p.topic(), p.partition())).toList();
  }

  /** The ranges version {@code v} consumed beyond {@code parent} (from its store record's cumulative offsets). */
  private static List<OffsetRange> ranges(AdapterStore.Version parent, AdapterStore.Version v) {
    List<OffsetRange> out = new ArrayList<>();
    for (Map.Entry<String, Long> e : v.offsets().entrySet()) {
      if (!e.getKey().startsWith(Topics.TRAJECTORIES + "-")) {
        continue; // feedback and dead-letter positions are recorded too, but trained_on is about trajectories
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

  private double score(Path dir) {
    return evaluate(dir).accuracy();
  }

  /**
   * The memory in {@code dir} on the held-out set, as it will serve: weaving at every delimiter up to the cap (trigger
   * inactive), or, when the trainer trains the trigger, where the trigger decides to at its threshold.
   */
  private Evaluator.Score evaluate(Path dir) {
    return evaluate(base, fingerprint, tokenizer, delimiters, dir, s.heldOut(), s.evalMaxNewTokens(), s.trigger());
  }

  /** The gate's evaluation of the memory in {@code dir} (shared with {@link VersionRebuild}). */
  static Evaluator.Score evaluate(Decoder base, String fingerprint, TextTokenizer tokenizer, DelimiterTable delimiters, Path dir,
      List<Evaluator.Problem> heldOut, int maxNewTokens, TriggerTraining trigger) {
    try (Memory memory = Memory.load(dir, base, fingerprint)) {
      InProcessMemory mem = new InProcessMemory(base, memory);
      MemGenInterleaver.Options options = new MemGenInterleaver.Options(true, memory.manifest().maxInferenceAug(),
          trigger.on() ? MemGenInterleaver.TriggerMode.THRESHOLD : MemGenInterleaver.TriggerMode.INACTIVE,
          trigger.threshold(), 0);
      Evaluator evaluator = new Evaluator(base, tokenizer, maxNewTokens, 32);
      return evaluator.run(heldOut, ids -> MemGenInterleaver.inProcess(mem, ids.size(), delimiters, options), c -> {});
    }
  }

  /** {@code fresh}: read for the first time (not re-read after a restart), so counted if it comes too late. */
  private void remember(Feedback f, boolean fresh) {
    if (fresh && trained.contains(f.getTrajectoryId())) {
      feedbackAfterTraining++; // a trajectory is trained once, with the rewards it had then
    }
    rewards.computeIfAbsent(f.getTrajectoryId(), k -> new LinkedHashMap<>()).put(f.getFeedbackId(), f.getReward());
    if (!f.getCorrectedAnswer().isEmpty()) {
      corrections.put(f.getTrajectoryId(), f.getCorrectedAnswer());
    }
    if (rewards.size() > MAX_REMEMBERED_FEEDBACK) { // the oldest trajectories' windows are long closed
      String oldest = rewards.keySet().iterator().next();
      rewards.remove(oldest);
      corrections.remove(oldest);
    }
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

  private void addStored(Map<String, Long> counts) {
    counts.forEach((k, n) -> {
      if (!k.equals(Ledger.Outcome.CARRIED.json())) {
        stored.merge(k, n, Long::sum);
      }
    });
  }

  private Counts counts() {
    Map<String, Long> all = new HashMap<>(stored);
    decided.forEach(e -> all.merge(e.outcome().json(), 1L, Long::sum));
    all.merge("other_adapters", otherAdapters, Long::sum);
    return new Counts(n(all, Ledger.Outcome.TRAINED), n(all, Ledger.Outcome.LOW_REWARD), n(all, Ledger.Outcome.DUPLICATE),
        n(all, Ledger.Outcome.DEAD_LETTERED), n(all, Ledger.Outcome.SKIPPED), n(all, Ledger.Outcome.EXPIRED), open.size(),
        all.getOrDefault("other_adapters", 0L), feedbackDeadLettered, feedbackAfterTraining);
  }

  private static long n(Map<String, Long> counts, Ledger.Outcome o) {
    return counts.getOrDefault(o.json(), 0L);
  }

  /**
   * @param activity what the trainer is doing; "collecting" is reported as "window due" while the open window has what
   *     a window needs (it trains at the next poll, after a feedback grace or a retry back-off): a status reader can
   *     tell a trainer waiting for traffic from one with work still to do
   */
  private void updateStatus(String activity) {
    int rewarded = activity.equals("collecting") ? rewarded() : 0;
    if (activity.equals("collecting") && enoughRewarded(rewarded)) {
      activity = "window due";
    }
    status = new Status(current == null ? 0 : current.version(), open.size(), rewarded,
        s.windowRewarded(), published, rejected, consumed, deadLettered, activity, lastPublished, lastEvalMetrics, lastEvalAt,
        rangeStart == null ? Map.of() : Map.copyOf(rangeStart), counts(),
        System.nanoTime() < retryAtNanos ? heldBack : "");
  }

  private static String clip(String id) {
    return id.length() <= 200 ? id : id.substring(0, 200) + "…";
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
