package dev.memgen.model;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;

/**
 * Grouped-query self-attention with q/k/v fused into one projection. Query heads are grouped under their
 * key/value head ({@code [batch, kvHeads, group * n, headDim]}), so K and V are never repeated per query head.
 */
final class Attention {
  private final ModelConfig c;
  final Linear qkv; // [(heads + 2 kvHeads) * headDim, hidden]: q, k, v stacked; bias for Qwen2 only
  final Linear out; // [hidden, heads * headDim]
  private final NDArray scale; // 1/sqrt(headDim), a tensor made once (see RmsNorm)

  Attention(ModelConfig c, Linear qkv, Linear out, NDManager manager) {
    this.c = c;
    this.qkv = qkv;
    this.out = out;
    this.scale = manager.create((float) (1.0 / Math.sqrt(c.headDim())));
  }

  /**
   * @param x normalised input {@code [batch, n, hidden]}
   * @param mask additive mask {@code [batch, 1, 1, n, length + n]}, or null when every key is visible
   * @param lora adapters to add to the projections, or null for the frozen base
   * @param packing null, or how the real rows of {@code x} ({@code [1, real, hidden]}) sit in the batch's slots
   * @return the attention output after o_proj, {@code [batch, n, hidden]} (packed as {@code x} is)
   */
  NDArray forward(NDArray x, Rope rope, NDArray cos, NDArray sin, NDArray mask, KvCache cache, int layer, LoraAdapter lora,
      Packing packing) {
    long b = packing == null ? x.getShape().get(0) : packing.batch;
    long n = packing == null ? x.getShape().get(1) : packing.slots;
    int heads = c.numHeads();
    int kvHeads = c.numKvHeads();
    int d = c.headDim();
    int group = heads / kvHeads;
    int start = cache.length();

    NDArray qkv = this.qkv.forward(x);
    if (lora != null) {
      long q = (long) heads * d;
      long kv = (long) kvHeads * d;
      lora.addDelta(layer, LoraAdapter.Target.Q_PROJ, x, qkv, 0, q);
      lora.addDelta(layer, LoraAdapter.Target.K_PROJ, x, qkv, q, q + kv);
      lora.addDelta(layer, LoraAdapter.Target.V_PROJ, x, qkv, q + kv, q + 2 * kv);
    }
    if (packing != null) {
      qkv = packing.unpack(qkv);
    }
    NDArray qk = rope.apply(Ops.reshape(Ops.slice(qkv, 2, 0, (long) (heads + kvHeads) * d), b, n, heads + kvHeads, d), cos, sin);
    NDArray v = Ops.reshape(Ops.slice(qkv, 2, (long) (heads + kvHeads) * d, c.qkvSize()), b, n, kvHeads, d);

    // q: [b, n, kv, group, d] -> [b, kv, group * n, d];  k, v: [b, n, kv, d] -> [b, kv, n, d]
    NDArray q = Ops.reshape(Ops.permute(Ops.reshape(Ops.slice(qk, 2, 0, heads), b, n, kvHeads, group, d), 0, 2, 3, 1, 4),
        b, kvHeads, group * n, d);
    NDArray k = Ops.permute(Ops.slice(qk, 2, heads, heads + kvHeads), 0, 2, 1, 3);
    Ops.write(cache.keys(layer), 2, start, k);
    Ops.write(cache.values(layer), 2, start, Ops.permute(v, 0, 2, 1, 3));

    // Views of the cache's first start+n slots; owned by this step (they would otherwise pile up in the cache).
    NDArray keys = Ops.slice(cache.keys(layer), 2, 0, start + n);
    NDArray values = Ops.slice(cache.values(layer), 2, 0, start + n);
    keys.attach(x.getManager());
    values.attach(x.getManager());
    NDArray scores = Ops.matmul(q.mul(scale), keys.transpose(0, 1, 3, 2)); // [b, kv, group * n, T]
    if (mask != null) {
      scores = Ops.reshape(Ops.add(Ops.reshape(scores, b, kvHeads, group, n, start + n), mask), b, kvHeads, group * n, start + n);
    }
    NDArray probs = Ops.softmaxLastAxis(scores);
    NDArray mixed = Ops.matmul(probs, values); // [b, kv, group * n, d]
    mixed = Ops.reshape(Ops.permute(Ops.reshape(mixed, b, kvHeads, group, n, d), 0, 3, 1, 2, 4), b, n, (long) heads * d);
    if (packing != null) {
      mixed = packing.pack(mixed);
    }
    NDArray y = out.forward(mixed);
    if (lora != null) {
      lora.addDelta(layer, LoraAdapter.Target.O_PROJ, mixed, y, 0, c.hiddenSize());
    }
    return y;
  }
}
