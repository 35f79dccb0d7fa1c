package dev.memgen.log;

import java.time.Duration;
import java.util.Collection;
import java.util.HashMap;
import java.util.Map;
import java.util.TreeMap;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.OffsetSpec;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.common.TopicPartition;

/** How far a consumer group is behind: per partition, what it has committed and where the partition ends. */
public final class ConsumerLag {
  private ConsumerLag() {}

  /** A partition's committed offset (-1: none yet) and end offset. */
  public record Position(long committed, long end) {
    /** Records after the committed offset (all of them when nothing is committed). */
    public long lag() {
      return Math.max(0, end - Math.max(0, committed));
    }
  }

  /**
   * The positions of group {@code groupId} on {@code partitions} (null: the partitions it has committed on), by topic
   * and partition.
   */
  public static Map<TopicPartition, Position> of(Admin admin, String groupId, Collection<TopicPartition> partitions,
      Duration timeout) throws InterruptedException, ExecutionException, TimeoutException {
    Map<TopicPartition, OffsetAndMetadata> committed = admin.listConsumerGroupOffsets(groupId)
        .partitionsToOffsetAndMetadata().get(timeout.toMillis(), TimeUnit.MILLISECONDS);
    Collection<TopicPartition> which = partitions != null ? partitions : committed.keySet();
    Map<TopicPartition, OffsetSpec> latest = new HashMap<>();
    which.forEach(tp -> latest.put(tp, OffsetSpec.latest()));
    var ends = admin.listOffsets(latest).all().get(timeout.toMillis(), TimeUnit.MILLISECONDS);
    Map<TopicPartition, Position> out = new TreeMap<>(java.util.Comparator.comparing(TopicPartition::topic)
        .thenComparingInt(TopicPartition::partition));
    for (TopicPartition tp : which) {
      OffsetAndMetadata c = committed.get(tp);
      out.put(tp, new Position(c == null ? -1 : c.offset(), ends.get(tp).offset()));
    }
    return out;
  }
}
