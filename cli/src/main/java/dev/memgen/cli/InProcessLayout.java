package dev.memgen.cli;

import com.google.protobuf.util.Timestamps;
import dev.memgen.engine.Reasoner;
import dev.memgen.engine.core.EngineCore;
import dev.memgen.log.ExperienceLog;
import dev.memgen.log.SpooledPublisher;
import dev.memgen.log.Topics;
import dev.memgen.model.Decoder;
import dev.memgen.model.checkpoint.Checkpoint;
import dev.memgen.model.generate.MemGenInterleaver;
import dev.memgen.model.text.DelimiterTable;
import dev.memgen.model.text.TextTokenizer;
import dev.memgen.proto.v1.AdapterComponent;
import dev.memgen.proto.v1.Feedback;
import dev.memgen.rpc.AdapterFollower;
import dev.memgen.rpc.AdapterHost;
import dev.memgen.rpc.ReasonerMemory;
import dev.memgen.trainer.ContinualTrainer;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.UUID;
import java.util.function.Consumer;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.common.TopicPartition;

/**
 * The loop in one JVM: the reasoner ({@link Reasoner}, from the engine) with an embedded memory that follows the
 * weaver and trigger announcements as the services do, trajectories and feedback through a spooled publisher as
 * reasoner-service's, and the {@link ContinualTrainer} on a thread of its own, as trainer-service runs it. No gRPC
 * hop and one copy of the JVM's start-up and warm-up instead of four.
 */
final class InProcessLayout implements LoopLayout {
  private final LoopBench.Settings s;
  private final String bootstrap;
  private final ContinualTrainer.Settings trainerSettings;
  private final Consumer<String> progress;
  private final List<AdapterFollower> followers = new ArrayList<>();
  private Decoder decoder;
  private EngineCore engine;
  private TextTokenizer tokenizer;
  private ReasonerMemory memory;
  private SpooledPublisher log;
  private Reasoner reasoner;
  private volatile ContinualTrainer trainer;
  private Thread trainerThread;
  private volatile Exception trainerFailure;
  private boolean closed;

  InProcessLayout(LoopBench.Settings s, String bootstrap, ContinualTrainer.Settings trainerSettings,
      Consumer<String> progress) {
    this.s = s;
    this.bootstrap = bootstrap;
    this.trainerSettings = trainerSettings;
    this.progress = progress;
  }

  @Override
  public void start() throws Exception {
    // The trainer first: it stores and announces the initial memory as v1, which the memory's followers then load.
    trainer = new ContinualTrainer(trainerSettings);
    trainerThread = new Thread(() -> {
      try {
        trainer.run();
      } catch (RuntimeException e) {
        trainerFailure = e;
        progress.accept("the trainer stopped: " + e.getMessage());
      } finally {
        trainer.release();
      }
    }, "memgen-trainer");
    trainerThread.start();
    decoder = Decoder.load(s.model());
    tokenizer = TextTokenizer.load(s.model());
    String fingerprint = Checkpoint.open(s.model()).fingerprint();
    memory = ReasonerMemory.embedded(decoder, fingerprint, s.memory(), LoopBench.NAME,
        names -> DelimiterTable.build(tokenizer, decoder.config().vocabSize(), names));
    followers.addAll(AdapterFollower.forHosts(memory.hosts(), Optional.of(bootstrap),
        Optional.of(s.work().resolve("store").toString()), Optional.of(s.work().resolve("run").resolve("adapters").toString()),
        Duration.ofSeconds(30)));
    log = new SpooledPublisher(bootstrap, 10_000, s.work().resolve("run").resolve("reasoner-spool"));
    engine = new EngineCore(decoder, EngineCore.Limits.DEFAULT, "memgen-engine");
    reasoner = new Reasoner(engine, fingerprint, tokenizer, memory, LoopBench.NAME,
        MemGenInterleaver.TriggerMode.parse(s.triggerMode(), "trigger mode"), 0.5, log);
  }

  @Override
  public Answer generate(String question, int maxNewTokens) {
    Reasoner.Answer a = reasoner.chat(question, maxNewTokens);
    return new Answer(a.text(), a.trajectoryId(), a.weaverVersion(), a.inferenceInsertions(), a.consultations(),
        a.result().tokens().length, a.latencyMs(), false); // embedded memory: no service to lose
  }

  @Override
  public void feedback(String trajectoryId, double reward, String source) {
    log.offer(Topics.FEEDBACK, trajectoryId, Feedback.newBuilder().setTrajectoryId(trajectoryId).setReward(reward)
        .setSource(source).setCreatedAt(Timestamps.fromMillis(System.currentTimeMillis()))
        .setFeedbackId(UUID.randomUUID().toString()).setSchemaVersion(1).build());
  }

  @Override
  public long servingVersion() {
    return memory.hosts().get(AdapterComponent.WEAVER).adapters().stream()
        .filter(a -> a.current() && a.name().equals(LoopBench.NAME)).mapToLong(AdapterHost.Adapter::version).findFirst()
        .orElseThrow(() -> new IllegalStateException("no current weaver version"));
  }

  @Override
  public TrainerView trainer() {
    ContinualTrainer.Status st = status();
    return new TrainerView(st.counts().waiting(), !st.activity().equals("collecting"));
  }

  @Override
  public long trainerLag() {
    Map<TopicPartition, Long> committed = status().committed();
    long lag = 0;
    try (KafkaConsumer<String, byte[]> c = ExperienceLog.consumer(bootstrap, "memgen-bench-lag", null)) {
      Map<TopicPartition, Long> end = c.endOffsets(committed.keySet(), Duration.ofSeconds(30));
      for (Map.Entry<TopicPartition, Long> e : committed.entrySet()) {
        lag += Math.max(0, end.getOrDefault(e.getKey(), 0L) - Math.max(0, e.getValue()));
      }
    }
    return lag;
  }

  private ContinualTrainer.Status status() {
    if (trainerFailure != null) {
      throw new IllegalStateException("the trainer stopped: " + trainerFailure.getMessage(), trainerFailure);
    }
    return trainer.status();
  }

  @Override
  public boolean killTrainerMidWindow(Duration timeout) {
    throw new UnsupportedOperationException("killing the trainer needs it in a process of its own (--distributed)");
  }

  @Override
  public synchronized void close() {
    if (closed) {
      return;
    }
    closed = true;
    if (trainer != null) {
      trainer.close(); // asks its loop to stop after the poll or window under way
      try {
        trainerThread.join(Duration.ofMinutes(2).toMillis());
      } catch (InterruptedException e) {
        Thread.currentThread().interrupt();
      }
    }
    followers.forEach(AdapterFollower::close);
    if (engine != null) {
      engine.close();
    }
    if (log != null) {
      log.close();
    }
    if (memory != null) {
      memory.close();
    }
    if (tokenizer != null) {
      tokenizer.close();
    }
    if (decoder != null) {
      decoder.close();
    }
  }
}
