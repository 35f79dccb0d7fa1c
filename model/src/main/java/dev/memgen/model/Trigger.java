package dev.memgen.model;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Comparator;
import java.util.List;

/**
 * The memory trigger: the base model with its own LoRA reads the token sequence (prompt and generated text, no
 * latents) and a 2-way head on the last hidden state gives P(invoke). A {@link Session} keeps the trigger's KV
 * cache, so consulting it at a delimiter costs only the tokens since the last consultation.
 */
public final class Trigger {
  private final Decoder base;
  private final LoraAdapter lora;
  private final NDArray headWeight; // [2, h]
  private final NDArray headBias; //   [2]

  public Trigger(Decoder base, LoraAdapter lora, NDArray headWeight, NDArray headBias) {
    this.base = base;
    this.lora = lora;
    this.headWeight = headWeight;
    this.headBias = headBias;
  }

  LoraAdapter lora() {
    return lora;
  }

  /**
   * Log-probabilities of the head's two classes (0 skip, 1 invoke), {@code [N, 2]}, after given prefixes of a batch
   * of token sequences: entry i is for row {@code at[i][0]} having read its tokens up to and including index
   * {@code at[i][1]}. One stateless forward call over the batch; differentiable (the trigger's RL stage).
   */
  public NDArray logProbs(NDManager m, int[][] tokens, int[][] at) {
    int batch = tokens.length;
    int longest = 0;
    for (int[] t : tokens) {
      longest = Math.max(longest, t.length);
    }
    int[][] padded = new int[batch][longest];
    boolean[][] valid = new boolean[batch][longest];
    for (int b = 0; b < batch; b++) {
      java.util.Arrays.fill(padded[b], -1); // embeds as zeros; masked out anyway
      System.arraycopy(tokens[b], 0, padded[b], 0, tokens[b].length);
      java.util.Arrays.fill(valid[b], 0, tokens[b].length, true);
    }
    long[] rows = new long[at.length];
    for (int i = 0; i < at.length; i++) {
      if (at[i][1] < 0 || at[i][1] >= tokens[at[i][0]].length) {
        throw new IllegalArgumentException("position " + at[i][1] + " outside row " + at[i][0] + " of "
            + tokens[at[i][0]].length + " tokens");
      }
      rows[i] = (long) at[i][0] * longest + at[i][1];
    }
    try (KvCache cache = base.newCache(batch, longest)) {
      NDArray hidden = base.forward(cache, base.embed(m, padded), valid, lora);
      NDArray picked = hidden.reshape((long) batch * longest, hidden.getShape().get(2)).get(m.create(rows));
      return Ops.linear(picked, headWeight, headBias).logSoftmax(-1);
    }
  }

  /**
   * Appends tokens to several sessions in one forward call — of this trigger or of other triggers on the same base,
   * each adding its own LoRA to its rows — with the same math as each session's {@link Session#append} alone (the
   * sessions' prefixes gathered into one batch, padding masked). A session with no tokens is left out.
   */
  public static void append(List<Session> sessions, List<int[]> ids) {
    List<Integer> busy = new ArrayList<>();
    for (int i = 0; i < sessions.size(); i++) {
      if (ids.get(i).length > 0) {
        busy.add(i);
      }
    }
    if (busy.size() <= 1) {
      busy.forEach(i -> sessions.get(i).append(ids.get(i)));
      return;
    }
    Decoder base = sessions.get(busy.get(0)).trigger().base;
    List<Trigger> triggers = new ArrayList<>();
    for (int i : busy) {
      Trigger t = sessions.get(i).trigger();
      if (t.base != base) {
        throw new IllegalArgumentException("sessions of triggers on different base models cannot read together");
      }
      if (!triggers.contains(t)) {
        triggers.add(t);
      }
    }
    busy.sort(Comparator.comparingInt(i -> triggers.indexOf(sessions.get(i).trigger()))); // one LoRA product per trigger
    int longest = busy.stream().mapToInt(i -> ids.get(i).length).max().orElse(0);
    int count = busy.size();
    int[][] padded = new int[count][longest];
    boolean[][] valid = new boolean[count][longest];
    List<LoraAdapter> adapters = new ArrayList<>();
    for (int j = 0; j < count; j++) {
      int[] t = ids.get(busy.get(j));
      Arrays.fill(padded[j], -1); // embeds as zeros; masked out anyway
      System.arraycopy(t, 0, padded[j], 0, t.length);
      Arrays.fill(valid[j], 0, t.length, true);
      adapters.add(sessions.get(busy.get(j)).trigger().lora);
    }
    try (NDManager m = base.manager().newSubManager();
        KvCache batch = KvCache.gather(base.manager(), busy.stream().map(i -> sessions.get(i).cache).toList(), longest)) {
      int start = batch.length();
      NDArray hidden = base.forward(batch, base.embed(m, padded), valid, LoraAdapter.byRows(adapters));
      for (int j = 0; j < count; j++) {
        Session s = sessions.get(busy.get(j));
        int n = ids.get(busy.get(j)).length;
        NDArray newest = Ops.slice(Ops.slice(hidden, 0, j, j + 1), 1, n - 1, n).reshape(1, hidden.getShape().get(2));
        s.keepLast(newest);
        batch.copyEntries(j, start, n, s.cache);
      }
    }
  }

  public Session newSession(int capacity) {
    return new Session(capacity);
  }

  /** One generation's trigger state. Not thread-safe. */
  public final class Session implements AutoCloseable {
    private final KvCache cache;
    private final NDManager manager;
    private NDArray last; // final-norm hidden state of the latest token, [1, h]

    private Session(int capacity) {
      cache = base.newCache(1, capacity);
      manager = base.manager().newSubManager();
    }

    /** Appends tokens (in order) to the sequence the trigger has read. */
    public void append(int[] ids) {
      if (ids.length == 0) {
        return;
      }
      try (NDManager m = manager.newSubManager()) {
        NDArray hidden = base.forward(cache, base.embed(m, new int[][] {ids}), Weaver.allValid(ids.length), lora);
        keepLast(Ops.slice(hidden, 1, ids.length - 1, ids.length).reshape(1, hidden.getShape().get(2)));
      }
    }

    private void keepLast(NDArray newest) {
      newest.attach(manager);
      if (last != null) {
        last.close();
      }
      last = newest;
    }

    private Trigger trigger() {
      return Trigger.this;
    }

    /** P(invoke) after the tokens appended so far: softmax of the two head logits, class 1. */
    public float probability() {
      float[] l = logits();
      return (float) (1 / (1 + Math.exp(l[0] - l[1])));
    }

    /** Both head logits, for tests and traces. */
    public float[] logits() {
      if (last == null) {
        throw new IllegalStateException("the trigger has read no tokens");
      }
      try (NDManager m = manager.newSubManager()) {
        NDArray logits = Ops.linear(last, headWeight, headBias);
        logits.attach(m);
        return logits.toFloatArray();
      }
    }

    @Override
    public void close() {
      cache.close();
      manager.close();
    }
  }
}
