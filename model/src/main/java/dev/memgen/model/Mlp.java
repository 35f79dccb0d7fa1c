package dev.memgen.model;

import ai.djl.ndarray.NDArray;

/** SwiGLU feed-forward: {@code down(silu(gate(x)) * up(x))}, with gate and up fused into one matmul. */
final class Mlp {
  private final NDArray gateUpWeight; // [2 * intermediate, hidden]: gate rows, then up rows
  private final NDArray downWeight; //   [hidden, intermediate]
  private final long intermediate;

  Mlp(NDArray gateUpWeight, NDArray downWeight, long intermediate) {
    this.gateUpWeight = gateUpWeight;
    this.downWeight = downWeight;
    this.intermediate = intermediate;
  }

  NDArray forward(NDArray x) {
    NDArray gateUp = Ops.linear(x, gateUpWeight, null);
    int last = gateUp.getShape().dimension() - 1;
    NDArray hidden = Ops.swiglu(Ops.slice(gateUp, last, 0, intermediate), Ops.slice(gateUp, last, intermediate, 2 * intermediate));
    return Ops.linear(hidden, downWeight, null);
  }
}
