package dev.memgen.model;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.types.Shape;
import ai.djl.pytorch.engine.PtNDArray;
import ai.djl.pytorch.jni.JniUtils;

/**
 * The handful of tensor operations the decoder needs, called straight on libtorch. Each is one JNI call (the
 * decode loop is memory-bound, but a 24-layer model makes ~1,000 of these calls per token, so no call may
 * parse an index string or allocate more than its result). Results live in the manager of the first argument.
 */
final class Ops {
  private Ops() {}

  /** {@code x @ w^T + b} with {@code w} in nn.Linear layout [out, in]; {@code b} may be null. */
  static NDArray linear(NDArray x, NDArray w, NDArray b) {
    return JniUtils.linear((PtNDArray) x, (PtNDArray) w, (PtNDArray) b);
  }

  /** A view of {@code x} restricted to [from, to) along {@code axis}; no copy. */
  static NDArray slice(NDArray x, int axis, long from, long to) {
    return JniUtils.slice((PtNDArray) x, axis, from, to, 1);
  }

  /** Writes {@code value} into {@code into}[..., from:from+n, ...] along {@code axis}, in place. */
  static void write(NDArray into, int axis, long from, NDArray value) {
    long[] shape = into.getShape().getShape();
    long[] min = new long[shape.length];
    long[] max = shape.clone();
    long[] step = new long[shape.length];
    java.util.Arrays.fill(step, 1);
    min[axis] = from;
    max[axis] = from + value.getShape().get(axis);
    JniUtils.indexSet((PtNDArray) into, (PtNDArray) value, min, max, step);
  }

  /** Writes {@code value} into the box of {@code into} that starts at {@code min} (one entry per axis), in place. */
  static void writeAt(NDArray into, long[] min, NDArray value) {
    long[] max = new long[min.length];
    long[] step = new long[min.length];
    for (int i = 0; i < min.length; i++) {
      max[i] = min[i] + value.getShape().get(i);
      step[i] = 1;
    }
    JniUtils.indexSet((PtNDArray) into, (PtNDArray) value, min, max, step);
  }

  /**
   * {@code x} gathered along {@code axis} at {@code index} ({@code [..., n, ...]} int64, size 1 on every other axis):
   * the index is expanded, not copied, to the result's shape ({@code torch.gather} over an expanded index).
   */
  static NDArray gather(NDArray x, int axis, NDArray index) {
    long[] shape = x.getShape().getShape().clone(); // getShape() hands out the array the tensor's cached Shape holds
    shape[axis] = index.getShape().get(axis);
    return JniUtils.gather((PtNDArray) x, JniUtils.broadcast((PtNDArray) index, new Shape(shape)), axis);
  }

  static NDArray reshape(NDArray x, long... shape) {
    return JniUtils.reshape((PtNDArray) x, shape);
  }

  static NDArray permute(NDArray x, long... axes) {
    return JniUtils.permute((PtNDArray) x, axes);
  }

  static NDArray matmul(NDArray a, NDArray b) {
    return JniUtils.matmul((PtNDArray) a, (PtNDArray) b);
  }

  static NDArray add(NDArray a, NDArray b) {
    return JniUtils.add((PtNDArray) a, (PtNDArray) b);
  }

  static NDArray mul(NDArray a, NDArray b) {
    return JniUtils.mul((PtNDArray) a, (PtNDArray) b);
  }

  static NDArray softmaxLastAxis(NDArray x) {
    return JniUtils.softmax((PtNDArray) x, -1, x.getDataType());
  }

  /** SiLU(gate) * up, for the SwiGLU MLP. */
  static NDArray swiglu(NDArray gate, NDArray up) {
    return gate.mul(JniUtils.sigmoid((PtNDArray) gate)).muli(up);
  }

  static NDArray embedding(NDArray ids, NDArray table) {
    return JniUtils.embedding((PtNDArray) ids, (PtNDArray) table, false);
  }

  static Shape shape(long... dims) {
    return new Shape(dims);
  }
}
