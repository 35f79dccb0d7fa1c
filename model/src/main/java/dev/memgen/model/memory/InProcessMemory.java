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

    private Decoder base() {
      return base;
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
      return weaveTogether(List.of(this), List.of(kind)).get(0).latents();
    }

    @Override
    public WeaverSession inProcess() {
      return this;
    }

    /** The rows queued since the last weave, as one block (null: none); the session is ready to weave. */
    private NDArray takePending() {
      if (lastLatents != null) { // woven but not accepted: not part of the prefix
        lastLatents.close();
        lastLatents = null;
      }
      if (broken != null) {
        throw new IllegalStateException("this weaver session failed earlier and its prefix is incomplete", broken);
      }
      NDArray rows = pending.isEmpty() ? null : pending.size() == 1 ? pending.head() : NDArrays.concat(pending, 1);
      if (pending.size() > 1) {
        pending.close();
      }
      pending.clear();
      return rows;
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
   * Weaves several sessions at once: those on one base (of this memory or of others: other adapters, other versions)
   * in one forward call ({@link Weaver#weave(List, List, List, NDManager)}). A session that fails — or all of a call
   * that fails — is reported in its entry and is broken from then on; the others are not affected.
   */
  public static List<WeaverLink.Woven> weaveTogether(List<WeaverSession> sessions, List<Weaver.Kind> kinds) {
    List<WeaverLink.Woven> out = new ArrayList<>(java.util.Collections.nCopies(sessions.size(), null));
    java.util.Map<Decoder, List<Integer>> byBase = new java.util.LinkedHashMap<>();
    for (int i = 0; i < sessions.size(); i++) {
      byBase.computeIfAbsent(sessions.get(i).base(), b -> new ArrayList<>()).add(i);
    }
    for (List<Integer> group : byBase.values()) {
      List<Weaver.Session> ready = new ArrayList<>();
      List<Weaver.Kind> readyKinds = new ArrayList<>();
      List<NDArray> rows = new ArrayList<>();
      List<Integer> readyAt = new ArrayList<>();
      for (int i : group) {
        try {
          rows.add(sessions.get(i).takePending());
          ready.add(sessions.get(i).session);
          readyKinds.add(kinds.get(i));
          readyAt.add(i);
        } catch (RuntimeException e) {
          out.set(i, new WeaverLink.Woven(null, e));
        }
      }
      if (ready.isEmpty()) {
        continue;
      }
      Decoder base = sessions.get(readyAt.get(0)).base();
      try (NDManager m = base.manager().newSubManager()) {
        List<NDArray> latents = Weaver.weave(ready, readyKinds, rows, m);
        for (int j = 0; j < readyAt.size(); j++) {
          WeaverSession s = sessions.get(readyAt.get(j));
          latents.get(j).attach(s.manager);
          s.lastLatents = latents.get(j);
          out.set(readyAt.get(j), new WeaverLink.Woven(s.lastLatents.toFloatArray(), null));
        }
      } catch (RuntimeException e) {
        for (int i : readyAt) { // the rows may or may not have reached a cache: no later weave could be trusted
          sessions.get(i).broken = e;
          out.set(i, new WeaverLink.Woven(null, e));
        }
      } finally {
        rows.forEach(r -> {
          if (r != null) {
            r.close();
          }
        });
      }
    }
    return out;
  }

  /**
   * P(invoke) of several sessions at once: the tokens they have queued go through their triggers in one forward call
   * per base ({@link Trigger#append(List, List)}). A failing call is reported in every entry it covered.
   */
  public static List<TriggerLink.Read> probabilities(List<TriggerSession> sessions) {
    List<TriggerLink.Read> out = new ArrayList<>(java.util.Collections.nCopies(sessions.size(), null));
    java.util.Map<Decoder, List<Integer>> byBase = new java.util.LinkedHashMap<>();
    for (int i = 0; i < sessions.size(); i++) {
      byBase.computeIfAbsent(sessions.get(i).base(), b -> new ArrayList<>()).add(i);
    }
    for (List<Integer> group : byBase.values()) {
      try {
        Trigger.append(group.stream().map(i -> sessions.get(i).session).toList(),
            group.stream().map(i -> sessions.get(i).takePending()).toList());
      } catch (RuntimeException e) {
        group.forEach(i -> out.set(i, new TriggerLink.Read(Float.NaN, e)));
        continue;
      }
      for (int i : group) {
        try {
          out.set(i, new TriggerLink.Read(sessions.get(i).session.probability(), null));
        } catch (RuntimeException e) {
          out.set(i, new TriggerLink.Read(Float.NaN, e));
        }
      }
    }
    return out;
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
      session.append(takePending());
      return session.probability();
    }

    @Override
    public TriggerSession inProcess() {
      return this;
    }

    private Decoder base() {
      return base;
    }

    private int[] takePending() {
      int[] ids = pending.stream().flatMapToInt(Arrays::stream).toArray();
      pending.clear();
      return ids;
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
