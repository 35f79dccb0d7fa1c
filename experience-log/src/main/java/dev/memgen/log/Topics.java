package dev.memgen.log;

import java.util.Map;

/**
 * The Kafka topics MemGen's services talk through, with the settings each needs. Trajectories and feedback are
 * keyed so one session's (one trajectory's) records stay ordered in one partition; adapter announcements are
 * compacted, so the topic always holds the latest version of every adapter and a restarted weaver catches up
 * from it alone.
 */
public final class Topics {
  /** Finished requests ({@code memgen.v1.Trajectory}), key: session id. */
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

  /** Topic-level settings: retention for the event streams, compaction for the adapter log. */
  public static Map<String, String> settings(String topic) {
    return switch (topic) {
      case ADAPTERS -> Map.of("cleanup.policy", "compact", "min.compaction.lag.ms", "0");
      case TRAJECTORIES, FEEDBACK -> Map.of("cleanup.policy", "delete", "retention.ms", String.valueOf(7L * 24 * 3600 * 1000));
      default -> Map.of("cleanup.policy", "delete");
    };
  }
}
