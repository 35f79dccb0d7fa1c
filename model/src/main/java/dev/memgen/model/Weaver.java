package dev.memgen.model;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.Shape;
import java.util.Arrays;
import java.util.List;

/**
 * The memory weaver: turns the reasoner's state into K latent rows.
 *
 * <p>To weave: the reasoner's rows of the whole prefix so far (input embeddings, earlier latents included) go
 * through {@code reasoner_to_weaver}; the kind's learned queries, {@code LayerNorm(Q) * scale}, are appended; the
 * base model with the weaver's LoRA runs over all of it; the final-norm hidden states at the K query positions,
 * mapped through {@code weaver_to_reasoner}, are the latents.
 *
 * <p>A {@link Session} keeps the weaver's own KV cache of the prefix, so each weave costs the new rows plus K, not
 * the whole prefix: the queries are appended, read and rolled back.
 */
public final class Weaver {
  public enum Kind { PROMPT, INFERENCE }

  private final Decoder base;
  private final LoraAdapter lora;
  private final NDArray inWeight; //  reasoner_to_weaver [h_w, h_r]
  private final NDArray inBias;
  private final NDArray outWeight; // weaver_to_reasoner [h_r, h_w]
  private final NDArray outBias;
  private final NDArray[][] queries; // per kind: {queries [K, h_w], norm weight, norm bias, scale [1]}
  private final double layerNormEps;

  /**
   * @param queries per kind (PROMPT, INFERENCE): {queries [K, h], norm weight [h], norm bias [h], scale [1]}
   */
  public Weaver(Decoder base, LoraAdapter lora, NDArray inWeight, NDArray inBias, NDArray outWeight, NDArray outBias,
      NDArray[][] queries, double layerNormEps) {
    this.base = base;
    this.lora = lora;
    this.inWeight = inWeight;
    this.inBias = inBias;
    this.outWeight = outWeight;
    this.outBias = outBias;
    this.queries = queries;
    this.layerNormEps = layerNormEps;
  }

  /**
   * {@code LayerNorm(Q) * scale} of a kind, {@code [1, K, h_w]}, in {@code into}. Computed at every weave (a few
   * small operations) rather than once, so that training, which changes Q, the norm and the scale, sees its
   * updates and its gradients flow through them.
   */
  private NDArray queryRows(Kind kind, NDManager into) {
    NDArray[] q = queries[kind.ordinal()];
    NDArray rows = layerNorm(q[0], q[1], q[2], layerNormEps).mul(q[3]);
    rows.attach(into);
    return rows.reshape(new Shape(1, rows.getShape().get(0), rows.getShape().get(1)));
  }

  /** torch.nn.LayerNorm over the last axis (biased variance). */
  static NDArray layerNorm(NDArray x, NDArray weight, NDArray bias, double eps) {
    NDArray centered = x.sub(x.mean(new int[] {-1}, true));
    NDArray variance = centered.square().mean(new int[] {-1}, true);
    return centered.div(variance.add(eps).sqrt()).mul(weight).add(bias);
  }

  LoraAdapter lora() {
    return lora;
  }

  /** This weaver as training runs it: dropout {@code p} on its LoRA's inputs (the same parameters). */
  public Weaver withLoraDropout(double p) {
    return p == 0 ? this : new Weaver(base, lora.withDropout(p), inWeight, inBias, outWeight, outBias, queries, layerNormEps);
  }

  public int k(Kind kind) {
    return (int) queries[kind.ordinal()][0].getShape().get(0);
  }

  /**
   * Weaves for a batch of whole prefixes at once, without a session: the training path, where gradients flow from
   * the latents back into the LoRA, the projections and the queries. Same math as a {@link Session} that appended
   * each prefix and wove.
   *
   * @param prefixes reasoner rows {@code [batch, n, h_r]}; a row's prefix may be shorter than n, padded on the left
   * @param valid {@code [batch][n]}: false marks a padding slot
   * @return the K latent rows per batch row, {@code [batch, K, h_r]}, in the manager of {@code prefixes}
   */
  public NDArray weave(Kind kind, NDArray prefixes, boolean[][] valid) {
    int batch = (int) prefixes.getShape().get(0);
    int n = (int) prefixes.getShape().get(1);
    int k = k(kind);
    NDManager caller = prefixes.getManager();
    boolean[][] all = new boolean[batch][n + k];
    for (int b = 0; b < batch; b++) {
      System.arraycopy(valid[b], 0, all[b], 0, n);
      Arrays.fill(all[b], n, n + k, true);
    }
    try (KvCache cache = base.newCache(batch, n + k)) {
      NDArray q = queryRows(kind, caller).repeat(0, batch);
      NDArray input = Ops.linear(prefixes, inWeight, inBias).concat(q, 1);
      NDArray hidden = base.forward(cache, input, all, lora);
      return Ops.linear(Ops.slice(hidden, 1, n, n + k), outWeight, outBias);
    }
  }

  /**
   * Weaves for several sessions in one forward call — of this weaver or of other weavers on the same base, each
   * adding its own LoRA, projections and queries to its rows (per-row adapters) — with the same math as each
   * session's {@link Session#weave(Kind, NDArray, NDManager)} alone: the sessions' prefixes are gathered into one
   * batch, each row gets its new rows and its kind's K queries (padding masked), and each session keeps its new rows
   * and none of the queries. What a serving step does when several sequences reach an insertion point at once: on a
   * small model a forward call costs about the same for one row as for sixty-four.
   *
   * @param newRows per session, reasoner rows {@code [1, n, h_r]} to append first, or null for none
   * @return per session, its latents {@code [1, K, h_r]}, in {@code into}
   */
  public static List<NDArray> weave(List<Session> sessions, List<Kind> kinds, List<NDArray> newRows, NDManager into) {
    int count = sessions.size();
    if (kinds.size() != count || newRows.size() != count) {
      throw new IllegalArgumentException(count + " sessions need as many kinds and row blocks, got " + kinds.size()
          + " and " + newRows.size());
    }
    if (count == 1) {
      return List.of(sessions.get(0).weave(kinds.get(0), newRows.get(0), into));
    }
    Decoder base = sessions.get(0).weaver().base;
    // Rows of one weaver side by side: its LoRA is then one product over a range of rows.
    List<Weaver> weavers = new java.util.ArrayList<>();
    for (Session s : sessions) {
      if (s.weaver().base != base) {
        throw new IllegalArgumentException("sessions of weavers on different base models cannot weave together");
      }
      if (!weavers.contains(s.weaver())) {
        weavers.add(s.weaver());
      }
    }
    int[] order = java.util.stream.IntStream.range(0, count).boxed()
        .sorted(java.util.Comparator.comparingInt(i -> weavers.indexOf(sessions.get(i).weaver())))
        .mapToInt(Integer::intValue).toArray();
    int[] n = new int[count];
    int[] k = new int[count];
    int longestNew = 0;
    int mostQueries = 0;
    for (int i = 0; i < count; i++) {
      Session s = sessions.get(i);
      n[i] = newRows.get(i) == null ? 0 : s.checkRows(newRows.get(i));
      k[i] = s.weaver().k(kinds.get(i));
      if (s.cache.length() + n[i] == 0) {
        throw new IllegalStateException("weave needs at least one prefix row (session " + i + ")");
      }
      longestNew = Math.max(longestNew, n[i]);
      mostQueries = Math.max(mostQueries, k[i]);
    }
    int width = longestNew + mostQueries;
    long h = base.config().hiddenSize();
    List<NDArray> latents = new java.util.ArrayList<>(java.util.Collections.nCopies(count, null));
    try (NDManager m = into.newSubManager();
        KvCache batch = KvCache.gather(base.manager(), java.util.Arrays.stream(order).mapToObj(i -> sessions.get(i).cache).toList(), width)) {
      int start = batch.length();
      boolean[][] valid = new boolean[count][width];
      ai.djl.ndarray.NDList rows = new ai.djl.ndarray.NDList();
      List<LoraAdapter> adapters = new java.util.ArrayList<>();
      java.util.Map<Weaver, NDArray[]> queryRows = new java.util.HashMap<>();
      for (int j = 0; j < count; j++) {
        int i = order[j];
        Weaver w = sessions.get(i).weaver();
        ai.djl.ndarray.NDList parts = new ai.djl.ndarray.NDList();
        if (n[i] > 0) {
          NDArray projected = Ops.linear(newRows.get(i), w.inWeight, w.inBias);
          projected.attach(m);
          parts.add(projected);
        }
        if (n[i] < longestNew) {
          parts.add(m.zeros(new Shape(1, longestNew - n[i], h)));
        }
        NDArray[] q = queryRows.computeIfAbsent(w, x -> new NDArray[Kind.values().length]);
        int kind = kinds.get(i).ordinal();
        if (q[kind] == null) {
          q[kind] = w.queryRows(kinds.get(i), m);
        }
        parts.add(q[kind]);
        if (k[i] < mostQueries) {
          parts.add(m.zeros(new Shape(1, mostQueries - k[i], h)));
        }
        rows.add(parts.size() == 1 ? parts.get(0) : ai.djl.ndarray.NDArrays.concat(parts, 1));
        Arrays.fill(valid[j], 0, n[i], true);
        Arrays.fill(valid[j], longestNew, longestNew + k[i], true);
        adapters.add(w.lora);
      }
      NDArray hidden = base.forward(batch, ai.djl.ndarray.NDArrays.concat(rows, 0), valid, LoraAdapter.byRows(adapters));
      for (int j = 0; j < count; j++) {
        int i = order[j];
        Weaver w = sessions.get(i).weaver();
        NDArray atQueries = Ops.slice(Ops.slice(hidden, 0, j, j + 1), 1, longestNew, longestNew + k[i]);
        NDArray out = Ops.linear(atQueries, w.outWeight, w.outBias);
        out.attach(into);
        latents.set(i, out);
        batch.copyEntries(j, start, n[i], sessions.get(i).cache); // the new rows join the prefix; the queries never do
      }
    }
    return latents;
  }

  public Session newSession(int capacity) {
    return new Session(capacity);
  }

  /** One generation's weaver state: the prefix it has seen, as KV cache. Not thread-safe. */
  public final class Session implements AutoCloseable {
    private final KvCache cache;

    private Weaver weaver() {
      return Weaver.this;
    }

    private Session(int capacity) {
      cache = base.newCache(1, capacity);
    }

    /** Rows of the prefix seen so far. */
    public int length() {
      return cache.length();
    }

    /** Appends reasoner rows {@code [1, n, h_r]} (token embeddings or latents, in sequence order) to the prefix. */
    public void append(NDArray rows) {
      int n = checkRows(rows);
      try (NDManager m = rows.getManager().newSubManager()) {
        NDArray projected = Ops.linear(rows, inWeight, inBias);
        projected.attach(m);
        base.forward(cache, projected, allValid(n), lora); // only the cache matters here
      }
    }

    /** The K latent rows {@code [1, K, h_r]} for the prefix so far; they are not added to the prefix. */
    public NDArray weave(Kind kind, NDManager into) {
      return weave(kind, null, into);
    }

    /**
     * Appends {@code newRows} ({@code [1, n, h_r]}, or null for none) to the prefix and weaves, in one forward
     * call over the n rows and the K queries: one call instead of two, and the larger matrix products run nearer
     * peak speed. Same math as {@link #append} then {@link #weave(Kind, NDManager)}.
     */
    public NDArray weave(Kind kind, NDArray newRows, NDManager into) {
      int n = newRows == null ? 0 : checkRows(newRows);
      if (cache.length() + n == 0) {
        throw new IllegalStateException("weave needs at least one prefix row");
      }
      int prefix = cache.length() + n;
      int k = k(kind);
      try (NDManager m = into.newSubManager()) {
        NDArray q = queryRows(kind, m);
        NDArray input = q;
        if (n > 0) {
          NDArray projected = Ops.linear(newRows, inWeight, inBias);
          projected.attach(m);
          input = projected.concat(q, 1);
        }
        NDArray hidden = base.forward(cache, input, allValid(n + k), lora);
        NDArray latents = Ops.linear(n == 0 ? hidden : Ops.slice(hidden, 1, n, n + k), outWeight, outBias);
        latents.attach(into);
        return latents;
      } finally {
        cache.truncate(Math.min(prefix, cache.length())); // the queries never join the prefix
      }
    }

    private int checkRows(NDArray rows) {
      Shape s = rows.getShape();
      if (s.dimension() != 3 || s.get(0) != 1 || s.get(1) < 1 || s.get(2) != inWeight.getShape().get(1)) {
        throw new IllegalArgumentException("weaver rows must be [1, n>=1, " + inWeight.getShape().get(1) + "], got " + s);
      }
      return (int) s.get(1);
    }

    @Override
    public void close() {
      cache.close();
    }
  }

  static boolean[][] allValid(int n) {
    boolean[][] v = new boolean[1][n];
    Arrays.fill(v[0], true);
    return v;
  }
}
