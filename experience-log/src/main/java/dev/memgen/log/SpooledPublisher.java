package dev.memgen.log;

import com.google.protobuf.Message;
import java.time.Duration;
import java.util.Properties;
import java.util.concurrent.ArrayBlockingQueue;
import java.util.concurrent.BlockingQueue;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;
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
 */
public final class SpooledPublisher implements AutoCloseable {
  private static final Logger LOG = LoggerFactory.getLogger(SpooledPublisher.class);

  /** Counters: offered and accepted, delivered (acknowledged by the broker), refused for a full spool, in the spool. */
  public record Stats(long accepted, long delivered, long overflowed, long pending, long failedAttempts) {}

  private record Pending(String topic, String key, byte[] value) {}

  private final BlockingQueue<Pending> spool;
  private final KafkaProducer<String, byte[]> producer;
  private final Thread sender;
  private final AtomicLong accepted = new AtomicLong();
  private final AtomicLong delivered = new AtomicLong();
  private final AtomicLong overflowed = new AtomicLong();
  private final AtomicLong inFlight = new AtomicLong();
  private final AtomicLong failedAttempts = new AtomicLong();
  private volatile boolean closing;

  /** @param capacity records the spool holds while the broker is unreachable */
  public SpooledPublisher(String bootstrapServers, int capacity) {
    this.spool = new ArrayBlockingQueue<>(capacity);
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
    if (spool.offer(new Pending(topic, key, record.toByteArray()))) {
      accepted.incrementAndGet();
      return true;
    }
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
      producer.send(new ProducerRecord<>(record.topic(), record.key(), record.value()), (metadata, error) -> {
        inFlight.decrementAndGet();
        if (error == null) {
          delivered.incrementAndGet();
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
      LOG.warn("experience log closed with {} records undelivered", s.pending());
    }
  }

  @Override
  public void close() {
    close(Duration.ofSeconds(10));
  }
}
