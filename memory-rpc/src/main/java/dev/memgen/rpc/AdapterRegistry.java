package dev.memgen.rpc;

import dev.memgen.model.Decoder;
import dev.memgen.model.memory.InProcessMemory;
import dev.memgen.model.memory.Memory;
import io.grpc.Status;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.TreeMap;
import java.util.TreeSet;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Future;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The named adapters one memory host serves (a weaver, a trigger, or a reasoner's embedded memory): for every name it knows, the version that is current and where to load it
 * from; which versions are loaded; and how many sessions hold each. Three rules:
 *
 * <ul>
 *   <li>A session pins the version current when it opens and keeps it to its end, so a swap never changes the
 *       latents of a generation under way. A new version is loaded beside the old one and replaces it as current in
 *       one step; the old one's native memory is freed once its last session has closed.
 *   <li>At most {@code maxResident} names have their current version loaded; past that, the least recently used
 *       name is unloaded (its memory freed when its last session closes, never under one) and loaded again from its
 *       source by the next session that asks for it.
 *   <li>A version that cannot be loaded changes nothing: the name keeps its previous version.
 * </ul>
 *
 * <p>Methods that load or free a memory run on the service's model thread (the only thread that drives the model);
 * every method is synchronized so that {@link #snapshot} can be read from any thread.
 */
final class AdapterRegistry implements AutoCloseable {
  private static final Logger LOG = LoggerFactory.getLogger(AdapterRegistry.class);

  /**
   * Where one version of a named adapter comes from: a memory directory (already verified against its published
   * hashes when {@code sha256} is set; "" for the directory the service was started with), or a memory the caller
   * {@code lent}, which this registry uses but never closes.
   */
  record Source(String name, long version, String sha256, Path dir, Memory lent) {
    Source {
      Objects.requireNonNull(name);
      Objects.requireNonNull(sha256);
      if (dir == null && lent == null) {
        throw new IllegalArgumentException("a source needs a directory or a memory");
      }
    }

    /** An announced version: a name, a version >= 1, its record's hash and the directory it was verified into. */
    static Source announced(String name, long version, String sha256, Path dir) {
      if (name.isEmpty() || version < 1 || sha256.isEmpty()) {
        throw new IllegalArgumentException("install needs a name, a version >= 1 and the record's sha256; got '" + name
            + "' v" + version + " sha256 '" + sha256 + "'");
      }
      return new Source(name, version, sha256, dir, null);
    }

    String describe() {
      return "adapter '" + name + "' v" + version + (dir == null ? "" : " (" + dir + ")");
    }
  }

  /** One loaded version, and the sessions pinned to it. */
  static final class Loaded {
    final Source source;
    final Memory memory;
    final InProcessMemory weaving;
    private final boolean owned; // loaded by this registry, so freed by it
    private int sessions;
    private boolean current = true;
    private boolean closed;

    private Loaded(Source source, Memory memory, InProcessMemory weaving, boolean owned) {
      this.source = source;
      this.memory = memory;
      this.weaving = weaving;
      this.owned = owned;
    }

    String name() {
      return source.name();
    }

    long version() {
      return source.version();
    }

    boolean readsHidden() {
      return memory.manifest().weaverInput().equals("hidden");
    }
  }

  private final Decoder base;
  private final String baseFingerprint;
  private final String host; // "weaver", "trigger", ...: for messages
  private final String defaultName;
  private final int maxResident;
  private final Map<String, Source> sources = new HashMap<>(); // the current version of every known name
  // Names whose current version is loaded, least recently used first. Insertion-ordered and touched by hand (remove,
  // put) rather than access-ordered, so that looking an entry up for a swap or a snapshot does not count as a use.
  private final LinkedHashMap<String, Loaded> resident = new LinkedHashMap<>();
  private final List<Loaded> retired = new ArrayList<>(); // replaced or evicted, still held by open sessions

  /**
   * @param initial the default adapter's starting version, which sessions that name no adapter get
   * @param initialMemory {@code initial}'s memory, loaded from {@code initial.dir()} and handed over (freed by this
   *     registry once replaced); null for a lent source
   */
  AdapterRegistry(String host, Decoder base, String baseFingerprint, int maxResident, Source initial, Memory initialMemory) {
    if (maxResident < 1) {
      throw new IllegalArgumentException("at most " + maxResident + " resident adapters: must be >= 1");
    }
    this.base = base;
    this.baseFingerprint = baseFingerprint;
    this.host = host;
    this.defaultName = initial.name();
    this.maxResident = maxResident;
    Loaded first = initial.lent() != null ? wrap(initial, initial.lent(), false)
        : wrap(initial, Objects.requireNonNull(initialMemory, "the starting memory"), true);
    sources.put(defaultName, initial);
    resident.put(defaultName, first);
  }

  String defaultName() {
    return defaultName;
  }

  /** The adapter a requested name means ("" is the default). */
  String resolve(String requested) {
    return requested.isEmpty() ? defaultName : requested;
  }

  /**
   * The current version of {@code requested} ("" for the default), loaded if it is not, held for a session until
   * {@link #unpin}. Counts as a use of that name.
   *
   * @param field the request field that named it, for messages
   */
  synchronized Loaded pin(String requested, String field) {
    Loaded v = use(requested, field);
    v.sessions++;
    return v;
  }

  /** The session holding {@code v} has ended; a version no longer current is freed with its last session. */
  synchronized void unpin(Loaded v) {
    if (v.sessions <= 0) {
      throw new IllegalStateException(v.source.describe() + " unpinned more often than pinned");
    }
    v.sessions--;
    if (!v.current && v.sessions == 0) {
      retired.remove(v);
      free(v, "its last session closed");
    }
  }

  /** The current version of {@code requested}, loaded if it is not (a use, as for {@link #pin}), not held. */
  synchronized Loaded describe(String requested, String field) {
    return use(requested, field);
  }

  /**
   * Makes {@code s} the current version of its name. The version is loaded first; if that fails nothing changes and
   * the exception says why. A name that is loaded swaps at once (open sessions keep the version they pinned); one
   * that is not is loaded only to prove it loads and freed again, so an unused name never evicts a used one.
   */
  synchronized AdapterHost.Installed install(Source s) {
    Source before = sources.get(s.name());
    if (before != null && before.version() == s.version() && !s.sha256().isEmpty() && s.sha256().equals(before.sha256())) {
      return new AdapterHost.Installed(s.name(), s.version(), before.version(), false, true);
    }
    Loaded fresh = load(s);
    long previous = before == null ? 0 : before.version();
    sources.put(s.name(), s);
    Loaded old = resident.get(s.name());
    if (old == null) {
      fresh.current = false;
      free(fresh, "loaded only to check it: no session uses '" + s.name() + "' now");
      return new AdapterHost.Installed(s.name(), s.version(), previous, false, false);
    }
    resident.put(s.name(), fresh); // replacing a key keeps its place in the LRU order: a swap is not a use
    retire(old, "replaced by v" + s.version());
    return new AdapterHost.Installed(s.name(), s.version(), previous, true, false);
  }

  /**
   * {@link #install} run on {@code modelThread} (blocking until done): the {@link AdapterHost#install} of a host
   * whose memories only one thread may load and free.
   */
  AdapterHost.Installed installOn(ExecutorService modelThread, String name, long version, String sha256,
      Path dir) throws InterruptedException {
    Source s = Source.announced(name, version, sha256, dir);
    Future<AdapterHost.Installed> done = modelThread.submit(() -> install(s));
    try {
      return done.get();
    } catch (ExecutionException e) {
      throw new IllegalArgumentException(s.describe() + " cannot be loaded: " + e.getCause().getMessage(), e.getCause());
    } catch (InterruptedException e) {
      done.cancel(false);
      throw e;
    }
  }

  /** Every version that matters now: each known name's current one (loaded or not), then the replaced ones still held. */
  synchronized List<AdapterHost.Adapter> snapshot() {
    List<AdapterHost.Adapter> out = new ArrayList<>();
    for (Source s : new TreeMap<>(sources).values()) {
      Loaded v = resident.get(s.name());
      out.add(new AdapterHost.Adapter(s.name(), s.version(), s.sha256(), s.dir(), v != null, true, v == null ? 0 : v.sessions));
    }
    for (Loaded v : retired) {
      out.add(new AdapterHost.Adapter(v.name(), v.version(), v.source.sha256(), v.source.dir(), true, false, v.sessions));
    }
    return out;
  }

  /** The loaded current version of {@code name}, or null (for tests that watch a memory being freed). */
  synchronized Loaded loaded(String name) {
    return resident.get(name);
  }

  /** Frees every memory this registry loaded, held or not: the service is shutting down. */
  @Override
  public synchronized void close() {
    for (Loaded v : resident.values()) {
      free(v, "the service is closing");
    }
    for (Loaded v : retired) {
      free(v, "the service is closing");
    }
    resident.clear();
    retired.clear();
  }

  private Loaded use(String requested, String field) {
    String name = resolve(requested);
    Loaded v = resident.remove(name);
    if (v == null) {
      Source s = sources.get(name);
      if (s == null) {
        throw new SessionCall.Refusal(Status.Code.NOT_FOUND, field + " '" + name + "' is unknown to this " + host + " (it serves "
            + String.join(", ", new TreeSet<>(sources.keySet()).stream().map(n -> "'" + n + "'").toList()) + ")");
      }
      try {
        v = load(s);
      } catch (RuntimeException e) {
        LOG.error("{} cannot be loaded for a session: {}", s.describe(), e.getMessage());
        throw new SessionCall.Refusal(Status.Code.INTERNAL, s.describe() + " cannot be loaded: " + e.getMessage());
      }
      LOG.info("{} loaded on demand", s.describe());
    }
    resident.put(name, v); // now the most recently used
    while (resident.size() > maxResident) {
      Loaded eldest = resident.values().iterator().next();
      resident.remove(eldest.name());
      retire(eldest, "unloaded to stay within " + maxResident + " resident adapters (least recently used)");
    }
    return v;
  }

  private void retire(Loaded v, String why) {
    v.current = false;
    if (v.sessions == 0) {
      free(v, why);
    } else {
      retired.add(v);
      LOG.info("{} is no longer current ({}); freed when its {} open session(s) close", v.source.describe(), why, v.sessions);
    }
  }

  private void free(Loaded v, String why) {
    if (!v.closed) {
      v.closed = true;
      if (v.owned) {
        v.memory.close();
        LOG.info("{} freed: {}", v.source.describe(), why);
      } else {
        LOG.info("{} no longer used ({}); its owner frees it", v.source.describe(), why);
      }
    }
  }

  private Loaded load(Source s) {
    if (s.lent() != null) {
      return wrap(s, s.lent(), false);
    }
    Memory m = Memory.load(s.dir(), base, baseFingerprint);
    if (!s.sha256().isEmpty() && m.manifest().version() != s.version()) {
      // The announced (store) version is the identity sessions see; a manifest that disagrees is worth a look.
      LOG.warn("{}: its manifest.json says version {}; serving it as v{}, the version it was published as",
          s.describe(), m.manifest().version(), s.version());
    }
    return wrap(s, m, true);
  }

  private Loaded wrap(Source s, Memory m, boolean owned) {
    return new Loaded(s, m, new InProcessMemory(base, m), owned);
  }
}
