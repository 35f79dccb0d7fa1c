package dev.memgen.model;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDList;
import ai.djl.pytorch.engine.PtNDArray;
import ai.djl.pytorch.jni.JniUtils;
import java.util.concurrent.Future;

/**
 * A frozen nn.Linear ({@code x @ W^T + b}, W in [out, in] layout) that uses every core.
 *
 * <p>Why: libtorch runs a matrix-vector product (one input row: a decode step) on a single thread, and one core
 * cannot read memory as fast as all of them (measured here: 16 GB/s for one core, 25 GB/s for two). So a large
 * weight is viewed as row blocks (views, no copy), one per core, computed concurrently and joined. libtorch's own
 * intra-op threads are set to 1 ({@link Engines}): its idle OpenMP threads spin on the cores our blocks need, and
 * this split parallelises matrix-matrix products (prefill, batches) as well as it does.
 */
final class Linear {
  /** Below this many weight elements, the thread hand-off costs more than the bandwidth it wins. */
  private static final long PARALLEL_MIN_ELEMENTS = 1L << 18;
  private static final int THREADS = Engines.THREADS;

  final NDArray weight;
  final NDArray bias;
  private final NDArray[] weightBlocks;
  private final NDArray[] biasBlocks;

  Linear(NDArray weight, NDArray bias) {
    this.weight = weight;
    this.bias = bias;
    long out = weight.getShape().get(0);
    int blocks = weight.size() >= PARALLEL_MIN_ELEMENTS && THREADS > 1 ? THREADS : 1;
    weightBlocks = new NDArray[blocks];
    biasBlocks = new NDArray[blocks];
    for (int i = 0; i < blocks && blocks > 1; i++) {
      long from = out * i / blocks;
      long to = out * (i + 1) / blocks;
      weightBlocks[i] = Ops.slice(weight, 0, from, to);
      biasBlocks[i] = bias == null ? null : Ops.slice(bias, 0, from, to);
    }
  }

  NDArray forward(NDArray x) {
    // A weight being trained goes whole: its row-block views were taken before it required a gradient.
    if (weightBlocks.length == 1 || weight.hasGradient()) {
      return Ops.linear(x, weight, bias);
    }
    @SuppressWarnings("unchecked")
    Future<NDArray>[] pending = new Future[weightBlocks.length];
    for (int i = 1; i < weightBlocks.length; i++) {
      int block = i;
      pending[i] = Engines.WORKERS.submit(() -> Ops.linear(x, weightBlocks[block], biasBlocks[block]));
    }
    NDList parts = new NDList(weightBlocks.length);
    parts.add(Ops.linear(x, weightBlocks[0], biasBlocks[0]));
    try {
      for (int i = 1; i < weightBlocks.length; i++) {
        parts.add(pending[i].get());
      }
    } catch (Exception e) {
      throw new IllegalStateException("parallel linear failed", e);
    }
    return JniUtils.cat(parts.stream().map(p -> (PtNDArray) p).toArray(PtNDArray[]::new), x.getShape().dimension() - 1);
  }
}
