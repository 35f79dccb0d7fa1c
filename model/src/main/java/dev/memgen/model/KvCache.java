package dev.memgen.model;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.DataType;
import java.util.Arrays;
import java.util.List;

/**
 * The keys and values of a batch of sequences, preallocated per layer as {@code [batch, kvHeads, capacity,
 * headDim]} and written in place, so a decode step copies only its own new rows.
 *
 * <p>All rows of a batch share one timeline of <em>slots</em>; each forward call appends the same number of
 * slots to every row. A row that has nothing to add at a slot (a shorter prompt, a row that is not receiving
 * latent memory, a finished row) marks it invalid: attention never looks at it and it takes no position. So
 * each row keeps its own RoPE position counter, and a batch computes exactly what its rows would compute
 * one by one.
 */
public final class KvCache implements AutoCloseable {
  private final NDManager manager;
  private final ModelConfig config;
  private final int batch;
  private final NDArray[] keys;
  private final NDArray[] values;
  private int capacity;
  private int length;
  private boolean[][] valid;
  private final int[] nextPosition;
  private boolean anyInvalid;

  KvCache(NDManager parent, ModelConfig config, int batch, int capacity) {
    this.manager = parent.newSubManager();
    this.config = config;
    this.batch = batch;
    this.capacity = Math.max(1, capacity);
    this.keys = new NDArray[config.numLayers()];
    this.values = new NDArray[config.numLayers()];
    for (int l = 0; l < config.numLayers(); l++) {
      keys[l] = manager.zeros(Ops.shape(batch, config.numKvHeads(), this.capacity, config.headDim()), DataType.FLOAT32);
      values[l] = manager.zeros(Ops.shape(batch, config.numKvHeads(), this.capacity, config.headDim()), DataType.FLOAT32);
    }
    this.valid = new boolean[batch][this.capacity];
    this.nextPosition = new int[batch];
  }

  public int batchSize() {
    return batch;
  }

  /** Slots used so far (the same for every row). */
  public int length() {
    return length;
  }

  /** The RoPE position the next valid entry of {@code row} will take (= the row's true sequence length). */
  public int position(int row) {
    return nextPosition[row];
  }

  /** Whether slot {@code slot} of {@code row} holds a real entry. */
  public boolean isValid(int row, int slot) {
    return slot < length && valid[row][slot];
  }

  /**
   * Reserves {@code n} slots for a forward call and returns the RoPE position of each new entry. Grows the
   * cache (one copy, doubling) when full.
   */
  int[][] reserve(boolean[][] newValid) {
    int n = newValid[0].length;
    if (length + n > capacity) {
      grow(Math.max(capacity * 2, length + n));
    }
    int[][] positions = new int[batch][n];
    for (int b = 0; b < batch; b++) {
      for (int j = 0; j < n; j++) {
        positions[b][j] = nextPosition[b];
        valid[b][length + j] = newValid[b][j];
        if (newValid[b][j]) {
          nextPosition[b]++;
        } else {
          anyInvalid = true;
        }
      }
    }
    return positions;
  }

  /**
   * Whether queries at the next {@code n} reserved slots need a mask: not when a single new slot can see every
   * earlier slot (the common decode step), which saves building and adding it in every layer.
   */
  boolean needsMask(int n) {
    return n > 1 || anyInvalid;
  }

  /**
   * The additive attention mask for queries at slots [length, length+n) over keys [0, length+n):
   * shape {@code [batch, 1, 1, n, length+n]}, 0 where the key is visible, a large negative number where not.
   * (Not -inf: a query with no visible key, e.g. at a padding slot, must still give finite values.)
   */
  float[] mask(int n) {
    int total = length + n;
    float[] m = new float[batch * n * total];
    Arrays.fill(m, -1e9f);
    for (int b = 0; b < batch; b++) {
      for (int q = 0; q < n; q++) {
        int base = (b * n + q) * total;
        for (int t = 0; t <= length + q; t++) {
          if (valid[b][t]) {
            m[base + t] = 0f;
          }
        }
      }
    }
    return m;
  }

  /**
   * Forgets every slot from {@code newLength} on (their keys and values are overwritten by the next call). The
   * weaver appends its K query rows after the prefix, reads their states, and rolls back: the queries are not part
   * of the prefix the next weave continues from.
   */
  public void truncate(int newLength) {
    if (newLength < 0 || newLength > length) {
      throw new IllegalArgumentException("cannot truncate " + length + " slots to " + newLength);
    }
    for (int b = 0; b < batch; b++) {
      for (int t = newLength; t < length; t++) {
        if (valid[b][t]) {
          nextPosition[b]--;
        }
        valid[b][t] = false;
      }
    }
    length = newLength;
  }

  /** How many real entries {@code row} holds (its tokens and latent rows so far). */
  public int entries(int row) {
    int n = 0;
    for (int t = 0; t < length; t++) {
      n += valid[row][t] ? 1 : 0;
    }
    return n;
  }

  /**
   * Forgets every entry of {@code row}: its sequence has left the batch and the row can take another
   * ({@link #splice}). The slots stay in the timeline, invalid for this row, until a {@link #repack}.
   */
  public void clearRow(int row) {
    Arrays.fill(valid[row], false);
    nextPosition[row] = 0;
    anyInvalid = true;
  }

  /**
   * Copies the entries of row {@code fromRow} of {@code from} (a sequence prefilled on its own) into the empty row
   * {@code row}, at slots [0, n), so that the row continues exactly where it did in {@code from}: same keys, values
   * and positions. The timeline grows by invalid slots for the other rows if it is shorter than n.
   */
  public void splice(int row, KvCache from, int fromRow) {
    if (nextPosition[row] != 0 || entries(row) != 0) {
      throw new IllegalStateException("row " + row + " is not empty");
    }
    long[] slots = from.slotsOf(fromRow);
    int n = slots.length;
    if (n == 0) {
      return;
    }
    if (n > length) {
      boolean[][] pad = new boolean[batch][n - length];
      reserve(pad); // every row invalid in the new slots
      advance(n - length);
    }
    try (NDManager m = manager.newSubManager()) {
      NDArray index = m.create(slots, Ops.shape(1, 1, n, 1));
      for (int l = 0; l < keys.length; l++) {
        Ops.writeAt(keys[l], new long[] {row, 0, 0, 0}, Ops.gather(Ops.slice(from.keys[l], 0, fromRow, fromRow + 1), 2, index));
        Ops.writeAt(values[l], new long[] {row, 0, 0, 0},
            Ops.gather(Ops.slice(from.values[l], 0, fromRow, fromRow + 1), 2, index));
      }
    }
    Arrays.fill(valid[row], 0, n, true);
    nextPosition[row] = from.nextPosition[fromRow];
    anyInvalid = true;
  }

  /**
   * A new cache whose row i holds row {@code rows[i]} of this one ({@code -1}: an empty row), with each row's entries
   * packed to the front: what a serving engine does when rows have come and gone, so that attention stops reading
   * slots no row uses, or when it needs more or fewer rows. This cache is left as it was; the caller closes it.
   */
  public KvCache repack(int[] rows, int minCapacity) {
    long[][] slots = new long[rows.length][];
    int longest = 0;
    for (int i = 0; i < rows.length; i++) {
      slots[i] = rows[i] < 0 ? new long[0] : slotsOf(rows[i]);
      longest = Math.max(longest, slots[i].length);
    }
    KvCache out = new KvCache(manager.getParentManager(), config, rows.length, Math.max(minCapacity, longest));
    out.length = longest;
    if (longest > 0) {
      long[] laneIndex = new long[rows.length];
      long[] slotIndex = new long[rows.length * longest]; // padding slots point at slot 0 and stay invalid
      for (int i = 0; i < rows.length; i++) {
        laneIndex[i] = Math.max(rows[i], 0);
        System.arraycopy(slots[i], 0, slotIndex, i * longest, slots[i].length);
      }
      try (NDManager m = manager.newSubManager()) {
        NDArray lanes = m.create(laneIndex, Ops.shape(rows.length, 1, 1, 1));
        NDArray at = m.create(slotIndex, Ops.shape(rows.length, 1, longest, 1));
        for (int l = 0; l < keys.length; l++) {
          Ops.writeAt(out.keys[l], new long[4], Ops.gather(Ops.gather(keys[l], 0, lanes), 2, at));
          Ops.writeAt(out.values[l], new long[4], Ops.gather(Ops.gather(values[l], 0, lanes), 2, at));
        }
      }
    }
    for (int i = 0; i < rows.length; i++) {
      Arrays.fill(out.valid[i], 0, slots[i].length, true);
      out.nextPosition[i] = rows[i] < 0 ? 0 : nextPosition[rows[i]];
      out.anyInvalid |= slots[i].length < longest;
    }
    return out;
  }

  /**
   * A cache with one row per source — one-row caches whose entries fill their first slots, as a weaver's or a
   * trigger's session cache does — each row holding its source's keys, values and positions, with room for
   * {@code extra} more slots: several sessions' prefixes as one batch, so that one forward call serves them all
   * (the new entries go back to each session with {@link #copyEntries}). The caller closes it.
   */
  static KvCache gather(NDManager parent, List<KvCache> sources, int extra) {
    int longest = 0;
    for (KvCache s : sources) {
      if (s.batch != 1 || s.entries(0) != s.length) {
        throw new IllegalArgumentException("gather takes one-row caches with no gaps, got " + s.batch + " rows, "
            + s.length + " slots");
      }
      longest = Math.max(longest, s.length);
    }
    KvCache out = new KvCache(parent, sources.get(0).config, sources.size(), longest + extra);
    out.length = longest;
    try (NDManager m = out.manager.newSubManager()) {
      for (int i = 0; i < sources.size(); i++) {
        KvCache s = sources.get(i);
        if (s.length > 0) {
          for (int l = 0; l < out.keys.length; l++) {
            Ops.writeAt(out.keys[l], new long[] {i, 0, 0, 0}, owned(Ops.slice(s.keys[l], 2, 0, s.length), m));
            Ops.writeAt(out.values[l], new long[] {i, 0, 0, 0}, owned(Ops.slice(s.values[l], 2, 0, s.length), m));
          }
        }
        Arrays.fill(out.valid[i], 0, s.length, true);
        out.nextPosition[i] = s.nextPosition[0];
        out.anyInvalid |= s.length < longest;
      }
    }
    return out;
  }

  /**
   * Appends {@code row}'s entries at slots [from, from + n) — all of them real entries of the row — to {@code target},
   * a one-row cache with no gaps, after its own: what a session keeps of a batched call ({@link #gather}).
   */
  void copyEntries(int row, int from, int n, KvCache target) {
    for (int t = from; t < from + n; t++) {
      if (!isValid(row, t)) {
        throw new IllegalArgumentException("slot " + t + " of row " + row + " holds no entry");
      }
    }
    if (target.batch != 1 || target.entries(0) != target.length) {
      throw new IllegalArgumentException("copyEntries writes to a one-row cache with no gaps");
    }
    if (n == 0) {
      return;
    }
    if (target.length + n > target.capacity) {
      target.grow(Math.max(target.capacity * 2, target.length + n));
    }
    try (NDManager m = manager.newSubManager()) {
      for (int l = 0; l < keys.length; l++) {
        Ops.writeAt(target.keys[l], new long[] {0, 0, target.length, 0},
            owned(Ops.slice(owned(Ops.slice(keys[l], 0, row, row + 1), m), 2, from, from + n), m));
        Ops.writeAt(target.values[l], new long[] {0, 0, target.length, 0},
            owned(Ops.slice(owned(Ops.slice(values[l], 0, row, row + 1), m), 2, from, from + n), m));
      }
    }
    Arrays.fill(target.valid[0], target.length, target.length + n, true);
    target.nextPosition[0] += n;
    target.length += n;
  }

  private static NDArray owned(NDArray view, NDManager m) {
    view.attach(m);
    return view;
  }

  /** The slots holding {@code row}'s entries, in order. */
  private long[] slotsOf(int row) {
    long[] out = new long[entries(row)];
    int i = 0;
    for (int t = 0; t < length; t++) {
      if (valid[row][t]) {
        out[i++] = t;
      }
    }
    return out;
  }

  /** Commits {@code n} reserved slots once every layer has written them. */
  void advance(int n) {
    length += n;
  }

  NDArray keys(int layer) {
    return keys[layer];
  }

  NDArray values(int layer) {
    return values[layer];
  }

  private void grow(int newCapacity) {
    for (int l = 0; l < keys.length; l++) {
      keys[l] = grown(keys[l], newCapacity);
      values[l] = grown(values[l], newCapacity);
    }
    boolean[][] v = new boolean[batch][newCapacity];
    for (int b = 0; b < batch; b++) {
      System.arraycopy(valid[b], 0, v[b], 0, capacity);
    }
    valid = v;
    capacity = newCapacity;
  }

  private NDArray grown(NDArray old, int newCapacity) {
    NDArray bigger = manager.zeros(Ops.shape(batch, config.numKvHeads(), newCapacity, config.headDim()), DataType.FLOAT32);
    Ops.write(bigger, 2, 0, old);
    old.close();
    return bigger;
  }

  @Override
  public void close() {
    manager.close();
  }
}
