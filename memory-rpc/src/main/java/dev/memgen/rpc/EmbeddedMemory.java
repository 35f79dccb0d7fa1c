package dev.memgen.rpc;

import dev.memgen.model.Decoder;
import dev.memgen.model.Weaver;
import dev.memgen.model.memory.InProcessMemory;
import dev.memgen.model.memory.Memory;
import dev.memgen.model.memory.MemoryManifest;
import dev.memgen.model.memory.TriggerLink;
import dev.memgen.model.memory.WeaverLink;
import java.nio.file.Path;
import java.util.List;

/**
 * A reasoner's embedded memory whose weaver and trigger versions swap while it serves: two {@link AdapterHost}s, one
 * per component, each an {@link AdapterRegistry} of the one adapter the reasoner uses. A generation pins the weaver
 * and the trigger versions current when it opens and keeps them to its end; a replaced version is freed with its
 * last generation. The two are swapped apart because the trainer announces them apart (a trigger trained with the
 * weaver frozen changes only the trigger). Installs load on the caller's thread (the follower's): loading beside a
 * running generation is safe, and a memory is freed only once no generation holds it.
 */
final class EmbeddedMemory implements AutoCloseable {
  final Host weaver;
  final Host trigger;

  /** Loads {@code dir} as the starting version of {@code adapterName}, for the weaver and (a second copy) the trigger. */
  EmbeddedMemory(Decoder base, String baseFingerprint, String adapterName, Path dir) {
    weaver = new Host("embedded weaver", base, baseFingerprint, adapterName, dir);
    try {
      trigger = new Host("embedded trigger", base, baseFingerprint, adapterName, dir);
    } catch (RuntimeException e) {
      weaver.close();
      throw e;
    }
  }

  /** The manifest of the weaver version generations get now (its insertion rule). */
  MemoryManifest manifest() {
    return weaver.registry.describe("", "adapter_name").memory.manifest();
  }

  WeaverLink weaverLink() {
    return id -> {
      AdapterRegistry.Loaded v = weaver.registry.pin("", "adapter_name");
      try {
        return new PinnedWeaver(v.weaving.newWeaverSession(), v);
      } catch (RuntimeException e) {
        weaver.registry.unpin(v);
        throw e;
      }
    };
  }

  TriggerLink triggerLink() {
    return id -> {
      AdapterRegistry.Loaded v = trigger.registry.pin("", "adapter_name");
      try {
        return new PinnedTrigger(v.weaving.newTriggerSession(), v);
      } catch (RuntimeException e) {
        trigger.registry.unpin(v);
        throw e;
      }
    };
  }

  @Override
  public void close() {
    weaver.close();
    trigger.close();
  }

  /** One component's versions. */
  static final class Host implements AdapterHost, AutoCloseable {
    final AdapterRegistry registry;
    private final String baseFingerprint;

    private Host(String what, Decoder base, String baseFingerprint, String adapterName, Path dir) {
      Memory first = Memory.load(dir, base, baseFingerprint);
      this.baseFingerprint = baseFingerprint;
      this.registry = new AdapterRegistry(what, base, baseFingerprint, 1,
          new AdapterRegistry.Source(adapterName, first.manifest().version(), "", dir, null), first);
    }

    @Override
    public String baseFingerprint() {
      return baseFingerprint;
    }

    @Override
    public List<Adapter> adapters() {
      return registry.snapshot();
    }

    @Override
    public Installed install(String name, long version, String sha256, Path dir) {
      AdapterRegistry.Source s = AdapterRegistry.Source.announced(name, version, sha256, dir);
      if (!name.equals(registry.defaultName())) {
        throw new IllegalArgumentException(s.describe() + ": this reasoner's embedded memory is '" + registry.defaultName()
            + "'");
      }
      try {
        return registry.install(s);
      } catch (RuntimeException e) {
        throw new IllegalArgumentException(s.describe() + " cannot be loaded: " + e.getMessage(), e);
      }
    }

    @Override
    public void close() {
      registry.close();
    }
  }

  /** A weaver session that holds its version until it closes. */
  private final class PinnedWeaver implements WeaverLink.Session {
    private final InProcessMemory.WeaverSession s;
    private final AdapterRegistry.Loaded version;

    PinnedWeaver(InProcessMemory.WeaverSession s, AdapterRegistry.Loaded version) {
      this.s = s;
      this.version = version;
    }

    @Override public int k(Weaver.Kind kind) { return s.k(kind); }
    @Override public long adapterVersion() { return version.version(); }
    @Override public void appendTokens(int[] ids) { s.appendTokens(ids); }
    @Override public float[] weave(Weaver.Kind kind) { return s.weave(kind); }
    @Override public InProcessMemory.WeaverSession inProcess() { return s; }
    @Override public void acceptLatents() { s.acceptLatents(); }
    @Override public boolean readsHiddenStates() { return s.readsHiddenStates(); }
    @Override public void appendTokens(int[] ids, float[] hiddenStates) { s.appendTokens(ids, hiddenStates); }
    @Override public void acceptLatents(float[] hiddenStates) { s.acceptLatents(hiddenStates); }

    @Override
    public void close() {
      try {
        s.close();
      } finally {
        weaver.registry.unpin(version);
      }
    }
  }

  /** A trigger session that holds its version until it closes. */
  private final class PinnedTrigger implements TriggerLink.Session {
    private final InProcessMemory.TriggerSession s;
    private final AdapterRegistry.Loaded version;

    PinnedTrigger(InProcessMemory.TriggerSession s, AdapterRegistry.Loaded version) {
      this.s = s;
      this.version = version;
    }

    @Override public void appendTokens(int[] ids) { s.appendTokens(ids); }
    @Override public float probability() { return s.probability(); }
    @Override public InProcessMemory.TriggerSession inProcess() { return s; }
    @Override public long adapterVersion() { return version.version(); }

    @Override
    public void close() {
      try {
        s.close();
      } finally {
        trigger.registry.unpin(version);
      }
    }
  }
}
