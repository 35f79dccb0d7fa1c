package dev.memgen.trainer;

import dev.memgen.log.ExperienceLog;
import dev.memgen.log.Topics;
import io.opentelemetry.api.trace.Tracer;
import java.time.Duration;
import java.util.Collection;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.Properties;
import java.util.Set;
import java.util.TreeSet;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.atomic.AtomicBoolean;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRebalanceListener;
import org.apache.kafka.clients.consumer.CooperativeStickyAssignor;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.errors.WakeupException;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Trainers scaled out: several trainer processes share the adapters, each adapter trained by exactly one of them at a
 * time. Ownership is Kafka's own: every member subscribes to {@code memgen.trajectories} in one consumer group
 * ({@link #GROUP}); trajectories are keyed by adapter, so an adapter's stream is one partition ({@link
 * Topics#partitionOf}), and the member assigned that partition runs the adapter's {@link ContinualTrainer}, reading that
 * partition alone. The membership consumer reads nothing itself (its partitions stay paused): it holds the lease.
 *
 * <p>On a rebalance (a member killed, added or leaving) partitions move with the cooperative-sticky assignor, so only
 * the adapters that change hands stop. A member that gains an adapter starts its trainer, which recovers from the
 * adapter store exactly as a restarted one does (the latest version's offsets and ledger, the carried trajectories
 * read again): the store is still the commit point, so every trajectory is trained once. A member that gives one up
 * stops its trainer after the window in progress, before the partition is handed on. A member that lost its lease
 * without noticing (stalled past its session) may still finish a window: the store then refuses its version, which
 * another member has stored ({@link dev.memgen.log.store.AdapterStore.VersionConflictException}), so each adapter's
 * versions stay a single line of parents.
 *
 * <p>Every member must list the same adapters; one missing from a member's list is not trained while that member
 * holds its partition. The topic's partition count must not change under a running group (adapters would move, as
 * any key does).
 */
public final class TrainerGroup implements AutoCloseable {
  private static final Logger LOG = LoggerFactory.getLogger(TrainerGroup.class);
  /** The consumer group the trainers share. */
  public static final String GROUP = "memgen-trainers";
  /**
   * How long a member may take to give an adapter up (its window in progress finishes first): past it, the group
   * counts the member as gone and hands its adapters on, and the store fences whatever it still publishes.
   */
  private static final Duration MAX_HANDOVER = Duration.ofMinutes(15);

  /**
   * @param template every adapter's trainer settings (the adapter name and work directory replaced per adapter)
   * @param adapters the adapters the group trains
   * @param sessionTimeout a member that stops heartbeating for this long (killed, partitioned) loses its adapters
   */
  public record Settings(ContinualTrainer.Settings template, List<String> adapters, Duration sessionTimeout) {
    public Settings {
      adapters = List.copyOf(adapters);
      if (adapters.isEmpty() || new HashSet<>(adapters).size() != adapters.size()) {
        throw new IllegalArgumentException("a trainer group needs one or more distinct adapter names, got " + adapters);
      }
      if (sessionTimeout.compareTo(Duration.ofSeconds(6)) < 0) {
        throw new IllegalArgumentException("the group session timeout must be >= 6 s (the broker's minimum), got "
            + sessionTimeout);
      }
    }
  }

  private final Settings s;
  private final String member;
  private final Tracer tracer;
  private final Map<String, TrainerRunner> running = new ConcurrentHashMap<>();
  private final AtomicBoolean stop = new AtomicBoolean();
  private volatile KafkaConsumer<String, byte[]> consumer;
  private volatile int partitions;

  /** A member named {@code member} (unique in the group), its trainers tracing windows with {@code tracer}. */
  public TrainerGroup(Settings settings, String member, Tracer tracer) {
    this.s = settings;
    this.member = member;
    this.tracer = tracer;
  }

  /** The adapters this member trains now, with their trainers (absent while one starts or restarts). */
  public Map<String, Optional<ContinualTrainer>> owned() {
    Map<String, Optional<ContinualTrainer>> out = new LinkedHashMap<>();
    new TreeSet<>(running.keySet()).forEach(a -> {
      TrainerRunner r = running.get(a);
      if (r != null) {
        out.put(a, r.trainer());
      }
    });
    return out;
  }

  /**
   * Holds this member's share of the adapters until {@link #close} (from another thread). Trouble with the group (the
   * broker away at start, a settings error) gives every adapter up and tries again under a back-off (1 s to 60 s).
   */
  public void run() {
    TrainerRunner.untilStopped("trainer group member " + member, stop::get, this::member);
  }

  /** One membership: joins, holds the partitions assigned until stopped or failed, then gives every adapter up. */
  private void member() throws Exception {
    try (ExperienceLog log = new ExperienceLog(s.template().bootstrapServers())) {
      log.ensureTopics(s.template().partitions()); // the partition count is what maps adapters to partitions
    }
    Properties p = new Properties();
    p.put(ConsumerConfig.PARTITION_ASSIGNMENT_STRATEGY_CONFIG, CooperativeStickyAssignor.class.getName());
    p.put(ConsumerConfig.SESSION_TIMEOUT_MS_CONFIG, (int) s.sessionTimeout().toMillis());
    p.put(ConsumerConfig.HEARTBEAT_INTERVAL_MS_CONFIG, (int) Math.max(1000, s.sessionTimeout().toMillis() / 3));
    p.put(ConsumerConfig.MAX_POLL_INTERVAL_MS_CONFIG, (int) MAX_HANDOVER.toMillis());
    try (KafkaConsumer<String, byte[]> c = ExperienceLog.consumer(s.template().bootstrapServers(), "memgen-trainer-group-" + member,
        GROUP, p)) {
      consumer = c;
      if (stop.get()) {
        return;
      }
      partitions = c.partitionsFor(Topics.TRAJECTORIES, Duration.ofSeconds(30)).size();
      c.subscribe(List.of(Topics.TRAJECTORIES), new Lease(c));
      while (!stop.get()) {
        try {
          c.poll(Duration.ofMillis(500)); // heartbeats and rebalances; every partition is paused, so no records
        } catch (WakeupException e) {
          // close() woke it
        }
      }
    } finally {
      release(new TreeSet<>(running.keySet())); // before the consumer leaves: the window in progress finishes first
      consumer = null;
    }
  }

  /** What a rebalance does to this member: start the adapters gained, stop the ones given up. */
  private final class Lease implements ConsumerRebalanceListener {
    private final KafkaConsumer<String, byte[]> c;

    Lease(KafkaConsumer<String, byte[]> c) {
      this.c = c;
    }

    @Override
    public void onPartitionsAssigned(Collection<TopicPartition> gained) {
      c.pause(gained);
      for (String a : adaptersOn(gained)) {
        if (!running.containsKey(a)) {
          int partition = Topics.partitionOf(a, partitions);
          LOG.info("trainer group: {} now trains {} (partition {})", member, a, partition);
          ContinualTrainer.Settings settings = s.template().forAdapter(a, s.template().workDir().resolve(a));
          running.put(a, new TrainerRunner(a, () -> new ContinualTrainer(settings, Set.of(partition)).traced(tracer)));
        }
      }
    }

    @Override
    public void onPartitionsRevoked(Collection<TopicPartition> given) {
      release(adaptersOn(given));
    }

    @Override
    public void onPartitionsLost(Collection<TopicPartition> lost) {
      release(adaptersOn(lost)); // another member may train them already: whatever this one publishes now is refused
    }
  }

  private Set<String> adaptersOn(Collection<TopicPartition> parts) {
    Set<Integer> ids = new HashSet<>();
    parts.forEach(tp -> ids.add(tp.partition()));
    Set<String> out = new TreeSet<>();
    for (String a : s.adapters()) {
      if (ids.contains(Topics.partitionOf(a, partitions))) {
        out.add(a);
      }
    }
    return out;
  }

  private void release(Set<String> adapters) {
    for (String a : adapters) {
      TrainerRunner r = running.remove(a);
      if (r != null) {
        LOG.info("trainer group: {} gives up {} (after its window in progress)", member, a);
        try {
          r.close(MAX_HANDOVER);
        } catch (InterruptedException e) {
          Thread.currentThread().interrupt();
          return;
        }
      }
    }
  }

  /** Stops {@link #run}: the trainers finish their windows in progress, then the member leaves the group. */
  @Override
  public void close() {
    stop.set(true);
    KafkaConsumer<String, byte[]> c = consumer;
    if (c != null) {
      c.wakeup();
    }
  }
}
