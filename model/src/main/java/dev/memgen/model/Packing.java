package dev.memgen.model;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.pytorch.jni.JniUtils;

/**
 * The real rows of a forward call with many padding slots, packed: the projections and the MLP then run over the
 * real rows only, and attention, which needs each row's own slots, sees them put back in place. What varlen batching
 * does in vLLM. A call pads a row whenever the rows add different numbers of slots: a decode step where some rows
 * take latent memory (every row gets 1 + K slots), a weave pass over sessions with different numbers of new rows,
 * prompts of different lengths. On the 0.5B shapes a step where one of sixteen rows inserts K = 8 latents would
 * otherwise run 144 rows through every weight instead of 24.
 */
final class Packing {
  /**
   * Below this many multiply-adds per layer spent on padding, packing's few extra calls cost more than they save
   * (system property {@code memgen.packing.min-waste}; tests set 0 to pack every padded call).
   */
  static volatile long minWaste = Long.getLong("memgen.packing.min-waste", 1L << 22);

  final int batch;
  final int slots;
  private final int real;
  private final int[] offsets; // offsets[b]: real rows before batch row b; offsets[batch] = real
  private final NDArray packIndex; //   [1, real, 1]: flat slot of each real row
  private final NDArray unpackIndex; // [1, batch * slots, 1]: packed row of each slot, padding -> real (a zero row)

  private Packing(boolean[][] valid, NDManager m) {
    batch = valid.length;
    slots = valid[0].length;
    offsets = new int[batch + 1];
    long[] unpack = new long[batch * slots];
    int r = 0;
    for (int b = 0; b < batch; b++) {
      offsets[b] = r;
      for (int t = 0; t < slots; t++) {
        if (valid[b][t]) {
          r++;
        }
      }
    }
    real = r;
    offsets[batch] = real;
    long[] pack = new long[real];
    r = 0;
    for (int b = 0; b < batch; b++) {
      for (int t = 0; t < slots; t++) {
        if (valid[b][t]) {
          pack[r] = (long) b * slots + t;
          unpack[b * slots + t] = r++;
        } else {
          unpack[b * slots + t] = real;
        }
      }
    }
    packIndex = m.create(pack, Ops.shape(1, real, 1));
    unpackIndex = m.create(unpack, Ops.shape(1, (long) batch * slots, 1));
  }

  /**
   * A packing of the call's slots, or null when it would not pay: when the padding costs fewer than
   * {@link #minWaste} multiply-adds per layer, or when autograd records (training keeps the plain path).
   *
   * @param workPerRow multiply-adds one row costs in one layer's projections and MLP
   */
  static Packing of(boolean[][] valid, long workPerRow, NDManager m) {
    long total = (long) valid.length * valid[0].length;
    long real = 0;
    for (boolean[] row : valid) {
      for (boolean v : row) {
        real += v ? 1 : 0;
      }
    }
    if (real == 0 || (total - real) * workPerRow < minWaste || total == real || JniUtils.isGradMode()) {
      return null;
    }
    return new Packing(valid, m);
  }

  /** Real rows before batch row {@code b} ({@code b = batch}: all of them). */
  int offset(int b) {
    return offsets[b];
  }

  /** {@code [batch, slots, c]} to its real rows {@code [1, real, c]}. */
  NDArray pack(NDArray x) {
    long c = x.getShape().get(2);
    return Ops.gather(Ops.reshape(x, 1, (long) batch * slots, c), 1, packIndex);
  }

  /** {@code [1, real, c]} back to {@code [batch, slots, c]}, zeros at the padding slots. */
  NDArray unpack(NDArray y) {
    long c = y.getShape().get(2);
    NDArray withZero = y.concat(y.getManager().zeros(Ops.shape(1, 1, c)), 1);
    return Ops.reshape(Ops.gather(withZero, 1, unpackIndex), batch, slots, c);
  }
}
