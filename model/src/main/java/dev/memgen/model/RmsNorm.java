package dev.memgen.model;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.pytorch.engine.PtNDArray;
import ai.djl.pytorch.jni.JniUtils;

/**
 * RMSNorm over the last axis: {@code x / sqrt(mean(x^2) + eps) * w}. eps is a tensor made once: a Java scalar
 * operand would make libtorch build and convert a scalar tensor on every call.
 */
final class RmsNorm {
  final NDArray weight;
  private final NDArray eps;

  RmsNorm(NDArray weight, double eps, NDManager manager) {
    this.weight = weight;
    this.eps = manager.create((float) eps);
  }

  NDArray forward(NDArray x) {
    NDArray meanSquare = JniUtils.mean((PtNDArray) x.square(), -1, true);
    return x.div(meanSquare.addi(eps).sqrt()).mul(weight); // not muli: autograd needs the product's input
  }
}
