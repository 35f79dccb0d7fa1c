package dev.memgen.log;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.memgen.log.broker.KafkaBroker;
import dev.memgen.proto.v1.Feedback;
import dev.memgen.proto.v1.Trajectory;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.security.MessageDigest;
import java.time.Duration;
import java.util.Arrays;
import java.util.HexFormat;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.Random;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.ByteArraySerializer;
import org.apache.kafka.common.serialization.StringSerializer;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Dead letters on a real broker, as a hostile client would test them: records at the broker's size limit, values
 * that are empty, null or of the wrong type, a dead letter that cannot be confirmed, and a consumer that re-reads
 * after a restart. Each test uses a topic of its own (a dead-letter twin beside it), so the counts are exact.
 */
class DeadLettersTest {
  @TempDir static Path tmp;
  static KafkaBroker broker;

  @BeforeAll
  static void start() throws Exception {
    broker = KafkaBroker.start(tmp.resolve("kafka"), 0);
  }

  @AfterAll
  static void stop() {
    broker.close();
  }

  /**
   * The broker accepts values up to ~1 MiB (message.max.bytes 1048588); the producer refuses a request over 1 MiB. A
   * value of 1,048,400 bytes fits the broker, but its dead letter (the same bytes plus headers) does not fit the
   * producer: it goes out truncated, with its size and hash, confirmed. One of 1,048,000 bytes still fits whole.
   */
  @Test
  void aRecordAtTheBrokersLimitIsDeadLetteredTruncatedNotLost() throws Exception {
    String topic = topic("big");
    byte[] atLimit = junk(1_048_400, 1);
    byte[] belowLimit = junk(1_048_000, 2);
    try (KafkaProducer<String, byte[]> hostile = producer(Map.of(ProducerConfig.MAX_REQUEST_SIZE_CONFIG, "4194304"))) {
      hostile.send(new ProducerRecord<>(topic, "at-limit", atLimit)).get();
      hostile.send(new ProducerRecord<>(topic, "below-limit", belowLimit)).get();
    }
    List<ConsumerRecord<String, byte[]>> consumed = ExperienceLogTest.readAll(broker, topic);
    assertEquals(2, consumed.size());
    try (ExperienceLog log = new ExperienceLog(broker.bootstrapServers())) {
      DeadLetters.Sorted<Trajectory> sorted = log.deadLetters("test", Duration.ofSeconds(30))
          .decode(consumed, Records.TRAJECTORY, t -> "not wanted");
      assertEquals(0, sorted.good().size());
      assertEquals(List.of(true, false), sorted.dead().stream().map(DeadLetters.Letter::truncated).toList());
    }
    List<ConsumerRecord<String, byte[]>> dead = ExperienceLogTest.readAll(broker, Topics.deadLetter(topic));
    assertEquals(2, dead.size(), "both are dead-lettered, once each");
    ConsumerRecord<String, byte[]> truncated = dead.stream().filter(r -> "at-limit".equals(r.key())).findFirst().orElseThrow();
    assertEquals(DeadLetters.TRUNCATED_VALUE_BYTES, truncated.value().length);
    assertArrayEquals(Arrays.copyOf(atLimit, DeadLetters.TRUNCATED_VALUE_BYTES), truncated.value());
    assertEquals("1048400", header(truncated, DeadLetters.TRUNCATED_HEADER));
    assertEquals(HexFormat.of().formatHex(MessageDigest.getInstance("SHA-256").digest(atLimit)),
        header(truncated, DeadLetters.VALUE_SHA256_HEADER));
    assertEquals(topic + "-0@0", header(truncated, DeadLetters.SOURCE_HEADER));
    assertFalse(header(truncated, DeadLetters.REASON_HEADER).isEmpty());
    ConsumerRecord<String, byte[]> whole = dead.stream().filter(r -> "below-limit".equals(r.key())).findFirst().orElseThrow();
    assertArrayEquals(belowLimit, whole.value());
    assertNull(whole.headers().lastHeader(DeadLetters.TRUNCATED_HEADER));
  }

  /** Protobuf reads almost any bytes as almost any message: the reason must still say what the record is. */
  @Test
  void emptyNullAndWrongTypeRecordsGetReasonsThatSayWhatIsWrong() throws Exception {
    String topic = topic("types");
    Feedback feedback = Feedback.newBuilder().setTrajectoryId("t1").setReward(1).setSource("human").setFeedbackId("f1")
        .setSchemaVersion(1).build();
    try (KafkaProducer<String, byte[]> p = producer(Map.of())) {
      p.send(new ProducerRecord<>(topic, "empty", new byte[0])).get();
      p.send(new ProducerRecord<>(topic, "null", null)).get();
      p.send(new ProducerRecord<>(topic, "feedback", feedback.toByteArray())).get();
      // field 99 (varint) and field 100 (bytes): no MemGen record has them
      p.send(new ProducerRecord<>(topic, "unknown", new byte[] {(byte) 0x98, 0x06, 0x01, (byte) 0xa2, 0x06, 0x01, 0x41})).get();
    }
    try (ExperienceLog log = new ExperienceLog(broker.bootstrapServers())) {
      DeadLetters.Sorted<Trajectory> sorted = log.deadLetters("test", Duration.ofSeconds(30)).decode(
          ExperienceLogTest.readAll(broker, topic), Records.TRAJECTORY, t -> null);
      Map<String, String> reasons = new java.util.HashMap<>();
      sorted.dead().forEach(l -> reasons.put(l.record().key(), l.reason()));
      assertEquals("empty value (0 bytes): expected a memgen.v1.Trajectory", reasons.get("empty"));
      assertTrue(reasons.get("null").startsWith("no value (a null record"), reasons.get("null"));
      assertTrue(reasons.get("feedback").contains("is a memgen.v1.Feedback (schema_version 1), not a memgen.v1.Trajectory"),
          reasons.get("feedback"));
      assertTrue(reasons.get("unknown").contains("schema_version is missing") && reasons.get("unknown").contains("2 field(s)"),
          reasons.get("unknown"));
    }
    assertEquals(4, ExperienceLogTest.readAll(broker, Topics.deadLetter(topic)).size());
  }

  /**
   * A consumer that re-reads records after a crash recognises its own dead letters from before (from the dead-letter
   * positions it stored at its last commit point) and does not copy them again; another consumer's are not its own.
   */
  @Test
  void aRecordIsDeadLetteredOnceAcrossARestart() throws Exception {
    String topic = topic("restart");
    try (KafkaProducer<String, byte[]> p = producer(Map.of())) {
      for (int i = 0; i < 3; i++) {
        p.send(new ProducerRecord<>(topic, "junk" + i, new byte[] {(byte) 0xff, (byte) i})).get();
      }
    }
    List<ConsumerRecord<String, byte[]>> consumed = ExperienceLogTest.readAll(broker, topic);
    try (ExperienceLog log = new ExperienceLog(broker.bootstrapServers())) {
      DeadLetters first = log.deadLetters("trainer/a", Duration.ofSeconds(30));
      Map<TopicPartition, Long> committed = first.positions(broker.bootstrapServers(), List.of(topic));
      first.decode(consumed.subList(0, 2), Records.TRAJECTORY, t -> null); // then the consumer "crashes"

      DeadLetters restarted = log.deadLetters("trainer/a", Duration.ofSeconds(30));
      assertEquals(2, restarted.recover(broker.bootstrapServers(), List.of(topic), committed));
      DeadLetters.Sorted<Trajectory> again = restarted.decode(consumed, Records.TRAJECTORY, t -> null);
      assertEquals(List.of(true, true, false), again.dead().stream().map(DeadLetters.Letter::earlier).toList());
      assertEquals(3, ExperienceLogTest.readAll(broker, Topics.deadLetter(topic)).size(), "each record once");

      DeadLetters other = log.deadLetters("trainer/b", Duration.ofSeconds(30));
      assertEquals(0, other.recover(broker.bootstrapServers(), List.of(topic), Map.of()));
    }
  }

  /** A dead letter the broker never confirms stops the consumer (an exception naming the record) instead of vanishing. */
  @Test
  void aDeadLetterThatIsNotConfirmedIsAnErrorNotALoss() throws Exception {
    String topic = "memgen.test.unconfirmed"; // created without its dead-letter twin: a copy can never land
    try (org.apache.kafka.clients.admin.Admin admin = org.apache.kafka.clients.admin.Admin.create(
        Map.of("bootstrap.servers", broker.bootstrapServers()))) {
      admin.createTopics(List.of(new org.apache.kafka.clients.admin.NewTopic(topic, 1, (short) 1))).all().get();
    }
    try (KafkaProducer<String, byte[]> p = producer(Map.of())) {
      p.send(new ProducerRecord<>(topic, "junk", new byte[] {(byte) 0xff})).get();
    }
    try (KafkaProducer<String, byte[]> quick = ExperienceLog.reliableProducer(broker.bootstrapServers(), props(
        Map.of(ProducerConfig.MAX_BLOCK_MS_CONFIG, "1000", ProducerConfig.DELIVERY_TIMEOUT_MS_CONFIG, "2000",
            ProducerConfig.REQUEST_TIMEOUT_MS_CONFIG, "1000")))) {
      DeadLetters d = new DeadLetters(quick, "test", Duration.ofSeconds(10));
      DeadLetters.DeadLetterException e = assertThrows(DeadLetters.DeadLetterException.class,
          () -> d.decode(ExperienceLogTest.readAll(broker, topic), Records.TRAJECTORY, t -> null));
      assertTrue(e.getMessage().contains(topic + "-0@0"), e.getMessage());
    }
  }

  // ---- helpers

  static String topic(String name) throws Exception {
    String topic = "memgen.test." + name;
    try (org.apache.kafka.clients.admin.Admin admin = org.apache.kafka.clients.admin.Admin.create(
        Map.of("bootstrap.servers", broker.bootstrapServers()))) {
      admin.createTopics(List.of(new org.apache.kafka.clients.admin.NewTopic(topic, 1, (short) 1),
          new org.apache.kafka.clients.admin.NewTopic(Topics.deadLetter(topic), 1, (short) 1))).all().get();
    }
    return topic;
  }

  static KafkaProducer<String, byte[]> producer(Map<String, String> overrides) {
    Properties p = props(overrides);
    p.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, broker.bootstrapServers());
    return new KafkaProducer<>(p, new StringSerializer(), new ByteArraySerializer());
  }

  static Properties props(Map<String, String> overrides) {
    Properties p = new Properties();
    p.putAll(overrides);
    return p;
  }

  static byte[] junk(int size, long seed) {
    byte[] b = new byte[size];
    new Random(seed).nextBytes(b);
    b[0] = (byte) 0xff; // never a valid protobuf tag
    return b;
  }

  static String header(ConsumerRecord<String, byte[]> r, String name) {
    return new String(r.headers().lastHeader(name).value(), StandardCharsets.UTF_8);
  }

  static void assertArrayEquals(byte[] expected, byte[] actual) {
    org.junit.jupiter.api.Assertions.assertArrayEquals(expected, actual);
  }
}
