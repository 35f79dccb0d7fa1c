package dev.memgen.log;

import java.io.IOException;
import java.io.Reader;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Map;
import java.util.Properties;

/**
 * The settings every MemGen Kafka client (producers, consumers, admin; services and CLI alike) starts from: a Kafka
 * client properties file named by the system property {@code memgen.kafka.config} or the environment variable
 * {@code MEMGEN_KAFKA_CONFIG} — the same file Kafka's own tools take with {@code --command-config}. That is how a
 * deployment reaches a broker over TLS or SASL ({@code security.protocol}, {@code ssl.*}, {@code sasl.*}). MemGen's
 * own settings (bootstrap servers, acks, idempotence, isolation) are applied over the file's.
 */
public final class KafkaClients {
  public static final String PROPERTY = "memgen.kafka.config";
  public static final String ENV = "MEMGEN_KAFKA_CONFIG";
  private static volatile Properties loaded;
  private static volatile String loadedFrom;

  private KafkaClients() {}

  /** A copy of the file's settings (empty without one), then {@code mine} over them. */
  public static Properties properties(Map<String, ?> mine) {
    Properties p = new Properties();
    p.putAll(settings());
    p.putAll(mine);
    return p;
  }

  /** The file's settings; read once per file name. A file that cannot be read fails every client, naming it. */
  static Properties settings() {
    String name = System.getProperty(PROPERTY, System.getenv(ENV));
    if (name == null || name.isBlank()) {
      return new Properties();
    }
    if (!name.equals(loadedFrom)) {
      Properties p = new Properties();
      try (Reader r = Files.newBufferedReader(Path.of(name), StandardCharsets.UTF_8)) {
        p.load(r);
      } catch (IOException | IllegalArgumentException e) {
        throw new IllegalStateException("the Kafka client settings " + name + " (" + PROPERTY + " / " + ENV
            + ") cannot be read: " + e.getMessage(), e);
      }
      loaded = p;
      loadedFrom = name;
    }
    return loaded;
  }
}
