package dev.memgen.cli;

import com.fasterxml.jackson.databind.node.ObjectNode;
import com.google.protobuf.Message;
import com.google.protobuf.util.JsonFormat;
import dev.memgen.log.ExperienceLog;
import dev.memgen.log.ProtoSerde;
import dev.memgen.log.Records;
import dev.memgen.log.Topics;
import dev.memgen.log.broker.KafkaBroker;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.concurrent.Callable;
import java.util.concurrent.CountDownLatch;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.header.Header;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;
import org.apache.kafka.common.serialization.StringDeserializer;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

/** The experience log from the command line: run a broker, and inspect and replay its topics. */
@Command(name = "log", mixinStandardHelpOptions = true, description = "The experience log (Kafka): broker, stats, tail, replay.",
    subcommands = {LogCommand.Broker.class, LogCommand.Stats.class, LogCommand.Tail.class, LogCommand.Replay.class})
final class LogCommand {
  /** A topic's records as JSON: protobuf-decoded for MemGen's topics (dead letters shown as bytes, with headers). */
  static String json(ConsumerRecord<String, byte[]> r) throws Exception {
    ObjectNode o = Json.object();
    o.put("topic", r.topic());
    o.put("partition", r.partition());
    o.put("offset", r.offset());
    o.put("key", r.key());
    ProtoSerde<? extends Message> serde = serde(r.topic());
    if (serde != null && r.value() != null) {
      try {
        o.set("value", Json.MAPPER.readTree(JsonFormat.printer().omittingInsignificantWhitespace().print(serde.deserialize(r.topic(), r.value()))));
      } catch (RuntimeException e) {
        o.put("error", e.getMessage());
      }
    } else {
      o.put("bytes", r.value() == null ? 0 : r.value().length);
    }
    ObjectNode headers = Json.object();
    for (Header h : r.headers()) {
      headers.put(h.key(), new String(h.value(), StandardCharsets.UTF_8));
    }
    if (!headers.isEmpty()) {
      o.set("headers", headers);
    }
    return Json.line(o);
  }

  static ProtoSerde<? extends Message> serde(String topic) {
    return switch (topic) {
      case Topics.TRAJECTORIES -> Records.TRAJECTORY;
      case Topics.FEEDBACK -> Records.FEEDBACK;
      case Topics.ADAPTERS -> Records.ADAPTER_PUBLISHED;
      default -> null;
    };
  }

  static KafkaConsumer<String, byte[]> consumer(String bootstrap) {
    Properties p = dev.memgen.log.KafkaClients.properties(java.util.Map.of());
    p.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
    p.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "false");
    return new KafkaConsumer<>(p, new StringDeserializer(), new ByteArrayDeserializer());
  }

  /** Every partition of {@code topic}, or a clear error when the topic does not exist. */
  static List<TopicPartition> partitions(KafkaConsumer<?, ?> c, String topic) {
    var infos = c.partitionsFor(topic, Duration.ofSeconds(15));
    if (infos == null || infos.isEmpty()) {
      throw new IllegalArgumentException("--topic: no topic '" + topic + "' on this broker");
    }
    return infos.stream().map(i -> new TopicPartition(topic, i.partition())).toList();
  }

  @Command(name = "broker", mixinStandardHelpOptions = true,
      description = "Run a single-node Kafka broker (KRaft) on DIR in the foreground, with MemGen's topics; Ctrl-C stops it.")
  static final class Broker implements Callable<Integer> {
    @Option(names = "--dir", defaultValue = ".memgen/kafka", description = "data directory (default ${DEFAULT-VALUE})") Path dir;

    @Option(names = "--port", defaultValue = "9092", description = "(default ${DEFAULT-VALUE})") int port;

    @Option(names = "--partitions", defaultValue = "3", description = "of the trajectory and feedback topics (default ${DEFAULT-VALUE})")
    int partitions;

    @Override
    public Integer call() throws Exception {
      try (KafkaBroker broker = KafkaBroker.start(dir, port); ExperienceLog log = new ExperienceLog(broker.bootstrapServers())) {
        log.ensureTopics(partitions);
        System.err.println("broker on " + broker.bootstrapServers() + ", data in " + dir + " (log: " + dir.resolve("broker.log") + ")");
        System.out.println(broker.bootstrapServers());
        CountDownLatch stop = new CountDownLatch(1);
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
          broker.stop();
          stop.countDown();
        }));
        stop.await();
      }
      return 0;
    }
  }

  @Command(name = "stats", mixinStandardHelpOptions = true,
      description = "Records per topic and partition (MemGen's topics and their dead letters). Last line: JSON.")
  static final class Stats implements Callable<Integer> {
    @Option(names = "--bootstrap", defaultValue = "localhost:9092", description = "(default ${DEFAULT-VALUE})") String bootstrap;

    @Override
    public Integer call() {
      ObjectNode out = Json.object();
      try (KafkaConsumer<String, byte[]> c = consumer(bootstrap)) {
        for (String topic : List.of(Topics.TRAJECTORIES, Topics.FEEDBACK, Topics.ADAPTERS)) {
          for (String t : List.of(topic, Topics.deadLetter(topic))) {
            var infos = c.partitionsFor(t, Duration.ofSeconds(15));
            if (infos == null || infos.isEmpty()) {
              System.out.printf("%-28s (absent)%n", t);
              continue;
            }
            List<TopicPartition> parts = infos.stream().map(i -> new TopicPartition(t, i.partition())).toList();
            Map<TopicPartition, Long> begin = c.beginningOffsets(parts, Duration.ofSeconds(15));
            Map<TopicPartition, Long> end = c.endOffsets(parts, Duration.ofSeconds(15));
            long records = parts.stream().mapToLong(p -> end.get(p) - begin.get(p)).sum();
            System.out.printf("%-28s %d partitions, %d records%n", t, parts.size(), records);
            ObjectNode o = out.putObject(t);
            o.put("partitions", parts.size());
            o.put("records", records);
          }
        }
      }
      System.out.println(Json.line(out));
      return 0;
    }
  }

  @Command(name = "tail", mixinStandardHelpOptions = true,
      description = "Print a topic's records as JSON lines (decoded), the last N or all, and optionally follow.")
  static final class Tail implements Callable<Integer> {
    @Option(names = "--bootstrap", defaultValue = "localhost:9092", description = "(default ${DEFAULT-VALUE})") String bootstrap;

    @Option(names = "--topic", defaultValue = Topics.TRAJECTORIES, description = "(default ${DEFAULT-VALUE})") String topic;

    @Option(names = "-n", defaultValue = "10", description = "records per partition from the end; 0 for all (default ${DEFAULT-VALUE})")
    long n;

    @Option(names = "--follow", description = "keep printing new records until interrupted") boolean follow;

    @Override
    public Integer call() throws Exception {
      try (KafkaConsumer<String, byte[]> c = consumer(bootstrap)) {
        List<TopicPartition> parts = partitions(c, topic);
        c.assign(parts);
        Map<TopicPartition, Long> begin = c.beginningOffsets(parts);
        Map<TopicPartition, Long> end = c.endOffsets(parts);
        for (TopicPartition p : parts) {
          c.seek(p, n == 0 ? begin.get(p) : Math.max(begin.get(p), end.get(p) - n));
        }
        while (follow || parts.stream().anyMatch(p -> c.position(p) < end.get(p))) {
          for (ConsumerRecord<String, byte[]> r : c.poll(Duration.ofMillis(500))) {
            System.out.println(json(r));
          }
        }
      }
      return 0;
    }
  }

  @Command(name = "replay", mixinStandardHelpOptions = true,
      description = "Copy a topic's records (from an offset on) into another topic, keys, values and headers unchanged: "
          + "e.g. dead letters back into their topic once the consumer is fixed. Last line: JSON.")
  static final class Replay implements Callable<Integer> {
    @Option(names = "--bootstrap", defaultValue = "localhost:9092", description = "(default ${DEFAULT-VALUE})") String bootstrap;

    @Option(names = "--from", required = true, description = "source topic") String from;

    @Option(names = "--to", required = true, description = "destination topic") String to;

    @Option(names = "--from-offset", defaultValue = "0", description = "in every partition (default ${DEFAULT-VALUE})") long fromOffset;

    @Override
    public Integer call() throws Exception {
      if (from.equals(to)) {
        throw new IllegalArgumentException("--from and --to are the same topic");
      }
      long copied = 0;
      try (KafkaConsumer<String, byte[]> c = consumer(bootstrap);
          KafkaProducer<String, byte[]> producer = ExperienceLog.reliableProducer(bootstrap, new Properties())) {
        partitions(c, to); // the destination must exist too
        List<TopicPartition> parts = partitions(c, from);
        c.assign(parts);
        Map<TopicPartition, Long> begin = c.beginningOffsets(parts);
        Map<TopicPartition, Long> end = c.endOffsets(parts);
        for (TopicPartition tp : parts) {
          c.seek(tp, Math.max(begin.get(tp), fromOffset));
        }
        List<java.util.concurrent.Future<?>> acks = new ArrayList<>();
        while (parts.stream().anyMatch(tp -> c.position(tp) < end.get(tp))) {
          for (ConsumerRecord<String, byte[]> r : c.poll(Duration.ofMillis(500))) {
            acks.add(producer.send(new ProducerRecord<>(to, null, r.key(), r.value(), r.headers())));
            copied++;
          }
        }
        for (var a : acks) {
          a.get();
        }
      }
      System.err.printf("replayed %d records from %s to %s%n", copied, from, to);
      ObjectNode o = Json.object();
      o.put("from", from);
      o.put("to", to);
      o.put("records", copied);
      System.out.println(Json.line(o));
      return 0;
    }
  }
}
