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
 * A broker whose listener takes SASL logins over TLS (SASL_SSL), reached through the client settings file
 * ({@link KafkaClients}): with the right login and the broker's certificate trusted, the experience log creates its
 * topics, publishes and reads back; a wrong password fails with the broker's authentication error; a client that
 * trusts another certificate fails the TLS handshake; a settings file that is missing is named in the error. The
 * broker's key and certificate are made by the JDK's keytool.
 */
class KafkaSecurityTest {
  @TempDir static Path tmp;
  static KafkaBroker broker;

  @BeforeAll
  static void start() throws Exception {
    Path keyStore = keyPair("broker");
    keyPair("stranger");
    broker = KafkaBroker.start(tmp.resolve("kafka"), 0, new KafkaBroker.Secured(Map.of("memgen", "s3cret"), keyStore, "changeit"));
  }

  /** A self-signed key pair for localhost in NAME.p12 and its certificate in NAME.crt (PEM), by keytool. */
  private static Path keyPair(String name) throws Exception {
    String keytool = Path.of(System.getProperty("java.home"), "bin", "keytool").toString();
    Path store = tmp.resolve(name + ".p12");
    run(keytool, "-genkeypair", "-alias", name, "-keyalg", "EC", "-groupname", "secp256r1", "-dname", "CN=localhost",
        "-ext", "SAN=dns:localhost,ip:127.0.0.1", "-validity", "2", "-keystore", store.toString(), "-storetype", "PKCS12",
        "-storepass", "changeit", "-keypass", "changeit");
    run(keytool, "-exportcert", "-rfc", "-alias", name, "-keystore", store.toString(), "-storepass", "changeit", "-file",
        tmp.resolve(name + ".crt").toString());
    return store;
  }

  private static void run(String... command) throws Exception {
    Process p = new ProcessBuilder(command).redirectErrorStream(true).start();
    String out = new String(p.getInputStream().readAllBytes());
    assertEquals(0, p.waitFor(), String.join(" ", command) + ": " + out);
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
    login(password, "broker");
  }

  /** Client settings: SASL/PLAIN as memgen with {@code password}, over TLS trusting {@code trusted}'s certificate. */
  private static void login(String password, String trusted) throws Exception {
    Path file = tmp.resolve("client-" + password + "-" + trusted + ".properties");
    Files.writeString(file, String.join("\n", "security.protocol=SASL_SSL", "sasl.mechanism=PLAIN",
        "sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required username=\"memgen\" "
            + "password=\"" + password + "\";",
        "ssl.truststore.type=PEM", "ssl.truststore.location=" + tmp.resolve(trusted + ".crt"), ""));
    System.setProperty(KafkaClients.PROPERTY, file.toString());
  }

  @Test
  void theRightLoginPublishesAndReads() throws Exception {
    login("s3cret");
    try (ExperienceLog log = new ExperienceLog(broker.securedBootstrapServers())) {
      log.ensureTopics(1);
      log.publish(Topics.TRAJECTORIES, "s", Trajectory.newBuilder().setTrajectoryId("over-sasl").build())
          .get(30, TimeUnit.SECONDS);
    }
    try (KafkaConsumer<String, byte[]> c = ExperienceLog.consumer(broker.securedBootstrapServers(), "test", null)) {
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
    Throwable cause = whyASendFails();
    assertTrue(cause instanceof SaslAuthenticationException, String.valueOf(cause));
  }

  @Test
  void aClientThatTrustsAnotherCertificateFailsTheHandshake() throws Exception {
    login("s3cret", "stranger");
    Throwable cause = whyASendFails();
    assertTrue(cause instanceof org.apache.kafka.common.errors.SslAuthenticationException, String.valueOf(cause));
  }

  /** What a producer with the current client settings reports when its first send to the secured listener fails. */
  private static Throwable whyASendFails() {
    Properties fast = new Properties();
    fast.put(ProducerConfig.MAX_BLOCK_MS_CONFIG, "20000");
    try (var producer = ExperienceLog.reliableProducer(broker.securedBootstrapServers(), fast)) {
      Throwable e = assertThrows(Exception.class, () -> producer.send(
          new org.apache.kafka.clients.producer.ProducerRecord<>(Topics.FEEDBACK, "k", new byte[0])).get(30, TimeUnit.SECONDS));
      return e instanceof ExecutionException ? e.getCause() : e;
    }
  }

  @Test
  void aMissingSettingsFileIsNamed() {
    System.setProperty(KafkaClients.PROPERTY, tmp.resolve("nope.properties").toString());
    IllegalStateException e = assertThrows(IllegalStateException.class,
        () -> ExperienceLog.consumer(broker.securedBootstrapServers(), "test", null));
    assertTrue(e.getMessage().startsWith("the Kafka client settings " + tmp.resolve("nope.properties")), e.getMessage());
  }
}
