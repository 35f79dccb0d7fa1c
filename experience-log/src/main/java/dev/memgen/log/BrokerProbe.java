package dev.memgen.log;

import java.time.Duration;
import java.util.Properties;
import java.util.concurrent.TimeUnit;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.DescribeClusterOptions;

/**
 * Whether the Kafka cluster answers now: what a readiness check asks. One admin client, opened on first use; an
 * answer is kept for a few seconds, so a probe every second costs the broker one request every five.
 */
public final class BrokerProbe implements AutoCloseable {
  private static final Duration KEEP = Duration.ofSeconds(5);

  /** The answer: the cluster's broker count, or why it did not answer. */
  public record Answer(boolean reachable, int brokers, String detail) {}

  private final String bootstrapServers;
  private final Duration timeout;
  private Admin admin;
  private Answer last;
  private long lastAt;

  public BrokerProbe(String bootstrapServers, Duration timeout) {
    this.bootstrapServers = bootstrapServers;
    this.timeout = timeout;
  }

  public synchronized Answer probe() {
    long now = System.nanoTime();
    if (last != null && now - lastAt < KEEP.toNanos()) {
      return last;
    }
    try {
      if (admin == null) {
        Properties p = KafkaClients.properties(java.util.Map.of());
        p.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrapServers);
        p.put(AdminClientConfig.REQUEST_TIMEOUT_MS_CONFIG, (int) timeout.toMillis());
        p.put(AdminClientConfig.DEFAULT_API_TIMEOUT_MS_CONFIG, (int) timeout.toMillis());
        p.put(AdminClientConfig.CLIENT_ID_CONFIG, "memgen-readiness");
        admin = Admin.create(p);
      }
      int brokers = admin.describeCluster(new DescribeClusterOptions().timeoutMs((int) timeout.toMillis())).nodes()
          .get(timeout.toMillis(), TimeUnit.MILLISECONDS).size();
      last = new Answer(brokers > 0, brokers, brokers + " broker(s) at " + bootstrapServers);
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      last = new Answer(false, 0, "interrupted while asking " + bootstrapServers);
    } catch (Exception e) {
      last = new Answer(false, 0, "no answer from " + bootstrapServers + " within " + timeout.toMillis() + " ms ("
          + e.getClass().getSimpleName() + ")");
    }
    lastAt = now;
    return last;
  }

  private final java.util.Map<String, long[]> lags = new java.util.HashMap<>(); // group -> {value, when}

  /**
   * Records the consumer group {@code groupId} has not committed yet, summed over the partitions it has committed
   * on (end offset minus committed offset), or -1 when the broker does not answer; kept (per group) as long as
   * {@link #probe}'s answers are.
   */
  public synchronized long lag(String groupId) {
    long now = System.nanoTime();
    long[] kept = lags.get(groupId);
    if (kept != null && now - kept[1] < KEEP.toNanos()) {
      return kept[0];
    }
    long value = -1;
    if (probe().reachable()) {
      try {
        value = ConsumerLag.of(admin, groupId, null, timeout).values().stream().mapToLong(ConsumerLag.Position::lag).sum();
      } catch (InterruptedException e) {
        Thread.currentThread().interrupt();
      } catch (Exception e) {
        // the broker answered the probe but not this: unknown, as when it does not answer
      }
    }
    lags.put(groupId, new long[] {value, now});
    return value;
  }

  @Override
  public synchronized void close() {
    if (admin != null) {
      admin.close(Duration.ofSeconds(2));
      admin = null;
    }
  }
}
