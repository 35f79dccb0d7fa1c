package dev.memgen.model;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDList;

/** SwiGLU feed-forward: {@code down(silu(gate(x)) * up(x))}, with gate and up fused into one matmul. */
final class Mlp {
  final Linear gateUp; // [2 * intermediate, hidden]: gate rows, then up rows
  final Linear down; //   [hidden, intermediate]
  private final long intermediate;

  Mlp(Linear gateUp, Linear down, long intermediate) {
    this.gateUp = gateUp;
    this.down = down;
    this.intermediate = intermediate;
  }

  /** @param lora adapters to add to the projections (layer {@code layer}), or null for the frozen base */
  NDArray forward(NDArray x, int layer, LoraAdapter lora) {
    NDArray gateUp = this.gateUp.forward(x);
    if (lora != null) {
      lora.addDelta(layer, LoraAdapter.Target.GATE_PROJ, x, gateUp, 0, intermediate);
      lora.addDelta(layer, LoraAdapter.Target.UP_PROJ, x, gateUp, intermediate, 2 * intermediate);
    }
    // Split, not two slices: the same views, but the gradient is one concatenation of the halves' gradients, where two
    // slices' would each zero-fill a tensor of gateUp's size and then be summed (the same values, bit for bit).
    NDList halves = gateUp.split(2, gateUp.getShape().dimension() - 1);
    NDArray hidden = Ops.swiglu(halves.get(0), halves.get(1));
    NDArray y = down.forward(hidden);
    if (lora != null) {
      lora.addDelta(layer, LoraAdapter.Target.DOWN_PROJ, hidden, y, 0, y.getShape().get(y.getShape().dimension() - 1));
    }
    return y;
  }
}
