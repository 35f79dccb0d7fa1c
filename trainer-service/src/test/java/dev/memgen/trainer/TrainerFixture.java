package dev.memgen.trainer;

import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.memgen.log.DeadLetters;
import dev.memgen.log.ExperienceLog;
import dev.memgen.log.Topics;
import dev.memgen.log.broker.KafkaBroker;
import dev.memgen.log.store.AdapterStore;
import dev.memgen.model.ModelConfig;
import dev.memgen.model.checkpoint.Checkpoint;
import dev.memgen.model.checkpoint.DType;
import dev.memgen.model.checkpoint.Directories;
import dev.memgen.model.checkpoint.TinyCheckpoint;
import dev.memgen.model.data.ArithmeticTasks;
import dev.memgen.model.eval.Evaluator;
import dev.memgen.model.memory.LoraConfig;
import dev.memgen.model.memory.Memory;
import dev.memgen.model.memory.MemoryManifest;
import dev.memgen.model.text.ChatTemplate;
import dev.memgen.model.text.DelimiterTable;
import dev.memgen.model.text.TextTokenizer;
import dev.memgen.model.train.TokenizedExample;
import dev.memgen.proto.v1.Feedback;
import dev.memgen.proto.v1.FinishReason;
import dev.memgen.proto.v1.Trajectory;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.MessageDigest;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.UUID;
import java.util.concurrent.TimeUnit;
import java.util.function.BooleanSupplier;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.header.Header;

/**
 * What the trainer's tests share: one real broker per test JVM (started on first use, stopped at exit) with MemGen's
 * topics, a tiny random checkpoint and a fresh memory for it, and helpers that write traffic as a reasoner (or a
 * hostile client) would and read back what the trainer did. Each test uses an adapter name of its own, so that its
 * trainer's counts and dead letters (told apart by their {@code memgen.dlq.by} header) are its own.
 */
final class TrainerFixture {
  static final KafkaBroker broker;
  static final Path model;
  static final Path memory;
  // The same shapes with every ASCII character a delimiter: a random model's few output tokens reach the trigger.
  static final Path everyCharacterMemory;
  static final String fingerprint;

  static {
    try {
      Path dir = Files.createTempDirectory("memgen-trainer-tests");
      broker = KafkaBroker.start(dir.resolve("kafka"), 0);
      Runtime.getRuntime().addShutdownHook(new Thread(() -> {
        broker.stop();
        try {
          Directories.deleteRecursively(dir);
        } catch (java.io.IOException e) {
          // a temporary directory: the OS cleans up
        }
      }));
      model = dir.resolve("model");
      memory = dir.resolve("memory");
      ModelConfig c = TinyCheckpoint.tiny("qwen2");
      TinyCheckpoint.write(model, c, DType.F32, 1, 11);
      fingerprint = Checkpoint.open(model).fingerprint();
      Memory.init(memory, c, new MemoryManifest(1, fingerprint, c.hiddenSize(), c.numLayers(), 2, 2, "embeddings",
          LoraConfig.REFERENCE, LoraConfig.REFERENCE, DelimiterTable.DEFAULT, 2), 3);
      everyCharacterMemory = dir.resolve("memory-every-character");
      List<String> every = new ArrayList<>();
      for (char ch = 1; ch < 128; ch++) {
        every.add(String.valueOf(ch));
      }
      Memory.init(everyCharacterMemory, c, new MemoryManifest(1, fingerprint, c.hiddenSize(), c.numLayers(), 2, 2,
          "embeddings", LoraConfig.REFERENCE, LoraConfig.REFERENCE, every, 2), 3);
      try (ExperienceLog log = new ExperienceLog(broker.bootstrapServers())) {
        log.ensureTopics(2);
      }
    } catch (Exception e) {
      throw new ExceptionInInitializerError(e);
    }
  }

  private TrainerFixture() {}

  static String name(String prefix) {
    return prefix + "-" + UUID.randomUUID().toString().substring(0, 8);
  }

  /** Settings for a test's trainer: its own store and work directory under {@code tmp}, adapter {@code name}. */
  static ContinualTrainer.Settings settings(Path tmp, String name, int window, double tolerance, Optional<Verifier> verifier) {
    return settings(tmp, name, window, tolerance, verifier, memory);
  }

  /** The same, starting from the memory {@code initial}. */
  static ContinualTrainer.Settings settings(Path tmp, String name, int window, double tolerance, Optional<Verifier> verifier,
      Path initial) {
    List<Evaluator.Problem> heldOut = ArithmeticTasks.generate(ArithmeticTasks.Domain.B, 4, 1, 99).stream()
        .map(e -> new Evaluator.Problem(ChatTemplate.userPrompt(e.prompt()), e.boxed())).toList();
    return new ContinualTrainer.Settings(broker.bootstrapServers(), name, model, initial, tmp.resolve("store"),
        tmp.resolve("work"), heldOut, tolerance, window, Duration.ofHours(1), Duration.ZERO, 1.0, 4, 4, 1e-2, 0, verifier, 6, 2, 0,
        ContinualTrainer.Intake.DEFAULT);
  }

  /** Trajectories of {@code n} correct arithmetic answers (so the verifier rewards them), as a reasoner records them. */
  static List<String> publishTrajectories(ExperienceLog log, TextTokenizer tok, String name, int n, long seed) throws Exception {
    return publishTrajectories(log, tok, name, n, seed, false);
  }

  /** {@code now}: stamped as just finished (created_at), as the reasoner does. */
  static List<String> publishTrajectories(ExperienceLog log, TextTokenizer tok, String name, int n, long seed, boolean now)
      throws Exception {
    List<String> ids = new ArrayList<>();
    for (Trajectory t : trajectories(tok, name, n, seed, now)) {
      log.publish(Topics.TRAJECTORIES, t.getSessionId(), t).get();
      ids.add(t.getTrajectoryId());
    }
    return ids;
  }

  /** {@code n} trajectories of correct answers to domain-B problems of {@code seed}, not yet published. */
  static List<Trajectory> trajectories(TextTokenizer tok, String name, int n, long seed, boolean now) {
    List<Trajectory> out = new ArrayList<>();
    for (ArithmeticTasks.Example e : ArithmeticTasks.generate(ArithmeticTasks.Domain.B, n, 2, seed)) {
      TokenizedExample x = TokenizedExample.of(tok, ChatTemplate.userPrompt(e.prompt()), e.answer());
      String id = UUID.randomUUID().toString();
      Trajectory.Builder t = Trajectory.newBuilder().setTrajectoryId(id).setSessionId("s-" + id).setAdapterName(name)
          .setWeaverVersion(1).setBaseFingerprint(fingerprint).setFinishReason(FinishReason.STOP_TOKEN).setSchemaVersion(1)
          .setMemoryEnabled(true);
      if (now) {
        t.setCreatedAt(com.google.protobuf.Timestamp.newBuilder().setSeconds(java.time.Instant.now().getEpochSecond()));
      }
      for (int p : x.prompt()) {
        t.addPromptTokenIds(p);
      }
      for (int a : x.answer()) {
        t.addCompletionTokenIds(a);
      }
      out.add(t.build());
    }
    return out;
  }

  static void feedback(ExperienceLog log, String trajectoryId, double reward) throws Exception {
    log.publish(Topics.FEEDBACK, trajectoryId, Feedback.newBuilder().setTrajectoryId(trajectoryId).setReward(reward)
        .setSource("human").setFeedbackId(UUID.randomUUID().toString()).setSchemaVersion(1).build()).get();
  }

  /** A value that is not a protobuf at all, written by a foreign client. */
  static String garbage(String topic) throws Exception {
    return raw(topic, "bad", "not a protobuf \u0000\u00ff".getBytes(StandardCharsets.ISO_8859_1));
  }

  /**
   * Writes {@code value} as a foreign client would (up to 4 MiB per request; the broker takes up to ~1 MiB); returns
   * where it landed, as a dead letter's source header says it ({@code topic-partition@offset}).
   */
  static String raw(String topic, String key, byte[] value) throws Exception {
    java.util.Properties p = new java.util.Properties();
    p.put("max.request.size", "4194304");
    try (var producer = ExperienceLog.reliableProducer(broker.bootstrapServers(), p)) {
      var m = producer.send(new ProducerRecord<>(topic, key, value)).get();
      return m.topic() + "-" + m.partition() + "@" + m.offset();
    }
  }

  /** Publishes a trajectory record as the reasoner does; returns its source ({@code topic-partition@offset}). */
  static String publish(ExperienceLog log, Trajectory t) throws Exception {
    var m = log.publish(Topics.TRAJECTORIES, t.getSessionId(), t).get();
    return m.topic() + "-" + m.partition() + "@" + m.offset();
  }

  static Map<TopicPartition, Long> endOffsets() {
    try (KafkaConsumer<String, byte[]> c = ExperienceLog.consumer(broker.bootstrapServers(), "check", null)) {
      List<TopicPartition> parts = c.partitionsFor(Topics.TRAJECTORIES).stream()
          .map(p -> new TopicPartition(p.topic(), p.partition())).toList();
      return c.endOffsets(parts, Duration.ofSeconds(10));
    }
  }

  /** Ids of the valid trajectories at offsets [from, to) of {@code tp}. */
  static List<String> trajectoryIds(TopicPartition tp, long from, long to) {
    List<String> out = new ArrayList<>();
    for (ConsumerRecord<String, byte[]> r : read(tp, from, to)) {
      try {
        out.add(Trajectory.parseFrom(r.value()).getTrajectoryId());
      } catch (com.google.protobuf.InvalidProtocolBufferException e) {
        // garbage records are accounted for by range, not by id
      }
    }
    return out;
  }

  static List<ConsumerRecord<String, byte[]>> read(TopicPartition tp, long from, long to) {
    List<ConsumerRecord<String, byte[]>> out = new ArrayList<>();
    try (KafkaConsumer<String, byte[]> c = ExperienceLog.consumer(broker.bootstrapServers(), "check", null)) {
      c.assign(List.of(tp));
      c.seek(tp, from);
      while (c.position(tp) < to) {
        for (ConsumerRecord<String, byte[]> r : c.poll(Duration.ofMillis(500))) {
          if (r.offset() < to) {
            out.add(r);
          }
        }
      }
    }
    return out;
  }

  /** Every record of {@code topic} now. */
  static List<ConsumerRecord<String, byte[]>> readAll(String topic) {
    List<ConsumerRecord<String, byte[]>> out = new ArrayList<>();
    try (KafkaConsumer<String, byte[]> c = ExperienceLog.consumer(broker.bootstrapServers(), "check", null)) {
      List<TopicPartition> parts = c.partitionsFor(topic).stream().map(p -> new TopicPartition(p.topic(), p.partition())).toList();
      Map<TopicPartition, Long> end = c.endOffsets(parts, Duration.ofSeconds(10));
      for (TopicPartition tp : parts) {
        out.addAll(read(tp, 0, end.get(tp)));
      }
    }
    return out;
  }

  /** The dead letters the trainer of adapter {@code name} sent to {@code topic}'s dead-letter topic. */
  static List<ConsumerRecord<String, byte[]>> deadLettersBy(String name, String topic) {
    return readAll(Topics.deadLetter(topic)).stream().filter(r -> ("trainer/" + name).equals(header(r, DeadLetters.BY_HEADER)))
        .toList();
  }

  static String header(ConsumerRecord<String, byte[]> r, String key) {
    Header h = r.headers().lastHeader(key);
    return h == null ? null : new String(h.value(), StandardCharsets.UTF_8);
  }

  static long countRecords(String topic) {
    try (KafkaConsumer<String, byte[]> c = ExperienceLog.consumer(broker.bootstrapServers(), "check", null)) {
      List<TopicPartition> parts = c.partitionsFor(topic).stream().map(p -> new TopicPartition(p.topic(), p.partition())).toList();
      return c.endOffsets(parts, Duration.ofSeconds(10)).values().stream().mapToLong(Long::longValue).sum();
    }
  }

  static int versions(AdapterStore store, String name) {
    try {
      return store.versions(name).size();
    } catch (java.io.IOException e) {
      return -1;
    }
  }

  static void await(BooleanSupplier condition, String what) throws InterruptedException {
    long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(180);
    while (!condition.getAsBoolean()) {
      assertTrue(System.nanoTime() < deadline, "timed out waiting: " + what);
      Thread.sleep(100);
    }
  }

  static byte[] digest(Path dir) throws Exception {
    MessageDigest sha = MessageDigest.getInstance("SHA-256");
    try (var files = Files.list(dir)) {
      for (Path f : files.sorted().toList()) {
        sha.update(Files.readAllBytes(f));
      }
    }
    return sha.digest();
  }

  /** A trainer on its own thread, stopped and released at close. */
  static final class Running implements AutoCloseable {
    final ContinualTrainer trainer;
    final Thread thread;
    volatile Throwable failure;

    Running(ContinualTrainer trainer) {
      this.trainer = trainer;
      thread = new Thread(() -> {
        try {
          trainer.run();
        } catch (Throwable t) {
          failure = t;
        }
      });
      thread.start();
    }

    @Override
    public void close() throws Exception {
      trainer.close();
      thread.join(60_000);
      trainer.release();
      assertFalse(thread.isAlive());
      if (failure != null) {
        throw new AssertionError("the trainer failed", failure);
      }
      assertNotNull(trainer.status());
    }
  }
}
