package dev.memgen.model;

import ai.djl.ndarray.NDArray;

/** SwiGLU feed-forward: {@code down(silu(gate(x)) * up(x))}, with gate and up fused into one matmul. */
final class Mlp {
  private final Linear gateUp; // [2 * intermediate, hidden]: gate rows, then up rows
  private final Linear down; //   [hidden, intermediate]
  private final long intermediate;

  Mlp(Linear gateUp, Linear down, long intermediate) {
    this.gateUp = gateUp;
    this.down = down;
    this.intermediate = intermediate;
  }

  NDArray forward(NDArray x) {
    NDArray gateUp = this.gateUp.forward(x);
    int last = gateUp.getShape().dimension() - 1;
    NDArray hidden = Ops.swiglu(Ops.slice(gateUp, last, 0, intermediate), Ops.slice(gateUp, last, intermediate, 2 * intermediate));
    return down.forward(hidden);
  }
}
