package dev.memgen.log;

import java.nio.charset.StandardCharsets;
import java.util.Map;
import org.apache.kafka.clients.producer.internals.BuiltInPartitioner;

/**
 * The Kafka topics MemGen's services talk through, with the settings each needs. Trajectories are keyed by adapter,
 * so each adapter's stream is one partition and trainers in a group share the adapters by sharing the partitions
 * ({@link #partitionOf}); feedback is keyed by trajectory; adapter announcements are compacted, so the topic always
 * holds the latest version of every adapter and a restarted weaver catches up from it alone.
 */
public final class Topics {
  /** Finished requests ({@code memgen.v1.Trajectory}), key: adapter name. */
  public static final String TRAJECTORIES = "memgen.trajectories";
  /** Late rewards ({@code memgen.v1.Feedback}), key: trajectory id. */
  public static final String FEEDBACK = "memgen.feedback";
  /** New weaver/trigger versions ({@code memgen.v1.AdapterPublished}), key: adapter name and component. */
  public static final String ADAPTERS = "memgen.adapters";
  /** Suffix of the dead-letter topic beside each topic, for records that fail to decode or validate. */
  public static final String DEAD_LETTER_SUFFIX = ".dlq";

  private Topics() {}

  public static String deadLetter(String topic) {
    return topic + DEAD_LETTER_SUFFIX;
  }

  /**
   * The trajectories partition adapter {@code adapterName}'s records land on when the topic has {@code partitions}:
   * the producer's own default partitioning of the key (murmur2 of its UTF-8 bytes), so a trainer knows which adapters
   * a partition assigned to it carries. Adding partitions moves adapters, as it moves any key in Kafka.
   */
  public static int partitionOf(String adapterName, int partitions) {
    return BuiltInPartitioner.partitionForKey(adapterName.getBytes(StandardCharsets.UTF_8), partitions);
  }

  /** Topic-level settings: retention for the event streams, compaction for the adapter log. */
  public static Map<String, String> settings(String topic) {
    return switch (topic) {
      case ADAPTERS -> Map.of("cleanup.policy", "compact", "min.compaction.lag.ms", "0");
      case TRAJECTORIES, FEEDBACK -> Map.of("cleanup.policy", "delete", "retention.ms", String.valueOf(7L * 24 * 3600 * 1000));
      default -> Map.of("cleanup.policy", "delete");
    };
  }
}
