package dev.memgen.log;

import com.google.protobuf.Message;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.Set;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.Future;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;
import org.apache.kafka.common.serialization.ByteArraySerializer;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;

/**
 * The experience log's client side: creates MemGen's topics (each with its dead-letter topic), publishes protobuf
 * records with an idempotent producer ({@code acks=all}: a record is acknowledged only once the broker has it, and a
 * retried send is never written twice), and hands out {@link DeadLetters}, which decode consumed records and route the
 * ones that do not decode or validate to the dead-letter topic, so one bad record never stalls a consumer.
 */
public final class ExperienceLog implements AutoCloseable {
  private final String bootstrapServers;
  private final KafkaProducer<String, byte[]> producer;

  public ExperienceLog(String bootstrapServers) {
    this.bootstrapServers = bootstrapServers;
    producer = reliableProducer(bootstrapServers, new Properties());
  }

  /**
   * A producer that loses and duplicates nothing the broker acknowledged: {@code acks=all}, idempotent. Every
   * MemGen producer is one of these; {@code overrides} adds timeouts and the like.
   */
  public static KafkaProducer<String, byte[]> reliableProducer(String bootstrapServers, Properties overrides) {
    Properties p = KafkaClients.properties(Map.of());
    p.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrapServers);
    p.put(ProducerConfig.ACKS_CONFIG, "all");
    p.put(ProducerConfig.ENABLE_IDEMPOTENCE_CONFIG, "true");
    p.put(ProducerConfig.LINGER_MS_CONFIG, "5");
    p.putAll(overrides);
    return new KafkaProducer<>(p, new StringSerializer(), new ByteArraySerializer());
  }

  /**
   * A consumer of raw records for manual assignment (no group rebalances to wait for), committing nothing by itself
   * and reading only committed records; {@code groupId} (may be null) names the group its explicit commits go to.
   */
  public static KafkaConsumer<String, byte[]> consumer(String bootstrapServers, String clientId, String groupId) {
    return consumer(bootstrapServers, clientId, groupId, new Properties());
  }

  /** {@link #consumer(String, String, String)} with more settings (group membership: a trainer group's lease). */
  public static KafkaConsumer<String, byte[]> consumer(String bootstrapServers, String clientId, String groupId,
      Properties overrides) {
    Properties p = KafkaClients.properties(Map.of());
    p.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrapServers);
    p.put(ConsumerConfig.CLIENT_ID_CONFIG, clientId);
    if (groupId != null) {
      p.put(ConsumerConfig.GROUP_ID_CONFIG, groupId);
    }
    p.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "false");
    p.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
    p.put(ConsumerConfig.ISOLATION_LEVEL_CONFIG, "read_committed");
    // Topics come from ensureTopics with their settings; a consumer must never create one with broker defaults
    // (an adapters topic without compaction).
    p.put(ConsumerConfig.ALLOW_AUTO_CREATE_TOPICS_CONFIG, "false");
    p.putAll(overrides);
    return new KafkaConsumer<>(p, new StringDeserializer(), new ByteArrayDeserializer());
  }

  /**
   * The records at {@code sources} ({@code topic-partition@offset}, as {@link DeadLetters#source} writes them), by
   * source; one that is no longer in the log (retention) or past its partition's end is absent. Reads each partition
   * once, from its lowest wanted offset.
   */
  public static Map<String, ConsumerRecord<String, byte[]>> readAt(String bootstrapServers, java.util.Collection<String> sources,
      String clientId, Duration timeout) throws java.io.IOException {
    Map<org.apache.kafka.common.TopicPartition, java.util.TreeSet<Long>> wanted = new java.util.HashMap<>();
    for (String source : sources) {
      Map.Entry<org.apache.kafka.common.TopicPartition, Long> at = DeadLetters.parseSource(source);
      wanted.computeIfAbsent(at.getKey(), k -> new java.util.TreeSet<>()).add(at.getValue());
    }
    Map<String, ConsumerRecord<String, byte[]>> found = new java.util.TreeMap<>();
    try (KafkaConsumer<String, byte[]> c = consumer(bootstrapServers, clientId, null)) {
      for (Map.Entry<org.apache.kafka.common.TopicPartition, java.util.TreeSet<Long>> e : wanted.entrySet()) {
        org.apache.kafka.common.TopicPartition tp = e.getKey();
        c.assign(List.of(tp));
        long end = c.endOffsets(List.of(tp), timeout).get(tp);
        long last = e.getValue().last();
        c.seek(tp, e.getValue().first());
        long deadline = System.nanoTime() + timeout.toNanos();
        while (c.position(tp, timeout) <= last && c.position(tp, timeout) < end) {
          if (System.nanoTime() > deadline) {
            throw new java.io.IOException("reading " + tp + " from " + e.getValue().first() + " to " + last + " took over "
                + timeout);
          }
          for (ConsumerRecord<String, byte[]> r : c.poll(Duration.ofMillis(200))) {
            if (e.getValue().contains(r.offset())) {
              found.put(DeadLetters.source(r), r);
            }
          }
        }
      }
    }
    return found;
  }

  public String bootstrapServers() {
    return bootstrapServers;
  }

  /**
   * Creates every MemGen topic and its dead-letter topic that does not exist yet, with the settings of
   * {@link Topics#settings}.
   */
  public void ensureTopics(int partitions) throws InterruptedException, ExecutionException {
    try (Admin admin = Admin.create(KafkaClients.properties(Map.of(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrapServers)))) {
      Set<String> existing = admin.listTopics().names().get();
      List<NewTopic> missing = new ArrayList<>();
      for (String topic : List.of(Topics.TRAJECTORIES, Topics.FEEDBACK, Topics.ADAPTERS)) {
        int n = topic.equals(Topics.ADAPTERS) ? 1 : partitions; // one partition: a total order of adapter versions
        for (String t : List.of(topic, Topics.deadLetter(topic))) {
          if (!existing.contains(t)) {
            missing.add(new NewTopic(t, n, (short) 1).configs(Topics.settings(t.equals(topic) ? topic : "")));
          }
        }
      }
      if (!missing.isEmpty()) {
        admin.createTopics(missing).all().get();
      }
    }
  }

  /** Publishes a record; the future completes when the broker has acknowledged it. */
  public Future<RecordMetadata> publish(String topic, String key, Message record) {
    return producer.send(new ProducerRecord<>(topic, key, record.toByteArray()));
  }

  /**
   * The dead letters of the consumer {@code by} (e.g. {@code trainer/default}), sent through this log's producer, each
   * confirmed within {@code timeout}.
   */
  public DeadLetters deadLetters(String by, Duration timeout) {
    return new DeadLetters(producer, by, timeout);
  }

  public void flush() {
    producer.flush();
  }

  /** A record that decoded and validated, with where it came from. */
  public record Decoded<T>(ConsumerRecord<String, byte[]> record, T value) {}

  @Override
  public void close() {
    producer.close(Duration.ofSeconds(10));
  }
}
