package dev.memgen.log;

import com.google.protobuf.Message;
import java.io.BufferedInputStream;
import java.io.BufferedOutputStream;
import java.io.DataInputStream;
import java.io.DataOutputStream;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.time.Duration;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.concurrent.ArrayBlockingQueue;
import java.util.concurrent.BlockingQueue;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;
import java.util.stream.Stream;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Publishes records without ever making the caller wait: {@link #offer} puts a record in a bounded spool and returns
 * at once; one background thread moves the spool to Kafka (idempotent producer, {@code acks=all}) and keeps retrying
 * while the broker is down, so records offered during an outage are delivered when it is back. A full spool refuses
 * the record and counts it ({@link Stats#overflowed}): a request is never blocked by the log, and nothing is dropped
 * without being counted and logged.
 *
 * <p>With a spool directory, every accepted record is also a file there until the broker has acknowledged it, and a
 * publisher started on the same directory sends what a previous one left (a process killed during an outage loses
 * nothing). The file is written before {@link #offer} returns (no fsync: it survives the process, not the machine),
 * and deleted after the acknowledgement, so a crash between the two sends that record again: delivery across a crash
 * is at least once (consumers key on the record's own id).
 */
public final class SpooledPublisher implements AutoCloseable {
  private static final Logger LOG = LoggerFactory.getLogger(SpooledPublisher.class);

  /** Counters: offered and accepted, delivered (acknowledged by the broker), refused for a full spool, in the spool. */
  public record Stats(long accepted, long delivered, long overflowed, long pending, long failedAttempts) {}

  private record Pending(String topic, String key, byte[] value, Map<String, String> headers, Path file) {}

  private static final String SUFFIX = ".rec";

  private final BlockingQueue<Pending> spool;
  private final KafkaProducer<String, byte[]> producer;
  private final Thread sender;
  private final AtomicLong accepted = new AtomicLong();
  private final AtomicLong delivered = new AtomicLong();
  private final AtomicLong overflowed = new AtomicLong();
  private final AtomicLong inFlight = new AtomicLong();
  private final AtomicLong failedAttempts = new AtomicLong();
  private final Path dir; // null: the spool is in memory only
  private final AtomicLong nextFile = new AtomicLong();
  private volatile boolean closing;

  /** @param capacity records the spool holds while the broker is unreachable */
  public SpooledPublisher(String bootstrapServers, int capacity) {
    this(bootstrapServers, capacity, null);
  }

  /**
   * @param dir where spooled records are kept until acknowledged (created if missing), or null for memory only; what a
   *     previous publisher left there is sent first
   */
  public SpooledPublisher(String bootstrapServers, int capacity, Path dir) {
    this.spool = new ArrayBlockingQueue<>(capacity);
    this.dir = dir;
    if (dir != null) {
      recover(dir, capacity);
    }
    // The producer retries on its own for as long as a record may wait; the sender thread retries after that.
    Properties p = new Properties();
    p.put(ProducerConfig.MAX_BLOCK_MS_CONFIG, "5000");
    p.put(ProducerConfig.DELIVERY_TIMEOUT_MS_CONFIG, "30000");
    p.put(ProducerConfig.REQUEST_TIMEOUT_MS_CONFIG, "10000");
    p.put(ProducerConfig.RECONNECT_BACKOFF_MAX_MS_CONFIG, "1000");
    producer = ExperienceLog.reliableProducer(bootstrapServers, p);
    sender = new Thread(this::run, "memgen-log-sender");
    sender.setDaemon(true);
    sender.start();
  }

  /** Spools a record for delivery; returns false (and counts it) when the spool is full. Never blocks. */
  public boolean offer(String topic, String key, Message record) {
    return offer(topic, key, record, Map.of());
  }

  /**
   * {@link #offer(String, String, Message)} with record headers (UTF-8 values), e.g. the W3C {@code traceparent} of
   * the request a trajectory came from; they are spooled with the record.
   */
  public boolean offer(String topic, String key, Message record, Map<String, String> headers) {
    byte[] value = record.toByteArray();
    Path file = null;
    if (dir != null) {
      if (spool.remainingCapacity() == 0) {
        return refuse(topic);
      }
      try {
        file = write(topic, key, value, headers);
      } catch (IOException e) {
        LOG.error("experience log spool {}: cannot write a record for {} ({}); keeping it in memory only", dir, topic,
            e.toString());
      }
    }
    if (spool.offer(new Pending(topic, key, value, Map.copyOf(headers), file))) {
      accepted.incrementAndGet();
      return true;
    }
    deleteQuietly(file);
    return refuse(topic);
  }

  private boolean refuse(String topic) {
    long n = overflowed.incrementAndGet();
    LOG.warn("experience log spool full ({} records): refused a record for {} ({} refused so far)",
        spool.size(), topic, n);
    return false;
  }

  public Stats stats() {
    return new Stats(accepted.get(), delivered.get(), overflowed.get(), spool.size() + inFlight.get(), failedAttempts.get());
  }

  private void run() {
    while (!closing || !spool.isEmpty()) {
      Pending next;
      try {
        next = spool.poll(100, TimeUnit.MILLISECONDS);
      } catch (InterruptedException e) {
        return;
      }
      if (next != null) {
        send(next);
      }
    }
  }

  /** Sends one record; a failed delivery goes back to the spool (order may change; nothing is lost) to be retried. */
  private void send(Pending record) {
    inFlight.incrementAndGet();
    try {
      ProducerRecord<String, byte[]> out = new ProducerRecord<>(record.topic(), record.key(), record.value());
      record.headers().forEach((name, value) -> out.headers().add(name, value.getBytes(StandardCharsets.UTF_8)));
      producer.send(out, (metadata, error) -> {
        inFlight.decrementAndGet();
        if (error == null) {
          delivered.incrementAndGet();
          deleteQuietly(record.file());
        } else {
          retry(record, error);
        }
      });
    } catch (RuntimeException e) { // no metadata within max.block.ms: the broker is unreachable
      inFlight.decrementAndGet();
      retry(record, e);
      pause(500);
    }
  }

  private void retry(Pending record, Exception error) {
    failedAttempts.incrementAndGet();
    LOG.debug("experience log: delivery to {} failed, will retry: {}", record.topic(), error.toString());
    if (!spool.offer(record)) {
      long n = overflowed.incrementAndGet();
      LOG.warn("experience log spool full: a record for {} that failed delivery could not be kept ({} lost so far)",
          record.topic(), n);
    }
  }

  /** Queues the records a previous publisher left in {@code dir}, oldest first. */
  private void recover(Path dir, int capacity) {
    try {
      Files.createDirectories(dir);
      List<Path> files;
      try (Stream<Path> list = Files.list(dir)) {
        files = list.filter(f -> f.getFileName().toString().endsWith(SUFFIX)).sorted().toList();
      }
      int recovered = 0;
      for (Path f : files) {
        long seq = Long.parseLong(f.getFileName().toString().replace(SUFFIX, ""));
        nextFile.set(Math.max(nextFile.get(), seq + 1));
        Pending p = read(f);
        if (p == null) {
          LOG.error("experience log spool {}: {} is not a spooled record; moved aside to {}.bad", dir, f.getFileName(), f);
          Files.move(f, f.resolveSibling(f.getFileName() + ".bad"), StandardCopyOption.REPLACE_EXISTING);
        } else if (spool.offer(p)) {
          recovered++;
        } else {
          LOG.warn("experience log spool {}: more records left ({}) than the spool holds ({}); the rest wait on disk for "
              + "the next start", dir, files.size(), capacity);
          break;
        }
      }
      accepted.addAndGet(recovered);
      if (recovered > 0) {
        LOG.info("experience log spool {}: {} records left by a previous run will be sent", dir, recovered);
      }
    } catch (IOException | NumberFormatException e) {
      throw new IllegalStateException("experience log spool " + dir + " is unusable: " + e.getMessage(), e);
    }
  }

  /**
   * One record per file: topic, key (or none), value, then its headers (a count and name/value pairs; files written
   * before headers end after the value and read as having none); written to a temporary name and renamed, so never
   * half there.
   */
  private Path write(String topic, String key, byte[] value, Map<String, String> headers) throws IOException {
    Path file = dir.resolve(String.format("%020d%s", nextFile.getAndIncrement(), SUFFIX));
    Path tmp = file.resolveSibling(file.getFileName() + ".tmp");
    try (DataOutputStream out = new DataOutputStream(new BufferedOutputStream(Files.newOutputStream(tmp)))) {
      out.writeUTF(topic);
      out.writeBoolean(key != null);
      if (key != null) {
        out.writeUTF(key);
      }
      out.writeInt(value.length);
      out.write(value);
      if (!headers.isEmpty()) {
        out.writeInt(headers.size());
        for (Map.Entry<String, String> h : headers.entrySet()) {
          out.writeUTF(h.getKey());
          out.writeUTF(h.getValue());
        }
      }
    }
    Files.move(tmp, file, StandardCopyOption.ATOMIC_MOVE);
    return file;
  }

  private static Pending read(Path file) {
    try (DataInputStream in = new DataInputStream(new BufferedInputStream(Files.newInputStream(file)))) {
      String topic = in.readUTF();
      String key = in.readBoolean() ? in.readUTF() : null;
      byte[] value = new byte[in.readInt()];
      in.readFully(value);
      Map<String, String> headers = new java.util.LinkedHashMap<>();
      in.mark(1);
      if (in.read() != -1) {
        in.reset();
        for (int n = in.readInt(); n > 0; n--) {
          headers.put(in.readUTF(), in.readUTF());
        }
      }
      return in.read() == -1 ? new Pending(topic, key, value, headers, file) : null;
    } catch (IOException | NegativeArraySizeException | OutOfMemoryError e) {
      return null;
    }
  }

  private static void deleteQuietly(Path file) {
    if (file != null) {
      try {
        Files.deleteIfExists(file);
      } catch (IOException e) {
        LOG.warn("experience log spool: cannot delete delivered {} ({}); it will be sent again at the next start", file,
            e.toString());
      }
    }
  }

  private static void pause(long ms) {
    try {
      Thread.sleep(ms);
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
    }
  }

  /** Stops accepting, gives the spool up to {@code timeout} to drain, and closes the producer. */
  public void close(Duration timeout) {
    closing = true;
    try {
      sender.join(timeout.toMillis());
      sender.interrupt(); // still retrying against an unreachable broker: give up (what is left is counted below)
      sender.join(1000);
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
    }
    producer.close(timeout);
    Stats s = stats();
    if (s.pending() > 0) {
      LOG.warn("experience log closed with {} records undelivered{}", s.pending(),
          dir == null ? " (lost: the spool is in memory; set a spool directory to keep them)" : " (kept in " + dir
              + " for the next start)");
    }
  }

  @Override
  public void close() {
    close(Duration.ofSeconds(10));
  }
}
