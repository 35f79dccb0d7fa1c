package dev.memgen.model;

import ai.djl.ndarray.NDArray;
import ai.djl.pytorch.engine.PtNDArray;
import ai.djl.pytorch.jni.JniUtils;
import java.util.concurrent.Future;

/**
 * A frozen nn.Linear ({@code x @ W^T + b}, W in [out, in] layout) that uses every core.
 *
 * <p>Why: libtorch runs a matrix-vector product (one input row: a decode step) on a single thread, and one core
 * cannot read memory as fast as all of them (measured here: 16 GB/s for one core, 25 GB/s for two). So a large
 * weight is viewed as row blocks (views, no copy), one per core (more for a few dozen rows, see {@link Blocks}),
 * computed concurrently and joined. libtorch's own intra-op threads are set to 1 ({@link Engines}): its idle OpenMP
 * threads spin on the cores our blocks need, and this split parallelises matrix-matrix products (prefill, batches)
 * as well as it does.
 */
final class Linear {
  /** Below this many weight elements, the thread hand-off costs more than the bandwidth it wins. */
  private static final long PARALLEL_MIN_ELEMENTS = 1L << 18;
  /** Products of this many rows use the finer blocks: a weave's or a trigger's pass over the tokens since the last. */
  static final long FINE_MIN_ROWS = 16;
  static final long FINE_MAX_ROWS = 64;
  /** The finer blocks' size bound, in weight elements (4 MB of f32). */
  static final long FINE_BLOCK_ELEMENTS = 1L << 20;
  private static final int THREADS = Engines.THREADS;

  final NDArray weight;
  final NDArray bias;
  private final Blocks coarse; // one block per thread: a decode step's matrix-vector products
  private final Blocks fine; //   more, smaller blocks for a few dozen rows (the same as coarse for small weights)

  /**
   * Row blocks of the weight (views, no copy), and which thread computes which: thread t takes blocks t, t +
   * THREADS, ... in turn. Why finer blocks for a few dozen rows: libtorch's GEMM (MKL) is slow on a large weight
   * there — on the 0.5B shapes at 46 rows the fused gate/up weight (9728×896, 35 MB) ran at 45–50 GFLOP/s on two
   * cores in two blocks while down_proj (17 MB) ran at 85–94; in 4 MB blocks a whole 46-row forward was faster in
   * 7 of 8 side-by-side pairs (by 2–20%; one pair was 11% slower: this VM drifts). At 256 rows the finer blocks
   * were slower (2 of 2 pairs), and a matrix-vector product (decode) would only pay a JNI call per extra block:
   * both keep one block per thread.
   */
  private record Blocks(NDArray[] weights, NDArray[] biases) {
    static Blocks of(NDArray weight, NDArray bias, int count) {
      long out = weight.getShape().get(0);
      NDArray[] w = new NDArray[count];
      NDArray[] b = new NDArray[count];
      for (int i = 0; i < count && count > 1; i++) {
        long from = out * i / count;
        long to = out * (i + 1) / count;
        w[i] = Ops.slice(weight, 0, from, to);
        b[i] = bias == null ? null : Ops.slice(bias, 0, from, to);
      }
      return new Blocks(w, b);
    }

    int count() {
      return weights.length;
    }

    /** Thread {@code t}'s blocks, in order. */
    NDArray[] compute(NDArray x, int t) {
      NDArray[] y = new NDArray[(weights.length - t + THREADS - 1) / THREADS];
      for (int i = t, j = 0; i < weights.length; i += THREADS, j++) {
        y[j] = Ops.linear(x, weights[i], biases[i]);
      }
      return y;
    }
  }

  Linear(NDArray weight, NDArray bias) {
    this.weight = weight;
    this.bias = bias;
    boolean parallel = weight.size() >= PARALLEL_MIN_ELEMENTS && THREADS > 1;
    int coarseCount = parallel ? THREADS : 1;
    // A multiple of THREADS, so that every thread gets as many blocks.
    long perThread = (weight.size() + FINE_BLOCK_ELEMENTS * THREADS - 1) / (FINE_BLOCK_ELEMENTS * THREADS);
    int fineCount = parallel ? (int) Math.max(1, perThread) * THREADS : 1;
    this.coarse = Blocks.of(weight, bias, coarseCount);
    this.fine = fineCount == coarseCount ? coarse : Blocks.of(weight, bias, fineCount);
  }

  private Blocks blocksFor(long rows) {
    return rows >= FINE_MIN_ROWS && rows <= FINE_MAX_ROWS ? fine : coarse;
  }

  /** How many blocks a product of {@code rows} rows is computed in. */
  int blocks(long rows) {
    return blocksFor(rows).count();
  }

  NDArray forward(NDArray x) {
    // A weight being trained goes whole: its row-block views were taken before it required a gradient.
    if (coarse.count() == 1 || weight.hasGradient()) {
      return Ops.linear(x, weight, bias);
    }
    Blocks blocks = blocksFor(x.size() / weight.getShape().get(1));
    @SuppressWarnings("unchecked")
    Future<NDArray[]>[] pending = new Future[THREADS];
    for (int t = 1; t < THREADS; t++) {
      int thread = t;
      pending[t] = Engines.WORKERS.submit(() -> blocks.compute(x, thread));
    }
    NDArray[][] parts = new NDArray[THREADS][];
    parts[0] = blocks.compute(x, 0);
    try {
      for (int t = 1; t < THREADS; t++) {
        parts[t] = pending[t].get();
      }
    } catch (Exception e) {
      throw new IllegalStateException("parallel linear failed", e);
    }
    PtNDArray[] ordered = new PtNDArray[blocks.count()];
    for (int i = 0; i < ordered.length; i++) {
      ordered[i] = (PtNDArray) parts[i % THREADS][i / THREADS];
    }
    return JniUtils.cat(ordered, x.getShape().dimension() - 1);
  }
}
