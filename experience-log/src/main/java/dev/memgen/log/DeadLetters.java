package dev.memgen.log;

import com.google.protobuf.Message;
import java.nio.charset.StandardCharsets;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.HashSet;
import java.util.HexFormat;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import java.util.function.Function;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.errors.RecordTooLargeException;
import org.apache.kafka.common.errors.SerializationException;
import org.apache.kafka.common.header.Header;
import org.apache.kafka.common.header.internals.RecordHeaders;

/**
 * One consumer's dead letters. A consumed record that does not decode or validate is copied to its topic's
 * dead-letter twin ({@code <topic>.dlq}) with why, where it came from and who rejected it in headers, and
 * <b>every copy is confirmed by the broker before the caller moves past the record</b>: a copy that cannot be
 * confirmed is an exception, not a silent loss. A record the producer or the broker refuses as too large (the
 * original sat at the broker's limit; the copy adds headers) is dead-lettered as its first
 * {@value #TRUNCATED_VALUE_BYTES} bytes, with its full size and sha256 in headers; the whole record stays in the
 * source topic at the offset the source header names.
 *
 * <p>Once per record, also across restarts: a consumer that re-reads records after a crash calls {@link #recover}
 * with the dead-letter offsets it stored at its last commit point, and the records it dead-lettered since then (found
 * by its {@link #BY_HEADER}) are recognised and not copied again.
 */
public final class DeadLetters {
  /** Why it was rejected. */
  public static final String REASON_HEADER = "memgen.dlq.reason";
  /** Where it came from: {@code topic-partition@offset}. */
  public static final String SOURCE_HEADER = "memgen.dlq.source";
  /** Which consumer rejected it (e.g. {@code trainer/default}): a restarted consumer recognises its own. */
  public static final String BY_HEADER = "memgen.dlq.by";
  /** Present on a truncated copy: the original value's size in bytes (the copy keeps its first bytes). */
  public static final String TRUNCATED_HEADER = "memgen.dlq.truncated";
  /** Present on a truncated copy: the sha256 of the original value, to find and check it at its source offset. */
  public static final String VALUE_SHA256_HEADER = "memgen.dlq.value-sha256";
  /** How much of a too-large value a truncated copy keeps: enough to see what it was. */
  public static final int TRUNCATED_VALUE_BYTES = 64 * 1024;
  private static final int TRUNCATED_KEY_CHARS = 256;

  /** A record that was dead-lettered: now, or ({@code earlier}) before a restart. */
  public record Letter(ConsumerRecord<String, byte[]> record, String reason, boolean truncated, boolean earlier) {}

  /** A batch of consumed records sorted into the ones that decoded and validated and the ones dead-lettered. */
  public record Sorted<T>(List<ExperienceLog.Decoded<T>> good, List<Letter> dead) {}

  /** A dead letter that could not be confirmed: the consumer must not move past its record. */
  public static final class DeadLetterException extends Exception {
    public DeadLetterException(String message, Throwable cause) {
      super(message, cause);
    }
  }

  private final KafkaProducer<String, byte[]> producer;
  private final String by;
  private final Duration timeout;
  private final Set<String> earlier = new HashSet<>(); // sources this consumer dead-lettered before a restart

  DeadLetters(KafkaProducer<String, byte[]> producer, String by, Duration timeout) {
    this.producer = producer;
    this.by = by;
    this.timeout = timeout;
  }

  /** The consumer these dead letters are from ({@link #BY_HEADER}). */
  public String by() {
    return by;
  }

  /** A record's source as the headers write it: {@code topic-partition@offset}. */
  public static String source(ConsumerRecord<?, ?> r) {
    return source(new TopicPartition(r.topic(), r.partition()), r.offset());
  }

  /** {@code topic-partition@offset} (what {@link TopicPartition#toString} writes, then the offset). */
  public static String source(TopicPartition tp, long offset) {
    return tp + "@" + offset;
  }

  /** The partition and offset a {@link #source} names. */
  public static Map.Entry<TopicPartition, Long> parseSource(String source) {
    int at = source.lastIndexOf('@');
    int dash = source.lastIndexOf('-', at);
    if (at < 0 || dash < 0) {
      throw new IllegalArgumentException("not a topic-partition@offset source: '" + source + "'");
    }
    return Map.entry(new TopicPartition(source.substring(0, dash), Integer.parseInt(source.substring(dash + 1, at))),
        Long.parseLong(source.substring(at + 1)));
  }

  /**
   * Decodes {@code records}: those that parse with {@code serde}, carry a {@code schema_version} (a value without one
   * is not a MemGen record: an empty value, or another type's bytes) and pass {@code validate} (null for a good
   * record, or what is wrong with it) come back in order; the others are dead-lettered, confirmed, before this
   * returns.
   *
   * @throws DeadLetterException a dead letter the broker did not confirm (none of the batch may be skipped then)
   */
  public <T extends Message> Sorted<T> decode(Iterable<ConsumerRecord<String, byte[]>> records, ProtoSerde<T> serde,
      Function<T, String> validate) throws DeadLetterException, InterruptedException {
    List<ExperienceLog.Decoded<T>> good = new ArrayList<>();
    List<Map.Entry<ConsumerRecord<String, byte[]>, String>> bad = new ArrayList<>();
    for (ConsumerRecord<String, byte[]> r : records) {
      String problem;
      T value = null;
      try {
        if (r.value() == null) {
          problem = "no value (a null record, e.g. a tombstone): expected a " + serde.typeName();
        } else if (r.value().length == 0) {
          problem = "empty value (0 bytes): expected a " + serde.typeName();
        } else {
          value = serde.deserialize(r.topic(), r.value());
          problem = Records.schemaVersion(value) == 0 ? Records.unversioned(r.value(), value, serde) : validate.apply(value);
        }
      } catch (SerializationException e) {
        problem = e.getMessage();
      }
      if (problem == null) {
        good.add(new ExperienceLog.Decoded<>(r, value));
      } else {
        bad.add(Map.entry(r, problem));
      }
    }
    return new Sorted<>(good, send(bad));
  }

  /**
   * Dead-letters each record with its reason and waits until the broker has every copy (pipelined: all are sent,
   * then all awaited). A record this consumer dead-lettered before a restart is not sent again.
   *
   * @throws DeadLetterException naming the first record whose copy was not confirmed
   */
  public List<Letter> send(List<Map.Entry<ConsumerRecord<String, byte[]>, String>> letters)
      throws DeadLetterException, InterruptedException {
    List<Letter> out = new ArrayList<>();
    List<Future<RecordMetadata>> acks = new ArrayList<>();
    for (Map.Entry<ConsumerRecord<String, byte[]>, String> l : letters) {
      boolean before = earlier.contains(source(l.getKey()));
      acks.add(before ? null : producer.send(copy(l.getKey(), l.getValue(), false)));
      out.add(new Letter(l.getKey(), l.getValue(), false, before));
    }
    for (int i = 0; i < out.size(); i++) {
      if (acks.get(i) == null) {
        continue;
      }
      Letter l = out.get(i);
      try {
        await(acks.get(i), l);
      } catch (ExecutionException e) {
        if (!(e.getCause() instanceof RecordTooLargeException)) {
          throw unconfirmed(l, e.getCause());
        }
        try { // too large to copy whole: the first bytes, with the size and hash to find the rest at its source
          await(producer.send(copy(l.record(), l.reason(), true)), l);
        } catch (ExecutionException again) {
          throw unconfirmed(l, again.getCause());
        }
        out.set(i, new Letter(l.record(), l.reason(), true, false));
      }
    }
    return out;
  }

  private void await(Future<RecordMetadata> ack, Letter l) throws ExecutionException, InterruptedException,
      DeadLetterException {
    try {
      ack.get(timeout.toMillis(), TimeUnit.MILLISECONDS);
    } catch (TimeoutException e) {
      throw unconfirmed(l, e);
    }
  }

  private DeadLetterException unconfirmed(Letter l, Throwable cause) {
    return new DeadLetterException("the dead letter of " + source(l.record()) + " (" + l.reason() + ") was not confirmed by "
        + "the broker: " + cause, cause);
  }

  private ProducerRecord<String, byte[]> copy(ConsumerRecord<String, byte[]> r, String reason, boolean truncate) {
    RecordHeaders headers = truncate ? new RecordHeaders() : new RecordHeaders(r.headers().toArray());
    headers.add(REASON_HEADER, utf8(reason));
    headers.add(SOURCE_HEADER, utf8(source(r)));
    headers.add(BY_HEADER, utf8(by));
    String key = r.key();
    byte[] value = r.value();
    if (truncate) {
      headers.add(TRUNCATED_HEADER, utf8(String.valueOf(value == null ? 0 : value.length)));
      if (value != null) {
        headers.add(VALUE_SHA256_HEADER, utf8(HexFormat.of().formatHex(sha256(value))));
        value = Arrays.copyOf(value, Math.min(value.length, TRUNCATED_VALUE_BYTES));
      }
      if (key != null && key.length() > TRUNCATED_KEY_CHARS) {
        key = key.substring(0, TRUNCATED_KEY_CHARS);
      }
    }
    return new ProducerRecord<>(Topics.deadLetter(r.topic()), null, key, value, headers);
  }

  /**
   * After a restart: reads the dead-letter topics of {@code topics} from {@code from} (the end offsets stored at the
   * last commit point, see {@link #positions}; partitions missing from it are read from their start) and remembers
   * which records this consumer dead-lettered since, so that re-reading them does not copy them again.
   *
   * @return how many of this consumer's dead letters were found
   */
  public int recover(String bootstrapServers, List<String> topics, Map<TopicPartition, Long> from) {
    int found = 0;
    try (KafkaConsumer<String, byte[]> c = ExperienceLog.consumer(bootstrapServers, "memgen-dlq-recovery", null)) {
      List<TopicPartition> parts = partitions(c, topics);
      c.assign(parts);
      Map<TopicPartition, Long> end = c.endOffsets(parts, timeout);
      for (TopicPartition tp : parts) {
        c.seek(tp, from.getOrDefault(tp, 0L));
      }
      long deadline = System.nanoTime() + timeout.toNanos();
      while (parts.stream().anyMatch(tp -> c.position(tp, timeout) < end.get(tp))) {
        if (System.nanoTime() > deadline) {
          throw new IllegalStateException("reading the dead-letter topics " + parts + " took over " + timeout);
        }
        for (ConsumerRecord<String, byte[]> r : c.poll(Duration.ofMillis(200))) {
          Header mine = r.headers().lastHeader(BY_HEADER);
          Header source = r.headers().lastHeader(SOURCE_HEADER);
          if (mine != null && source != null && by.equals(new String(mine.value(), StandardCharsets.UTF_8))) {
            earlier.add(new String(source.value(), StandardCharsets.UTF_8));
            found++;
          }
        }
      }
    }
    return found;
  }

  /** The end offsets of the dead-letter topics of {@code topics} now: where a later {@link #recover} starts. */
  public Map<TopicPartition, Long> positions(String bootstrapServers, List<String> topics) {
    try (KafkaConsumer<String, byte[]> c = ExperienceLog.consumer(bootstrapServers, "memgen-dlq-positions", null)) {
      return new HashMap<>(c.endOffsets(partitions(c, topics), timeout));
    }
  }

  private List<TopicPartition> partitions(KafkaConsumer<String, byte[]> c, List<String> topics) {
    List<TopicPartition> parts = new ArrayList<>();
    for (String topic : topics) {
      String dlq = Topics.deadLetter(topic);
      c.partitionsFor(dlq, timeout).forEach(p -> parts.add(new TopicPartition(dlq, p.partition())));
    }
    return parts;
  }

  private static byte[] utf8(String s) {
    return s.getBytes(StandardCharsets.UTF_8);
  }

  private static byte[] sha256(byte[] data) {
    try {
      return MessageDigest.getInstance("SHA-256").digest(data);
    } catch (NoSuchAlgorithmException e) {
      throw new IllegalStateException(e);
    }
  }
}
