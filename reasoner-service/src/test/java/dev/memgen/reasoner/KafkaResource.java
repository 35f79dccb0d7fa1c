package dev.memgen.reasoner;

import com.google.protobuf.InvalidProtocolBufferException;
import com.google.protobuf.Message;
import com.google.protobuf.Parser;
import dev.memgen.log.ExperienceLog;
import dev.memgen.log.broker.KafkaBroker;
import io.quarkus.test.common.QuarkusTestResourceLifecycleManager;
import java.nio.file.Files;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.function.Predicate;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.common.TopicPartition;

/** A real Kafka broker (child JVM) with MemGen's topics, for a Quarkus test; sets memgen.log.bootstrap. */
public class KafkaResource implements QuarkusTestResourceLifecycleManager {
  static volatile KafkaBroker broker;

  /** One record read back: its key and decoded value. */
  record Received<T>(String key, T value) {}

  @Override
  public Map<String, String> start() {
    try {
      broker = KafkaBroker.start(Files.createTempDirectory("memgen-kafka"), 0);
      try (ExperienceLog log = new ExperienceLog(broker.bootstrapServers())) {
        log.ensureTopics(1);
      }
      return Map.of("memgen.log.bootstrap", broker.bootstrapServers());
    } catch (Exception e) {
      throw new IllegalStateException("could not start the test broker", e);
    }
  }

  /**
   * Every record of {@code topic} (one partition) from the beginning up to and including the first that matches
   * {@code last}, waiting up to a minute for it: the app delivers through its spool, asynchronously.
   */
  static <T extends Message> List<Received<T>> readUntil(String topic, Parser<T> parser, Predicate<T> last)
      throws InvalidProtocolBufferException {
    List<Received<T>> read = new ArrayList<>();
    try (KafkaConsumer<String, byte[]> c = ExperienceLog.consumer(broker.bootstrapServers(), "reasoner-test", null)) {
      TopicPartition tp = new TopicPartition(topic, 0);
      c.assign(List.of(tp));
      c.seekToBeginning(List.of(tp));
      long deadline = System.nanoTime() + Duration.ofSeconds(60).toNanos();
      while (System.nanoTime() < deadline) {
        for (ConsumerRecord<String, byte[]> r : c.poll(Duration.ofMillis(500))) {
          T value = parser.parseFrom(r.value());
          read.add(new Received<>(r.key(), value));
          if (last.test(value)) {
            return read;
          }
        }
      }
    }
    throw new AssertionError("the awaited record never reached " + topic + " (" + read.size() + " others did)");
  }

  /** The first record of {@code topic} that matches {@code which}, waiting for it. */
  static <T extends Message> Received<T> await(String topic, Parser<T> parser, Predicate<T> which)
      throws InvalidProtocolBufferException {
    List<Received<T>> read = readUntil(topic, parser, which);
    return read.get(read.size() - 1);
  }

  @Override
  public void stop() {
    if (broker != null) {
      broker.stop();
    }
  }
}
