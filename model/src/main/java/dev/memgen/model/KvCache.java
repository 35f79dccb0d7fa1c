package dev.memgen.model;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.DataType;
import java.util.Arrays;

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
