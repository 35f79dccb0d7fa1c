package dev.memgen.log;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.memgen.log.broker.KafkaBroker;
import dev.memgen.proto.v1.Trajectory;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.Set;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.Config;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.config.ConfigResource;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;
import org.apache.kafka.common.serialization.ByteArraySerializer;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** Topics, the idempotent publisher and dead letters, on a real broker. */
class ExperienceLogTest {
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

  @Test
  void topicsGetTheirSettingsAndDeadLetterTopics() throws Exception {
    try (ExperienceLog log = new ExperienceLog(broker.bootstrapServers())) {
      log.ensureTopics(2);
      log.ensureTopics(2); // idempotent
    }
    try (Admin admin = Admin.create(Map.of(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, broker.bootstrapServers()))) {
      Set<String> names = admin.listTopics().names().get();
      for (String t : List.of(Topics.TRAJECTORIES, Topics.FEEDBACK, Topics.ADAPTERS)) {
        assertTrue(names.contains(t) && names.contains(Topics.deadLetter(t)), names.toString());
      }
      ConfigResource adapters = new ConfigResource(ConfigResource.Type.TOPIC, Topics.ADAPTERS);
      Config c = admin.describeConfigs(List.of(adapters)).all().get().get(adapters);
      assertEquals("compact", c.get("cleanup.policy").value());
      assertEquals(2, admin.describeTopics(List.of(Topics.TRAJECTORIES)).allTopicNames().get()
          .get(Topics.TRAJECTORIES).partitions().size());
    }
  }

  /** Records that do not decode or validate go to the dead-letter topic with the reason; the rest come through. */
  @Test
  void badRecordsLandInTheDeadLetterTopicAndDoNotStallTheConsumer() throws Exception {
    String topic = Topics.TRAJECTORIES;
    try (ExperienceLog log = new ExperienceLog(broker.bootstrapServers())) {
      log.ensureTopics(1);
      for (int i = 0; i < 5; i++) {
        log.publish(topic, "s" + i, Trajectory.newBuilder().setTrajectoryId("t" + i).setSessionId("s" + i).setSchemaVersion(1)
            .build()).get();
      }
      try (KafkaProducer<String, byte[]> raw = rawProducer()) {
        raw.send(new ProducerRecord<>(topic, "junk", new byte[] {(byte) 0xff, 0x01, 0x02})).get();
      }
      log.publish(topic, "s5", Trajectory.newBuilder().setSessionId("s5").setSchemaVersion(1).build()).get(); // no id
      log.publish(topic, "s6", Trajectory.newBuilder().setTrajectoryId("t6").setSessionId("s6").setSchemaVersion(1).build()).get();

      List<ConsumerRecord<String, byte[]>> consumed = readAll(topic);
      List<ExperienceLog.Decoded<Trajectory>> good = log.deadLetters("test", Duration.ofSeconds(30)).decode(consumed,
          Records.TRAJECTORY, t -> t.getTrajectoryId().isEmpty() ? "trajectory_id is empty" : null).good();
      assertEquals(List.of("t0", "t1", "t2", "t3", "t4", "t6"),
          good.stream().map(d -> d.value().getTrajectoryId()).sorted().toList());
      assertEquals(8, consumed.size(), "every record was read: none stalls the consumer");

      List<ConsumerRecord<String, byte[]>> dead = readAll(Topics.deadLetter(topic));
      List<String> reasons = dead.stream().map(r -> header(r, DeadLetters.REASON_HEADER)).sorted().toList();
      assertEquals(2, reasons.size(), reasons.toString());
      assertTrue(reasons.get(0).contains("not a valid memgen.v1.Trajectory"), reasons.toString());
      assertEquals("trajectory_id is empty", reasons.get(1));
      ConsumerRecord<String, byte[]> junk = dead.stream().filter(r -> "junk".equals(r.key())).findFirst().orElseThrow();
      assertTrue(header(junk, DeadLetters.SOURCE_HEADER).matches(java.util.regex.Pattern.quote(topic) + "-\\d+@\\d+"),
          header(junk, DeadLetters.SOURCE_HEADER));
      assertEquals(3, junk.value().length, "the dead letter keeps the record's bytes");
      assertEquals("test", header(junk, DeadLetters.BY_HEADER));
    }
  }

  static String header(ConsumerRecord<String, byte[]> r, String name) {
    return new String(r.headers().lastHeader(name).value(), StandardCharsets.UTF_8);
  }

  static KafkaProducer<String, byte[]> rawProducer() {
    Properties p = new Properties();
    p.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, broker.bootstrapServers());
    return new KafkaProducer<>(p, new StringSerializer(), new ByteArraySerializer());
  }

  static List<ConsumerRecord<String, byte[]>> readAll(String topic) {
    return readAll(broker, topic);
  }

  static List<ConsumerRecord<String, byte[]>> readAll(KafkaBroker broker, String topic) {
    Properties p = new Properties();
    p.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, broker.bootstrapServers());
    p.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "false");
    List<ConsumerRecord<String, byte[]>> out = new ArrayList<>();
    try (KafkaConsumer<String, byte[]> c = new KafkaConsumer<>(p, new StringDeserializer(), new ByteArrayDeserializer())) {
      List<TopicPartition> parts = c.partitionsFor(topic).stream().map(i -> new TopicPartition(topic, i.partition())).toList();
      c.assign(parts);
      c.seekToBeginning(parts);
      Map<TopicPartition, Long> end = c.endOffsets(parts, Duration.ofSeconds(30));
      long deadline = System.nanoTime() + Duration.ofSeconds(30).toNanos();
      while (parts.stream().anyMatch(tp -> c.position(tp) < end.get(tp)) && System.nanoTime() < deadline) {
        c.poll(Duration.ofMillis(500)).forEach(out::add);
      }
    }
    return out;
  }
}
