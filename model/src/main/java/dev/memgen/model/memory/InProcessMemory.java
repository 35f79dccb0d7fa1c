package dev.memgen.model.memory;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDArrays;
import ai.djl.ndarray.NDList;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.Shape;
import dev.memgen.model.Decoder;
import dev.memgen.model.Trigger;
import dev.memgen.model.Weaver;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;

/**
 * The weaver and trigger in the reasoner's own process, on the same base weights (one copy in memory): the
 * embedded default, and what the gRPC services wrap.
 */
public final class InProcessMemory {
  private static final int INITIAL_CAPACITY = 256;
  private final Decoder base;
  private final Memory memory;

  public InProcessMemory(Decoder base, Memory memory) {
    this.base = base;
    this.memory = memory;
  }

  public Memory memory() {
    return memory;
  }

  public WeaverLink weaver() {
    return id -> newWeaverSession();
  }

  public TriggerLink trigger() {
    return id -> newTriggerSession();
  }

  public WeaverSession newWeaverSession() {
    return new WeaverSession();
  }

  public TriggerSession newTriggerSession() {
    return new TriggerSession();
  }

  /**
   * Rows reach the weaver lazily: tokens and accepted latents queue up in order and go through the weaver together
   * with the queries, in one forward call at the next weave. One call over (K latents + the tokens since + K
   * queries) instead of three: a forward over a handful of rows costs nearly as much as one over fifty (small
   * matrix products run far below peak), so this saves two per insertion. The math is the same: same rows, same
   * order, same positions.
   */
  public final class WeaverSession implements WeaverLink.Session {
    private final NDManager manager = base.manager().newSubManager();
    private final Weaver.Session session = memory.weaver().newSession(INITIAL_CAPACITY);
    private final NDList pending = new NDList();
    private final boolean readsHidden = memory.manifest().weaverInput().equals("hidden");
    private NDArray lastLatents;
    private RuntimeException broken;

    @Override
    public int k(Weaver.Kind kind) {
      return memory.weaver().k(kind);
    }

    @Override
    public long adapterVersion() {
      return memory.manifest().version();
    }

    /** Rows of the prefix so far, queued ones included. */
    public int length() {
      return session.length() + pending.stream().mapToInt(a -> (int) a.getShape().get(1)).sum();
    }

    @Override
    public void appendTokens(int[] ids) {
      if (readsHidden) {
        throw new IllegalStateException("this weaver reads the reasoner's hidden states: append them with the tokens");
      }
      if (ids.length > 0) {
        pending.add(base.embed(manager, new int[][] {ids}));
      }
    }

    @Override
    public boolean readsHiddenStates() {
      return readsHidden;
    }

    @Override
    public void appendTokens(int[] ids, float[] hiddenStates) {
      if (!readsHidden) {
        WeaverLink.Session.super.appendTokens(ids, hiddenStates);
      }
      if (hiddenStates.length != ids.length * base.config().hiddenSize()) {
        throw new IllegalArgumentException(ids.length + " tokens need " + ids.length * base.config().hiddenSize()
            + " hidden-state values, got " + hiddenStates.length);
      }
      if (ids.length > 0) {
        appendRows(hiddenStates);
      }
    }

    @Override
    public void acceptLatents(float[] hiddenStates) {
      if (!readsHidden) {
        WeaverLink.Session.super.acceptLatents(hiddenStates);
      }
      if (lastLatents == null) {
        throw new IllegalStateException("no weave to accept");
      }
      if (hiddenStates.length != lastLatents.size()) {
        throw new IllegalArgumentException("the latents need " + lastLatents.size() + " hidden-state values, got "
            + hiddenStates.length);
      }
      lastLatents.close();
      lastLatents = null;
      appendRows(hiddenStates);
    }

    /** Appends rows given by the caller ({@code [n * hidden]}, row-major): latents woven elsewhere, or token rows. */
    public void appendRows(float[] rows) {
      int h = base.config().hiddenSize();
      if (rows.length == 0 || rows.length % h != 0) {
        throw new IllegalArgumentException("rows must be n * " + h + " floats, got " + rows.length);
      }
      pending.add(manager.create(rows, new Shape(1, rows.length / h, h)));
    }

    @Override
    public float[] weave(Weaver.Kind kind) {
      if (lastLatents != null) { // woven but not accepted: not part of the prefix
        lastLatents.close();
        lastLatents = null;
      }
      if (broken != null) {
        throw new IllegalStateException("this weaver session failed earlier and its prefix is incomplete", broken);
      }
      NDArray rows = pending.isEmpty() ? null : pending.size() == 1 ? pending.head() : NDArrays.concat(pending, 1);
      try {
        lastLatents = session.weave(kind, rows, manager);
      } catch (RuntimeException e) {
        broken = e; // the rows may or may not have reached the cache: no later weave could be trusted
        throw e;
      } finally {
        if (rows != null) {
          rows.close();
        }
        pending.close();
        pending.clear();
      }
      return lastLatents.toFloatArray();
    }

    @Override
    public void acceptLatents() {
      if (readsHidden) {
        throw new IllegalStateException("this weaver reads the reasoner's hidden states: accept latents with theirs");
      }
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

  /**
   * Tokens reach the trigger lazily too: they queue up and go through it in one forward call when a probability is
   * asked for (the only time the trigger's state is read).
   */
  public final class TriggerSession implements TriggerLink.Session {
    private final Trigger.Session session = memory.trigger().newSession(INITIAL_CAPACITY);
    private final List<int[]> pending = new ArrayList<>();

    @Override
    public void appendTokens(int[] ids) {
      if (ids.length > 0) {
        pending.add(ids.clone());
      }
    }

    @Override
    public float probability() {
      if (!pending.isEmpty()) {
        int[] ids = pending.stream().flatMapToInt(Arrays::stream).toArray();
        pending.clear();
        session.append(ids);
      }
      return session.probability();
    }

    @Override
    public long adapterVersion() {
      return memory.manifest().version();
    }

    @Override
    public void close() {
      session.close();
    }
  }
}
