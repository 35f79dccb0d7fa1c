package dev.memgen.log;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.memgen.log.broker.KafkaBroker;
import dev.memgen.proto.v1.Trajectory;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.errors.SaslAuthenticationException;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * A broker that takes SASL logins, reached through the client settings file ({@link KafkaClients}): with the right
 * login the experience log creates its topics, publishes and reads back; with a wrong password the client fails
 * with the broker's authentication error; a settings file that is missing is named in the error.
 */
class KafkaSecurityTest {
  @TempDir static Path tmp;
  static KafkaBroker broker;

  @BeforeAll
  static void start() throws Exception {
    broker = KafkaBroker.start(tmp.resolve("kafka"), 0, Map.of("memgen", "s3cret"));
  }

  @AfterAll
  static void stop() {
    broker.close();
  }

  @AfterEach
  void plain() {
    System.clearProperty(KafkaClients.PROPERTY);
  }

  private static void login(String password) throws Exception {
    Path file = tmp.resolve("client-" + password + ".properties");
    Files.writeString(file, String.join("\n", "security.protocol=SASL_PLAINTEXT", "sasl.mechanism=PLAIN",
        "sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required username=\"memgen\" "
            + "password=\"" + password + "\";", ""));
    System.setProperty(KafkaClients.PROPERTY, file.toString());
  }

  @Test
  void theRightLoginPublishesAndReads() throws Exception {
    login("s3cret");
    try (ExperienceLog log = new ExperienceLog(broker.saslBootstrapServers())) {
      log.ensureTopics(1);
      log.publish(Topics.TRAJECTORIES, "s", Trajectory.newBuilder().setTrajectoryId("over-sasl").build())
          .get(30, TimeUnit.SECONDS);
    }
    try (KafkaConsumer<String, byte[]> c = ExperienceLog.consumer(broker.saslBootstrapServers(), "test", null)) {
      TopicPartition p = new TopicPartition(Topics.TRAJECTORIES, 0);
      c.assign(List.of(p));
      c.seekToBeginning(List.of(p));
      List<ConsumerRecord<String, byte[]>> got = new java.util.ArrayList<>();
      long end = System.nanoTime() + TimeUnit.SECONDS.toNanos(30);
      while (got.isEmpty() && System.nanoTime() < end) {
        c.poll(Duration.ofMillis(500)).forEach(got::add);
      }
      assertEquals("over-sasl", Trajectory.parseFrom(got.get(0).value()).getTrajectoryId());
    }
  }

  @Test
  void aWrongPasswordIsRefusedByTheBroker() throws Exception {
    login("wrong");
    Properties fast = new Properties();
    fast.put(ProducerConfig.MAX_BLOCK_MS_CONFIG, "20000");
    try (var producer = ExperienceLog.reliableProducer(broker.saslBootstrapServers(), fast)) {
      Throwable e = assertThrows(Exception.class, () -> producer.send(
          new org.apache.kafka.clients.producer.ProducerRecord<>(Topics.FEEDBACK, "k", new byte[0])).get(30, TimeUnit.SECONDS));
      Throwable cause = e instanceof ExecutionException ? e.getCause() : e;
      assertTrue(cause instanceof SaslAuthenticationException, String.valueOf(cause));
    }
  }

  @Test
  void aMissingSettingsFileIsNamed() {
    System.setProperty(KafkaClients.PROPERTY, tmp.resolve("nope.properties").toString());
    IllegalStateException e = assertThrows(IllegalStateException.class,
        () -> ExperienceLog.consumer(broker.saslBootstrapServers(), "test", null));
    assertTrue(e.getMessage().startsWith("the Kafka client settings " + tmp.resolve("nope.properties")), e.getMessage());
  }
}
