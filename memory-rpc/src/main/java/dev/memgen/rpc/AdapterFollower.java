package dev.memgen.rpc;

import dev.memgen.log.AdapterLog;
import dev.memgen.log.Topics;
import dev.memgen.log.store.AdapterStore;
import dev.memgen.proto.v1.AdapterComponent;
import dev.memgen.proto.v1.AdapterPublished;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.time.Instant;
import java.util.ArrayDeque;
import java.util.Comparator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.Set;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.regex.Pattern;
import java.util.stream.Collectors;
import java.util.stream.Stream;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.common.errors.WakeupException;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Follows the adapters topic ({@code memgen.adapters}) and hot-swaps the versions it announces for one component
 * (the weaver or the trigger) into an {@link AdapterHost}. For each announcement of that component, in topic order: one made for another base model is refused; the version is copied out of the
 * {@link AdapterStore} into a cache directory, its record checked against the announced sha256 and every file
 * against the record (a corrupted file is refused by name); then {@link AdapterHost#install} loads it and makes it
 * current. Whatever is refused leaves the name on its previous version. Every outcome is logged and counted
 * ({@link #status}).
 *
 * <p>It reads the topic from the beginning: the topic is compacted, so after a restart it holds the latest
 * announcement per adapter, and only that one is loaded (the catch-up applies the last announcement of each key and
 * skips the superseded ones). Then it follows new announcements as they come. A broker that is down delays swaps,
 * never serving: the consumer reconnects by itself, and a failure outside it is retried after a pause.
 */
public final class AdapterFollower implements AutoCloseable {
  private static final Logger LOG = LoggerFactory.getLogger(AdapterFollower.class);
  private static final int RECENT = 100; // events kept for status()
  private static final Duration MAX_PAUSE = Duration.ofSeconds(30); // between attempts while the broker is away
  private static final Pattern CACHE_ENTRY = Pattern.compile("\\d+-[0-9a-f]{12}");

  /**
   * What became of one announcement.
   *
   * @param offset where it is on the adapters topic
   * @param loaded true if it is now the name's current version, false if it was refused
   * @param detail what was done ("swapped in, was v2", ...) or why it was refused
   */
  public record Event(Instant at, long offset, String name, long version, boolean loaded, String detail) {}

  /**
   * Counters and the latest events. {@code caughtUp}: the announcements on the topic at startup have been applied.
   * {@code ignored}: announcements for the other component, or records that do not decode.
   */
  public record Status(boolean caughtUp, long position, long loaded, long refused, long ignored, List<Event> recent) {
    /** One line for a health report: "caught up at offset 12, 3 versions loaded, 0 refused". */
    public String summary() {
      return (caughtUp ? "caught up" : "catching up") + " at offset " + position + ", " + loaded + " versions loaded, "
          + refused + " refused";
    }
  }

  private final String bootstrap;
  private final AdapterStore store;
  private final Path cacheDir;
  private final AdapterHost service;
  private final AdapterComponent component;
  private final String consumerGroup;
  private Path temporaryCache; // a cache this follower created, removed by close()
  private final Thread thread;
  private final CountDownLatch caughtUp = new CountDownLatch(1);
  private final CountDownLatch closed = new CountDownLatch(1);
  private final ArrayDeque<Event> recent = new ArrayDeque<>();
  private volatile boolean closing;
  private volatile KafkaConsumer<String, byte[]> consumer; // for wakeup() from close()
  private long position = -1; // the next offset to read; -1 until the catch-up
  private long loaded;
  private long refused;
  private long ignored;

  /**
   * @param cacheDir where versions are copied out of the store to be loaded from (one directory per version, under
   *     one per adapter name; directories of versions no longer in use are removed)
   */
  public AdapterFollower(String bootstrap, AdapterStore store, Path cacheDir, AdapterHost service, AdapterComponent component) {
    this.bootstrap = bootstrap;
    this.store = store;
    this.cacheDir = cacheDir;
    this.service = service;
    this.component = component;
    this.consumerGroup = "memgen-" + component.name().toLowerCase() + "-adapters";
    this.thread = new Thread(this::run, "memgen-" + component.name().toLowerCase() + "-follower");
    thread.setDaemon(true);
  }

  /** The component this follower swaps (WEAVER or TRIGGER). */
  public AdapterComponent component() {
    return component;
  }

  public void start() {
    LOG.info("following the {} versions announced on {} at {} (store {}, cache {})", component.name().toLowerCase(),
        Topics.ADAPTERS, bootstrap, store.root(), cacheDir);
    thread.start();
  }

  /**
   * A service's follower from its configuration ({@code memgen.log.bootstrap}, {@code memgen.adapters.store},
   * {@code memgen.adapters.cache-dir}), started and caught up; empty (with a warning when only one of the two is set)
   * unless both the broker and the store are configured. Versions are copied under the cache directory, or a
   * temporary one removed at {@link #close}. A restarted service should serve the announced versions from its first
   * session on; a broker that is down must not keep it from serving at all, though: past {@code catchUpTimeout} it
   * serves what it has and swaps later.
   *
   * @throws IllegalStateException the store or the cache cannot be opened (the message names which)
   */
  public static Optional<AdapterFollower> fromConfig(Optional<String> bootstrap, Optional<String> storeDir,
      Optional<String> cacheDir, AdapterHost service, AdapterComponent component, Duration catchUpTimeout)
      throws InterruptedException {
    if (bootstrap.isEmpty() || storeDir.isEmpty()) {
      if (bootstrap.isPresent() || storeDir.isPresent()) {
        LOG.warn("{} announcements are not followed: that needs both memgen.log.bootstrap and memgen.adapters.store "
            + "(only {} is set)", component.name().toLowerCase(),
            storeDir.isPresent() ? "memgen.adapters.store" : "memgen.log.bootstrap");
      }
      return Optional.empty();
    }
    Path cache = null;
    Path temporary = null;
    AdapterStore store;
    try {
      if (cacheDir.isPresent()) {
        cache = Path.of(cacheDir.get());
        Files.createDirectories(cache);
      } else {
        temporary = Files.createTempDirectory("memgen-" + component.name().toLowerCase() + "-adapters");
        cache = temporary;
      }
      store = AdapterStore.open(Path.of(storeDir.get()));
    } catch (IOException e) {
      if (temporary != null) {
        deleteQuietly(temporary);
      }
      throw new IllegalStateException("cannot open memgen.adapters.store=" + storeDir.get() + " (cache "
          + (cache == null ? cacheDir.orElse("?") : cache) + "): " + e.getMessage(), e);
    }
    AdapterFollower f = new AdapterFollower(bootstrap.get(), store, cache, service, component);
    f.temporaryCache = temporary;
    f.start();
    if (!f.awaitCatchUp(catchUpTimeout)) {
      LOG.warn("the {} announcements on {} are not read after {}; serving the versions loaded so far and swapping when "
          + "they are", component.name().toLowerCase(), bootstrap.get(), catchUpTimeout);
    }
    return Optional.of(f);
  }

  /**
   * {@link #fromConfig} for each of {@code hosts} (an embedded memory's weaver and trigger), each with its own cache
   * under {@code cacheDir} (a subdirectory per component); empty unless the broker and the store are configured. If
   * one cannot start, those already started are closed.
   */
  public static List<AdapterFollower> forHosts(Map<AdapterComponent, AdapterHost> hosts, Optional<String> bootstrap,
      Optional<String> storeDir, Optional<String> cacheDir, Duration catchUpTimeout) throws InterruptedException {
    List<AdapterFollower> started = new java.util.ArrayList<>();
    try {
      for (Map.Entry<AdapterComponent, AdapterHost> h : hosts.entrySet()) {
        Optional<String> cache = cacheDir.map(d -> Path.of(d).resolve(h.getKey().name().toLowerCase()).toString());
        fromConfig(bootstrap, storeDir, cache, h.getValue(), h.getKey(), catchUpTimeout).ifPresent(started::add);
      }
    } catch (RuntimeException | InterruptedException e) {
      started.forEach(AdapterFollower::close);
      throw e;
    }
    return started;
  }

  /** Waits until the announcements already on the topic at startup have been applied; false on timeout. */
  public boolean awaitCatchUp(Duration timeout) throws InterruptedException {
    return caughtUp.await(timeout.toMillis(), TimeUnit.MILLISECONDS);
  }

  public synchronized Status status() {
    return new Status(caughtUp.getCount() == 0, position, loaded, refused, ignored, List.copyOf(recent));
  }

  /**
   * Stops following. Not by interrupting the thread: an interrupt inside the Kafka client or a file copy turns into
   * errors that say nothing about the cause; the consumer is woken up and a pause between retries cut short instead.
   */
  @Override
  public void close() {
    closing = true;
    closed.countDown();
    KafkaConsumer<String, byte[]> c = consumer;
    if (c != null) {
      c.wakeup();
    }
    try {
      thread.join(TimeUnit.SECONDS.toMillis(30));
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
    }
    if (thread.isAlive()) {
      LOG.warn("the adapter follower did not stop within 30 s");
    }
    if (temporaryCache != null) {
      deleteQuietly(temporaryCache);
    }
  }

  private void run() {
    Duration pause = Duration.ofMillis(500);
    while (!closing) {
      try (KafkaConsumer<String, byte[]> c = AdapterLog.consumer(bootstrap, consumerGroup)) {
        consumer = c;
        c.assign(List.of(AdapterLog.PARTITION));
        if (position < 0) {
          catchUp(c);
        } else {
          c.seek(AdapterLog.PARTITION, position);
        }
        pause = Duration.ofMillis(500);
        while (!closing) {
          for (ConsumerRecord<String, byte[]> r : c.poll(Duration.ofMillis(500))) {
            AdapterPublished a = AdapterLog.parse(r);
            if (a == null) {
              skipBadRecord(r);
            } else {
              apply(a, r.offset());
            }
            advance(r.offset() + 1);
          }
        }
      } catch (WakeupException e) {
        // close() woke the consumer
      } catch (InterruptedException e) {
        Thread.currentThread().interrupt();
        return;
      } catch (RuntimeException e) {
        if (closing) {
          return;
        }
        LOG.warn("following {} on {} failed ({}); retrying in {} ms", Topics.ADAPTERS, bootstrap, e, pause.toMillis());
        try {
          if (closed.await(pause.toMillis(), TimeUnit.MILLISECONDS)) {
            return;
          }
        } catch (InterruptedException ie) {
          return;
        }
        pause = pause.multipliedBy(2);
        if (pause.compareTo(MAX_PAUSE) > 0) {
          pause = MAX_PAUSE;
        }
      } finally {
        consumer = null;
      }
    }
  }

  /**
   * Reads the topic from its beginning to its end as of now and applies the last announcement of each key, in the
   * order of those last announcements. A version announced and then superseded before this weaver started is never
   * loaded (the topic is compacted, so it is mostly gone anyway).
   */
  private void catchUp(KafkaConsumer<String, byte[]> c) throws InterruptedException {
    c.seekToBeginning(List.of(AdapterLog.PARTITION));
    long end = c.endOffsets(List.of(AdapterLog.PARTITION), Duration.ofSeconds(30)).get(AdapterLog.PARTITION);
    record Latest(long offset, AdapterPublished announcement) {}
    Map<String, Latest> last = new LinkedHashMap<>();
    while (c.position(AdapterLog.PARTITION, Duration.ofSeconds(30)) < end && !closing) {
      for (ConsumerRecord<String, byte[]> r : c.poll(Duration.ofMillis(500))) {
        if (r.offset() >= end) {
          break; // announced during the catch-up: followed after it, in order
        }
        AdapterPublished a = AdapterLog.parse(r);
        if (a == null) {
          skipBadRecord(r);
          continue;
        }
        String key = AdapterLog.key(a.getAdapterName(), a.getComponent());
        last.remove(key); // re-inserted last: the order of the last announcements
        last.put(key, new Latest(r.offset(), a));
      }
    }
    if (closing) {
      return;
    }
    for (Latest l : last.values()) {
      apply(l.announcement(), l.offset());
    }
    advance(end);
    c.seek(AdapterLog.PARTITION, end);
    caughtUp.countDown();
    LOG.info("caught up with {}: {} adapter announcement(s) applied up to offset {}", Topics.ADAPTERS, last.size(), end);
  }

  private void apply(AdapterPublished a, long offset) throws InterruptedException {
    if (a.getComponent() != component) {
      synchronized (this) {
        ignored++;
      }
      LOG.debug("{}@{}: {} announcement for '{}', not this follower's", Topics.ADAPTERS, offset, a.getComponent(), a.getAdapterName());
      return;
    }
    String name = a.getAdapterName();
    long version = a.getVersion();
    String fingerprint = service.baseFingerprint();
    if (!a.getBaseFingerprint().equals(fingerprint)) {
      refuse(a, offset, "made for another base model (base_fingerprint '" + a.getBaseFingerprint()
          + "'; this " + component.name().toLowerCase() + "'s base is '" + fingerprint + "')");
      return;
    }
    boolean current = service.adapters().stream().anyMatch(x -> x.current() && x.name().equals(name)
        && x.version() == version && x.sha256().equals(a.getSha256()));
    if (current) { // announced again (e.g. re-published by a restarted trainer): nothing to copy or load
      LOG.info("{} '{}' v{} ({}@{}) is current already", kind(), name, version, Topics.ADAPTERS, offset);
      record(new Event(Instant.now(), offset, name, version, true, "already current"), true);
      return;
    }
    Path dir = null;
    try {
      String uri = store.recordUri(name, version); // also refuses a name that is no adapter name (e.g. "../x")
      if (!a.getUri().isEmpty() && !a.getUri().equals(uri)) {
        refuse(a, offset, "uri '" + a.getUri() + "' is not where the store keeps its record ('" + uri + "')");
        return;
      }
      dir = cacheDir.resolve(name).resolve(version + "-" + a.getSha256().substring(0, 12));
      // Left over from an earlier run, or the copy a replaced version still held by sessions was loaded from (a
      // rollback to it): copy it afresh, verifying it. Replacing files under a loaded memory is safe on POSIX systems:
      // what it loaded stays valid whatever happens to the names.
      deleteTree(dir);
      store.materialize(name, version, a.getSha256(), dir);
    } catch (IOException | RuntimeException e) {
      if (dir != null) {
        deleteQuietly(dir);
      }
      if (closing) {
        return; // interrupted by close(): not the version's fault
      }
      refuse(a, offset, "cannot be copied out of the adapter store " + store.root() + ": " + e.getMessage());
      return;
    }
    AdapterHost.Installed done;
    try {
      done = service.install(name, version, a.getSha256(), dir);
    } catch (IllegalArgumentException e) {
      deleteQuietly(dir);
      refuse(a, offset, e.getMessage());
      return;
    }
    String detail = done.alreadyCurrent() ? "already current"
        : (done.swapped() ? "swapped in" : "checked, loaded when a session asks for it")
            + (done.previous() == 0 ? " (a new adapter)" : " (was v" + done.previous() + ")")
            + (a.getRolledBackFrom() != 0 ? ", a rollback from v" + a.getRolledBackFrom() : "")
            + (a.getReason().isEmpty() ? "" : ", reason: " + a.getReason());
    LOG.info("{} '{}' v{} ({}@{}) loaded: {}; sessions opened from now on get it", kind(), name, version, Topics.ADAPTERS,
        offset, detail);
    record(new Event(Instant.now(), offset, name, version, true, detail), true);
    pruneCache(name);
  }

  private void refuse(AdapterPublished a, long offset, String why) {
    String still = service.adapters().stream()
        .filter(x -> x.name().equals(a.getAdapterName()) && x.current())
        .map(x -> "still serving v" + x.version()).findFirst().orElse("not served");
    LOG.error("{} '{}' v{} ({}@{}) refused: {}; {}", kind(), a.getAdapterName(), a.getVersion(), Topics.ADAPTERS, offset,
        why, still);
    record(new Event(Instant.now(), offset, a.getAdapterName(), a.getVersion(), false, why + "; " + still), false);
  }

  private String kind() {
    return component.name().toLowerCase();
  }

  private void skipBadRecord(ConsumerRecord<String, byte[]> r) {
    synchronized (this) {
      ignored++;
    }
    LOG.warn("{}@{} (key '{}') skipped: not a valid AdapterPublished record", Topics.ADAPTERS, r.offset(), r.key());
  }

  private synchronized void record(Event e, boolean ok) {
    if (ok) {
      loaded++;
    } else {
      refused++;
    }
    recent.addLast(e);
    while (recent.size() > RECENT) {
      recent.removeFirst();
    }
  }

  private synchronized void advance(long next) {
    position = next;
    notifyAll(); // awaitPast
  }

  /**
   * Waits until this follower has acted on the announcement at {@code offset} of the adapters topic (applied or
   * refused it, or skipped it as another component's); false on timeout. For callers that announced something and
   * must know it is in effect (tests, benches).
   */
  public synchronized boolean awaitPast(long offset, Duration timeout) throws InterruptedException {
    long deadline = System.nanoTime() + timeout.toNanos();
    while (position <= offset) {
      long left = deadline - System.nanoTime();
      if (left <= 0) {
        return false;
      }
      TimeUnit.NANOSECONDS.timedWait(this, left);
    }
    return true;
  }

  /** Removes the cached copies of {@code name}'s versions that no loaded or current version comes from. */
  private void pruneCache(String name) {
    Set<Path> inUse = service.adapters().stream().filter(x -> x.dir() != null).map(AdapterHost.Adapter::dir)
        .collect(Collectors.toSet());
    Path dir = cacheDir.resolve(name);
    try (Stream<Path> entries = Files.list(dir)) {
      for (Path p : entries.toList()) {
        if (CACHE_ENTRY.matcher(p.getFileName().toString()).matches() && !inUse.contains(p)) {
          deleteQuietly(p);
        }
      }
    } catch (IOException e) {
      LOG.warn("cannot tidy the adapter cache {}: {}", dir, e.getMessage());
    }
  }

  public static void deleteTree(Path dir) throws IOException {
    if (!Files.exists(dir)) {
      return;
    }
    try (Stream<Path> files = Files.walk(dir)) {
      for (Path p : files.sorted(Comparator.reverseOrder()).toList()) {
        Files.delete(p);
      }
    }
  }

  private static void deleteQuietly(Path dir) {
    try {
      deleteTree(dir);
    } catch (IOException e) {
      LOG.warn("cannot remove {}: {}", dir, e.getMessage());
    }
  }
}
