package dev.memgen.model.memory;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDArrays;
import ai.djl.ndarray.NDList;
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

  /**
   * Rows reach the weaver lazily: tokens and accepted latents queue up in order and go through the weaver in one
   * forward call at the next weave. One call over (K latents + the tokens since) instead of two: a forward over a
   * handful of rows costs nearly as much as one over fifty (small matrix products run far below peak), so this
   * saves one per insertion. The math is the same: same rows, same order, same positions.
   */
  public final class WeaverSession implements WeaverLink.Session {
    private final NDManager manager = base.manager().newSubManager();
    private final Weaver.Session session = memory.weaver().newSession(INITIAL_CAPACITY);
    private final NDList pending = new NDList();
    private NDArray lastLatents;

    @Override
    public int k(Weaver.Kind kind) {
      return memory.weaver().k(kind);
    }

    @Override
    public void appendTokens(int[] ids) {
      if (ids.length > 0) {
        pending.add(base.embed(manager, new int[][] {ids}));
      }
    }

    @Override
    public float[] weave(Weaver.Kind kind) {
      if (lastLatents != null) { // woven but not accepted: not part of the prefix
        lastLatents.close();
        lastLatents = null;
      }
      if (!pending.isEmpty()) {
        NDArray rows = pending.size() == 1 ? pending.head() : NDArrays.concat(pending, 1);
        session.append(rows);
        rows.close();
        pending.close();
        pending.clear();
      }
      lastLatents = session.weave(kind, manager);
      return lastLatents.toFloatArray();
    }

    @Override
    public void acceptLatents() {
      if (lastLatents == null) {
        throw new IllegalStateException("no weave to accept");
      }
      pending.add(lastLatents);
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
