package dev.memgen.model.memory;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import dev.memgen.model.Decoder;
import dev.memgen.model.Trigger;
import dev.memgen.model.Weaver;

/**
 * The weaver and trigger in the reasoner's own process, on the same base weights (one copy in memory): the
 * embedded default, and what the gRPC services wrap.
 */
public final class InProcessMemory {
  private static final int INITIAL_CAPACITY = 256;
  private final Decoder base;
  private final Memory memory;

  public InProcessMemory(Decoder base, Memory memory) {
    if (!memory.manifest().weaverInput().equals("embeddings")) {
      // The weaver would need the reasoner's last-layer hidden row of every token; the loop sends token ids only.
      throw new IllegalArgumentException("weaver input '" + memory.manifest().weaverInput()
          + "' is not supported by the generate loop yet (use 'embeddings')");
    }
    this.base = base;
    this.memory = memory;
  }

  public Memory memory() {
    return memory;
  }

  public WeaverLink weaver() {
    return id -> new WeaverSession();
  }

  public TriggerLink trigger() {
    return id -> new TriggerSession();
  }

  public final class WeaverSession implements WeaverLink.Session {
    private final NDManager manager = base.manager().newSubManager();
    private final Weaver.Session session = memory.weaver().newSession(INITIAL_CAPACITY);
    private NDArray lastLatents;

    @Override
    public int k(Weaver.Kind kind) {
      return memory.weaver().k(kind);
    }

    @Override
    public void appendTokens(int[] ids) {
      if (ids.length == 0) {
        return;
      }
      try (NDManager m = manager.newSubManager()) {
        session.append(base.embed(m, new int[][] {ids}));
      }
    }

    @Override
    public float[] weave(Weaver.Kind kind) {
      if (lastLatents != null) {
        lastLatents.close();
      }
      lastLatents = session.weave(kind, manager);
      return lastLatents.toFloatArray();
    }

    @Override
    public void acceptLatents() {
      if (lastLatents == null) {
        throw new IllegalStateException("no weave to accept");
      }
      session.append(lastLatents);
      lastLatents.close();
      lastLatents = null;
    }

    @Override
    public void close() {
      session.close();
      manager.close();
    }
  }

  public final class TriggerSession implements TriggerLink.Session {
    private final Trigger.Session session = memory.trigger().newSession(INITIAL_CAPACITY);

    @Override
    public void appendTokens(int[] ids) {
      session.append(ids);
    }

    @Override
    public float probability() {
      return session.probability();
    }

    @Override
    public void close() {
      session.close();
    }
  }
}
