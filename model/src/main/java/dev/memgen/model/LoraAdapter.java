package dev.memgen.model;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.pytorch.engine.PtNDArray;
import ai.djl.pytorch.jni.JniUtils;
import java.util.EnumMap;
import java.util.List;
import java.util.Map;

/**
 * Low-rank adapters on a decoder's linear layers: {@code y = x W^T + b + (alpha / r) (x A^T) B^T}, with
 * {@code A [r, in]} and {@code B [out, r]}. The base weights stay untouched and shared: the same frozen
 * {@link Decoder} runs plain for the reasoner and with an adapter for the weaver or the trigger.
 */
public final class LoraAdapter {
  /** The linear layers a LoRA can target, by their Hugging Face names. */
  public enum Target {
    Q_PROJ("self_attn", "q_proj"),
    K_PROJ("self_attn", "k_proj"),
    V_PROJ("self_attn", "v_proj"),
    O_PROJ("self_attn", "o_proj"),
    GATE_PROJ("mlp", "gate_proj"),
    UP_PROJ("mlp", "up_proj"),
    DOWN_PROJ("mlp", "down_proj");

    public final String block;
    public final String hfName;

    Target(String block, String hfName) {
      this.block = block;
      this.hfName = hfName;
    }

    public static Target of(String hfName) {
      for (Target t : values()) {
        if (t.hfName.equals(hfName)) {
          return t;
        }
      }
      throw new IllegalArgumentException("unknown LoRA target '" + hfName
          + "' (q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj)");
    }

    /** {@code [in, out]} features of this layer in a model of config {@code c}. */
    public long[] features(ModelConfig c) {
      long h = c.hiddenSize();
      long q = (long) c.numHeads() * c.headDim();
      long kv = (long) c.numKvHeads() * c.headDim();
      long inter = c.intermediateSize();
      return switch (this) {
        case Q_PROJ -> new long[] {h, q};
        case K_PROJ, V_PROJ -> new long[] {h, kv};
        case O_PROJ -> new long[] {q, h};
        case GATE_PROJ, UP_PROJ -> new long[] {h, inter};
        case DOWN_PROJ -> new long[] {inter, h};
      };
    }
  }

  /** One targeted layer's adapter: {@code a [r, in]}, {@code b [out, r]}. */
  public record Pair(NDArray a, NDArray b) {}

  private final List<Map<Target, Pair>> layers;
  private final NDArray scaling; // alpha / r, a tensor made once
  private final double dropout; //  on the adapter's input, in training only (PEFT's lora_dropout)
  private final List<Rows> rows; //  non-null: a batch whose ranges of rows use different adapters (see byRows)

  /** Rows [from, to) along {@code axis} of a batch use {@code adapter} (null: none, the base itself). */
  private record Rows(LoraAdapter adapter, int from, int to, int axis) {}

  /**
   * @param layers per decoder layer, the (A, B) pair of each targeted linear layer
   * @param alpha LoRA alpha; the delta is scaled by alpha / r
   */
  public LoraAdapter(List<Map<Target, Pair>> layers, double alpha, int rank, NDManager manager) {
    this.layers = layers.stream().map(m -> m.isEmpty() ? Map.<Target, Pair>of() : new EnumMap<>(m)).toList();
    this.scaling = manager.create((float) (alpha / rank));
    this.dropout = 0;
    this.rows = null;
  }

  private LoraAdapter(LoraAdapter of, double dropout) {
    this.layers = of.layers;
    this.scaling = of.scaling;
    this.dropout = dropout;
    this.rows = null;
  }

  private LoraAdapter(List<Rows> rows) {
    this.layers = null;
    this.scaling = null;
    this.dropout = 0;
    this.rows = rows;
  }

  /**
   * Adapters per batch row: row i of a forward call gets {@code perRow.get(i)} (null: none). The base's products
   * stay one product over the whole batch; each adapter adds its low-rank delta to its own rows (the S-LoRA / Punica
   * idea: sessions on different adapters, or on two versions of one, share a batch). Equal adapters in consecutive
   * rows are one product: put rows of the same adapter together. Null when no row has an adapter.
   */
  static LoraAdapter byRows(List<LoraAdapter> perRow) {
    List<Rows> ranges = new java.util.ArrayList<>();
    for (int i = 0; i < perRow.size(); i++) {
      LoraAdapter a = perRow.get(i);
      if (a != null && a.rows != null) {
        throw new IllegalArgumentException("row " + i + " has a per-row adapter itself");
      }
      Rows last = ranges.isEmpty() ? null : ranges.get(ranges.size() - 1);
      if (last != null && last.adapter() == a) {
        ranges.set(ranges.size() - 1, new Rows(a, last.from(), i + 1, 0));
      } else {
        ranges.add(new Rows(a, i, i + 1, 0));
      }
    }
    if (ranges.size() == 1) {
      return ranges.get(0).adapter(); // one adapter for every row: the plain path
    }
    return new LoraAdapter(ranges);
  }

  /**
   * This adapter as training sees it: dropout with probability {@code p} on each adapter's input (the frozen path
   * sees the input unchanged). Same tensors; masks come from libtorch's generator, so a seeded step repeats.
   */
  public LoraAdapter withDropout(double p) {
    return p == 0 ? this : new LoraAdapter(this, p);
  }

  /** Every (A, B) pair, per layer: the tensors training updates. */
  public List<Map<Target, Pair>> layers() {
    return layers;
  }

  /** This adapter for a call whose real rows are packed ({@link Packing}): per-row ranges become ranges of packed rows. */
  LoraAdapter packed(Packing packing) {
    if (rows == null) {
      return this;
    }
    List<Rows> ranges = new java.util.ArrayList<>();
    for (Rows r : rows) {
      int from = packing.offset(r.from());
      int to = packing.offset(r.to());
      if (to > from) {
        ranges.add(new Rows(r.adapter(), from, to, 1));
      }
    }
    return new LoraAdapter(ranges);
  }

  /**
   * Adds layer {@code layer}'s delta for {@code target}, computed from input {@code x}, to columns [from, to) of
   * {@code y} in place (fused projections: q/k/v share one output, gate/up another). No-op when not targeted.
   */
  void addDelta(int layer, Target target, NDArray x, NDArray y, long from, long to) {
    if (rows != null) {
      for (Rows r : rows) {
        if (r.adapter() != null) {
          r.adapter().addDelta(layer, target, Ops.slice(x, r.axis(), r.from(), r.to()), Ops.slice(y, r.axis(), r.from(), r.to()),
              from, to);
        }
      }
      return;
    }
    Pair p = layers.get(layer).get(target);
    if (p == null) {
      return;
    }
    NDArray in = dropout > 0 ? JniUtils.dropout((PtNDArray) x, dropout, true) : x;
    NDArray delta = Ops.linear(Ops.linear(in, p.a(), null), p.b(), null).muli(scaling);
    Ops.slice(y, y.getShape().dimension() - 1, from, to).addi(delta);
  }
}
