package dev.memgen.model;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;

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
        NDArray newest = Ops.slice(hidden, 1, ids.length - 1, ids.length).reshape(1, hidden.getShape().get(2));
        newest.attach(manager);
        if (last != null) {
          last.close();
        }
        last = newest;
      }
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
