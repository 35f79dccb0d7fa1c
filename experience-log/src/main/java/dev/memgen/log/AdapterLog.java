package dev.memgen.log;

import com.google.protobuf.Timestamp;
import dev.memgen.log.store.AdapterStore;
import dev.memgen.proto.v1.AdapterComponent;
import dev.memgen.proto.v1.AdapterPublished;
import dev.memgen.proto.v1.OffsetRange;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.time.Instant;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import java.util.stream.Stream;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.common.TopicPartition;

/**
 * The adapters topic ({@code memgen.adapters}, compacted, one partition): which version of each named adapter's weaver
 * and trigger is current. A version is announced only after it is in the {@link AdapterStore}, so every announcement
 * names a record a follower can load; the latest announcement per key wins, including a rollback to an older version.
 */
public final class AdapterLog {
  /** The one partition of the adapters topic: a total order of announcements. */
  public static final TopicPartition PARTITION = new TopicPartition(Topics.ADAPTERS, 0);

  private AdapterLog() {}

  /** The record key: {@code "{adapter_name}/{component}"}, e.g. {@code default/weaver}. */
  public static String key(String adapterName, AdapterComponent component) {
    return adapterName + "/" + switch (component) {
      case WEAVER -> "weaver";
      case TRIGGER -> "trigger";
      default -> throw new IllegalArgumentException("component must be WEAVER or TRIGGER, got " + component);
    };
  }

  /** What is wrong with an announcement, or null when it can be acted on. */
  public static String validate(AdapterPublished a) {
    if (a.getSchemaVersion() != 1) {
      return "schema_version " + a.getSchemaVersion() + " (this reader knows 1)";
    }
    if (a.getAdapterName().isEmpty()) {
      return "adapter_name is empty";
    }
    if (a.getComponent() != AdapterComponent.WEAVER && a.getComponent() != AdapterComponent.TRIGGER) {
      return "component " + a.getComponent() + " is not WEAVER or TRIGGER";
    }
    if (a.getVersion() < 1) {
      return "version " + a.getVersion() + " < 1";
    }
    if (!a.getSha256().matches("[0-9a-f]{64}")) {
      return "sha256 '" + a.getSha256() + "' is not 64 lowercase hex characters";
    }
    if (a.getBaseFingerprint().isEmpty()) {
      return "base_fingerprint is empty";
    }
    return null;
  }

  /**
   * The announcement of version {@code v} of {@code component}, ready to publish: hash and path of its store record,
   * its parent, metrics and the input it was trained on.
   */
  public static AdapterPublished announcement(AdapterStore store, AdapterStore.Version v, AdapterComponent component,
      List<OffsetRange> trainedOn, long rolledBackFrom, String reason) throws IOException {
    Instant now = Instant.now();
    return AdapterPublished.newBuilder()
        .setAdapterName(v.name())
        .setComponent(component)
        .setVersion(v.version())
        .setParentVersion(v.parent())
        .setBaseFingerprint(v.baseFingerprint())
        .setSha256(store.recordSha256(v.name(), v.version()))
        .setUri(store.recordUri(v.name(), v.version()))
        .addAllTrainedOn(trainedOn)
        .putAllEvalMetrics(v.metrics())
        .setCreatedAt(Timestamp.newBuilder().setSeconds(now.getEpochSecond()).setNanos(now.getNano()))
        .setRolledBackFrom(rolledBackFrom)
        .setReason(reason)
        .setSchemaVersion(1)
        .build();
  }

  /** Publishes an announcement and waits until the broker has acknowledged it. */
  public static void publish(ExperienceLog log, AdapterPublished a, Duration timeout)
      throws InterruptedException, ExecutionException, TimeoutException {
    log.publish(Topics.ADAPTERS, key(a.getAdapterName(), a.getComponent()), a).get(timeout.toMillis(), TimeUnit.MILLISECONDS);
  }

  /** A rollback that was announced: the record, and where it landed on the adapters topic. */
  public record Rollback(AdapterPublished announced, long offset) {}

  /**
   * Makes an older version of {@code name}'s {@code component} current again: checks the version in the store (its
   * record and every file against their hashes), then announces it with {@code rolled_back_from} set to the version
   * current now. The operator's tool and the trainer's admin service both roll back through here.
   *
   * @throws IllegalArgumentException the version is not in the store, is damaged, is already current, or nothing is
   *     announced for that adapter yet (nothing to roll back from)
   */
  public static Rollback rollback(AdapterStore store, ExperienceLog log, String name, AdapterComponent component,
      long version, String reason, Duration timeout) throws Exception {
    AdapterStore.Version target = store.get(name, version); // names the store when the version does not exist
    Path scratch = Files.createTempDirectory("memgen-rollback-check");
    try {
      store.materialize(name, version, store.recordSha256(name, version), scratch.resolve("v"));
    } catch (AdapterStore.CorruptedAdapterException e) {
      throw new IllegalArgumentException("cannot roll back to a damaged version: " + e.getMessage(), e);
    } finally {
      deleteTree(scratch);
    }
    String key = key(name, component);
    AdapterPublished now = current(log.bootstrapServers(), timeout).get(key);
    if (now == null) {
      throw new IllegalArgumentException("no version of " + key + " is announced on " + Topics.ADAPTERS + " at "
          + log.bootstrapServers() + ": there is nothing to roll back from");
    }
    if (now.getVersion() == version) {
      throw new IllegalArgumentException(key + " v" + version + " is already current");
    }
    AdapterPublished a = announcement(store, target, component, List.of(), now.getVersion(), "rollback: " + reason);
    long offset = log.publish(Topics.ADAPTERS, key, a).get(timeout.toMillis(), TimeUnit.MILLISECONDS).offset();
    return new Rollback(a, offset);
  }

  private static void deleteTree(Path dir) throws IOException {
    try (Stream<Path> files = Files.walk(dir)) {
      for (Path p : files.sorted(Comparator.reverseOrder()).toList()) {
        Files.deleteIfExists(p);
      }
    }
  }

  /** Every valid announcement on the topic now, oldest first (compaction may have removed superseded ones). */
  public static List<AdapterPublished> readAll(String bootstrapServers, Duration timeout) {
    List<AdapterPublished> out = new ArrayList<>();
    try (KafkaConsumer<String, byte[]> consumer = consumer(bootstrapServers, "memgen-adapters-reader")) {
      consumer.assign(List.of(PARTITION));
      consumer.seekToBeginning(List.of(PARTITION));
      long end = consumer.endOffsets(List.of(PARTITION), timeout).get(PARTITION);
      long deadline = System.nanoTime() + timeout.toNanos();
      while (consumer.position(PARTITION, timeout) < end) {
        if (System.nanoTime() > deadline) {
          throw new IllegalStateException("reading " + Topics.ADAPTERS + " from " + bootstrapServers + " took over " + timeout);
        }
        for (ConsumerRecord<String, byte[]> r : consumer.poll(Duration.ofMillis(200))) {
          AdapterPublished a = parse(r);
          if (a != null) {
            out.add(a);
          }
        }
      }
    }
    return out;
  }

  /** The current announcement per key ({@link #key}), from {@link #readAll}. */
  public static Map<String, AdapterPublished> current(String bootstrapServers, Duration timeout) {
    Map<String, AdapterPublished> current = new LinkedHashMap<>();
    for (AdapterPublished a : readAll(bootstrapServers, timeout)) {
      current.put(key(a.getAdapterName(), a.getComponent()), a);
    }
    return current;
  }

  /** The announcement in a consumed record, or null when it does not decode or validate (followers skip those). */
  public static AdapterPublished parse(ConsumerRecord<String, byte[]> r) {
    AdapterPublished a = Records.ADAPTER_PUBLISHED.deserializeOrNull(r.value());
    return a != null && validate(a) == null ? a : null;
  }

  /** A consumer for the adapters topic (manual assignment; see {@link ExperienceLog#consumer}). */
  public static KafkaConsumer<String, byte[]> consumer(String bootstrapServers, String clientId) {
    return ExperienceLog.consumer(bootstrapServers, clientId, null);
  }
}
