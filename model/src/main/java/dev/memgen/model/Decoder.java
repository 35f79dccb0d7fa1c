package dev.memgen.model;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDArrays;
import ai.djl.ndarray.NDList;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.DataType;
import ai.djl.ndarray.types.Shape;
import dev.memgen.model.checkpoint.Checkpoint;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.Map;

/**
 * The frozen reasoner: a Qwen2/Llama decoder-only transformer on DJL's PyTorch engine. Inputs are rows of
 * input embeddings, so token embeddings and latent memory rows enter the same way; every call appends its
 * rows to a {@link KvCache} and returns the final-norm hidden states of those rows.
 */
public final class Decoder implements AutoCloseable {
  private final ModelConfig config;
  private final NDManager manager;
  private final NDArray embedTokens; // [vocab, hidden]
  private final Block[] blocks;
  private final RmsNorm finalNorm;
  private final Linear lmHead; //       [vocab, hidden]; the embedding table when tied
  private final Rope rope;
  private final Map<String, NDArray> parameters; // every weight by name; q/k/v and gate/up fused (see load)
  private final long workPerRow; // multiply-adds of one row through one layer's projections and MLP

  private record Block(RmsNorm inputNorm, Attention attention, RmsNorm postNorm, Mlp mlp) {}

  private Decoder(ModelConfig config, NDManager manager, NDArray embedTokens, Block[] blocks, RmsNorm finalNorm, NDArray lmHead,
      Map<String, NDArray> parameters) {
    this.parameters = parameters;
    this.config = config;
    this.manager = manager;
    this.embedTokens = embedTokens;
    this.blocks = blocks;
    this.finalNorm = finalNorm;
    this.lmHead = new Linear(lmHead, null);
    this.rope = new Rope(config, manager);
    long h = config.hiddenSize();
    this.workPerRow = (long) config.qkvSize() * h + (long) config.numHeads() * config.headDim() * h
        + 3L * h * config.intermediateSize();
  }

  /** Loads a checkpoint directory into a new manager (closed with the decoder). */
  public static Decoder load(Path dir) {
    return load(Checkpoint.open(dir), Engines.manager());
  }

  public static Decoder load(Checkpoint ckpt, NDManager parent) {
    ModelConfig c = ckpt.config();
    NDManager m = parent.newSubManager();
    Map<String, NDArray> params = new LinkedHashMap<>();
    try {
      long h = c.hiddenSize();
      long qDim = (long) c.numHeads() * c.headDim();
      long kvDim = (long) c.numKvHeads() * c.headDim();
      long inter = c.intermediateSize();
      NDArray embed = ckpt.load(m, "model.embed_tokens.weight", c.vocabSize(), h);
      Block[] blocks = new Block[c.numLayers()];
      for (int l = 0; l < c.numLayers(); l++) {
        String p = "model.layers." + l + ".";
        NDArray qkvW = fuse(ckpt.load(m, p + "self_attn.q_proj.weight", qDim, h),
            ckpt.load(m, p + "self_attn.k_proj.weight", kvDim, h), ckpt.load(m, p + "self_attn.v_proj.weight", kvDim, h));
        NDArray qkvB = !c.qkvBias() ? null : fuse(ckpt.load(m, p + "self_attn.q_proj.bias", qDim),
            ckpt.load(m, p + "self_attn.k_proj.bias", kvDim), ckpt.load(m, p + "self_attn.v_proj.bias", kvDim));
        NDArray outB = !c.outBias() ? null : ckpt.load(m, p + "self_attn.o_proj.bias", h);
        Attention attention = new Attention(c, new Linear(qkvW, qkvB),
            new Linear(ckpt.load(m, p + "self_attn.o_proj.weight", h, qDim), outB), m);
        NDArray gateUpB = !c.mlpBias() ? null
            : fuse(ckpt.load(m, p + "mlp.gate_proj.bias", inter), ckpt.load(m, p + "mlp.up_proj.bias", inter));
        NDArray downB = !c.mlpBias() ? null : ckpt.load(m, p + "mlp.down_proj.bias", h);
        Mlp mlp = new Mlp(
            new Linear(fuse(ckpt.load(m, p + "mlp.gate_proj.weight", inter, h), ckpt.load(m, p + "mlp.up_proj.weight", inter, h)), gateUpB),
            new Linear(ckpt.load(m, p + "mlp.down_proj.weight", h, inter), downB), inter);
        blocks[l] = new Block(new RmsNorm(ckpt.load(m, p + "input_layernorm.weight", h), c.rmsNormEps(), m), attention,
            new RmsNorm(ckpt.load(m, p + "post_attention_layernorm.weight", h), c.rmsNormEps(), m), mlp);
      }
      RmsNorm norm = new RmsNorm(ckpt.load(m, "model.norm.weight", h), c.rmsNormEps(), m);
      NDArray head = c.tieWordEmbeddings() && !ckpt.has("lm_head.weight")
          ? embed
          : ckpt.load(m, "lm_head.weight", c.vocabSize(), h);
      params.put("model.embed_tokens.weight", embed);
      for (int l = 0; l < c.numLayers(); l++) {
        String p = "model.layers." + l + ".";
        Block blk = blocks[l];
        params.put(p + "input_layernorm.weight", blk.inputNorm().weight);
        params.put(p + "self_attn.qkv_proj.weight", blk.attention().qkv.weight);
        putIfPresent(params, p + "self_attn.qkv_proj.bias", blk.attention().qkv.bias);
        params.put(p + "self_attn.o_proj.weight", blk.attention().out.weight);
        putIfPresent(params, p + "self_attn.o_proj.bias", blk.attention().out.bias);
        params.put(p + "post_attention_layernorm.weight", blk.postNorm().weight);
        params.put(p + "mlp.gate_up_proj.weight", blk.mlp().gateUp.weight);
        putIfPresent(params, p + "mlp.gate_up_proj.bias", blk.mlp().gateUp.bias);
        params.put(p + "mlp.down_proj.weight", blk.mlp().down.weight);
        putIfPresent(params, p + "mlp.down_proj.bias", blk.mlp().down.bias);
      }
      params.put("model.norm.weight", norm.weight);
      if (head != embed) {
        params.put("lm_head.weight", head);
      }
      return new Decoder(c, m, embed, blocks, norm, head, params);
    } catch (RuntimeException e) {
      m.close();
      throw e;
    }
  }

  private static void putIfPresent(Map<String, NDArray> params, String name, NDArray tensor) {
    if (tensor != null) {
      params.put(name, tensor);
    }
  }

  /**
   * Every weight by name, as the decoder holds it: Hugging Face names, except that q/k/v are one
   * {@code self_attn.qkv_proj} (rows q, k, v) and gate/up one {@code mlp.gate_up_proj} (rows gate, up). A tied
   * head is the embedding table and appears once. Pre-training updates these tensors in place.
   */
  public Map<String, NDArray> parameters() {
    return Collections.unmodifiableMap(parameters);
  }

  /** Stacks row blocks into one weight (one matmul instead of several) and frees the parts. */
  private static NDArray fuse(NDArray... parts) {
    NDList list = new NDList(parts);
    NDArray fused = NDArrays.concat(list, 0);
    list.close();
    return fused;
  }

  public ModelConfig config() {
    return config;
  }

  public NDManager manager() {
    return manager;
  }

  /** Total bytes of weights one decode step reads (each weight once; a tied head counts once). */
  public long weightBytes() {
    long sum = embedTokens.size() + config.hiddenSize() + (lmHead.weight == embedTokens ? 0 : lmHead.weight.size());
    long h = config.hiddenSize();
    long inter = config.intermediateSize();
    long perLayer = 2 * h + (long) config.qkvSize() * h + (config.qkvBias() ? config.qkvSize() : 0)
        + h * (long) config.numHeads() * config.headDim() + (config.outBias() ? h : 0)
        + 3L * h * inter + (config.mlpBias() ? 2 * inter + h : 0);
    return 4 * (sum + perLayer * config.numLayers());
  }

  /**
   * Packs the real rows of a padded call ({@link Packing}) when its padding would cost at least {@code multiplyAdds}
   * per layer; returns the previous bound. 0 packs every padded call (tests check the packed path with it).
   */
  public static long packPaddingAbove(long multiplyAdds) {
    long previous = Packing.minWaste;
    Packing.minWaste = multiplyAdds;
    return previous;
  }

  public KvCache newCache(int batch, int capacity) {
    return new KvCache(manager, config, batch, capacity);
  }

  /** Token embeddings {@code [batch, n, hidden]} for ids {@code [batch][n]}; a negative id (padding) gives zeros. */
  public NDArray embed(NDManager into, int[][] ids) {
    int n = ids[0].length;
    long[] flat = new long[ids.length * n];
    boolean padded = false;
    for (int b = 0; b < ids.length; b++) {
      if (ids[b].length != n) {
        throw new IllegalArgumentException("ragged ids: row " + b + " has " + ids[b].length + " tokens, row 0 has " + n);
      }
      for (int t = 0; t < n; t++) {
        int id = ids[b][t];
        if (id >= config.vocabSize()) {
          throw new IllegalArgumentException("token id " + id + " at row " + b + ", index " + t
              + " is outside the vocabulary [0, " + config.vocabSize() + ")");
        }
        padded |= id < 0;
        flat[b * n + t] = Math.max(id, 0);
      }
    }
    NDArray idArray = into.create(flat, new Shape(ids.length, n));
    NDArray rows = Ops.embedding(idArray, embedTokens);
    if (padded) {
      float[] keep = new float[flat.length];
      for (int i = 0; i < flat.length; i++) {
        keep[i] = ids[i / n][i % n] < 0 ? 0f : 1f;
      }
      rows = rows.muli(into.create(keep, new Shape(ids.length, n, 1)));
    }
    return rows;
  }

  /**
   * Runs rows of input embeddings through the decoder, appending them to the cache.
   *
   * @param embeds {@code [batch, n, hidden]} f32 rows: token embeddings, latent memory, anything
   * @param valid {@code [batch][n]}: false marks a slot the row does not use (padding); it is masked out
   * @return final-norm hidden states {@code [batch, n, hidden]}, in the manager of {@code embeds}
   */
  public NDArray forward(KvCache cache, NDArray embeds, boolean[][] valid) {
    return forward(cache, embeds, valid, null);
  }

  /**
   * As {@link #forward(KvCache, NDArray, boolean[][])}, with low-rank adapters added to the frozen weights (the
   * weaver's and the trigger's view of the shared base); {@code lora} null means the base itself.
   */
  public NDArray forward(KvCache cache, NDArray embeds, boolean[][] valid, LoraAdapter lora) {
    Shape s = embeds.getShape();
    if (s.dimension() != 3 || s.get(0) != cache.batchSize() || s.get(2) != config.hiddenSize() || s.get(1) < 1) {
      throw new IllegalArgumentException("embeds must be [" + cache.batchSize() + ", n>=1, " + config.hiddenSize()
          + "], got " + s);
    }
    if (embeds.getDataType() != DataType.FLOAT32) {
      throw new IllegalArgumentException("embeds must be float32, got " + embeds.getDataType());
    }
    int n = (int) s.get(1);
    if (valid.length != cache.batchSize() || Arrays.stream(valid).anyMatch(v -> v.length != n)) {
      throw new IllegalArgumentException("valid must be [" + cache.batchSize() + "][" + n + "]");
    }
    NDManager caller = embeds.getManager();
    try (NDManager step = caller.newSubManager()) {
      int[][] positions = cache.reserve(valid);
      NDArray[] cosSin = rope.tables(step, positions);
      NDArray mask = !cache.needsMask(n) ? null
          : step.create(cache.mask(n), new Shape(cache.batchSize(), 1, 1, n, cache.length() + n));
      // A view of the caller's rows owned by this step: no copy (DJL's duplicate() would also cut autograd's graph),
      // and nothing below writes to it in place.
      NDArray x = Ops.slice(embeds, 1, 0, n);
      x.attach(step);
      Packing packing = Packing.of(valid, workPerRow, step);
      LoraAdapter rowLora = lora;
      if (packing != null) { // the residual stream holds the real rows only; attention unpacks them (see Packing)
        x = packing.pack(x);
        rowLora = lora == null ? null : lora.packed(packing);
      }
      for (int l = 0; l < blocks.length; l++) {
        Block blk = blocks[l];
        x = x.add(blk.attention.forward(blk.inputNorm.forward(x), rope, cosSin[0], cosSin[1], mask, cache, l, rowLora,
            packing));
        x = x.add(blk.mlp.forward(blk.postNorm.forward(x), l, rowLora)); // not addi: postNorm's backward needs x
      }
      cache.advance(n);
      NDArray hidden = finalNorm.forward(x);
      if (packing != null) {
        hidden = packing.unpack(hidden);
      }
      hidden.attach(caller);
      return hidden;
    }
  }

  /**
   * Runs the new rows of several one-row caches (each a sequence of its own, e.g. prompts being prefilled) in one
   * batched call: their entries are gathered into one batch (padding masked, and packed out of the projections when
   * that pays) and each cache then holds its own new entries, exactly as a call on it alone would leave it.
   *
   * @param embeds per cache, its new rows {@code [1, n_i, hidden]} (n_i >= 1)
   * @return per cache, the final-norm hidden states of its new rows {@code [1, n_i, hidden]}, in {@code into}
   */
  public java.util.List<NDArray> forwardEach(java.util.List<KvCache> caches, java.util.List<NDArray> embeds, NDManager into) {
    int count = caches.size();
    if (count == 1) {
      NDArray h = forward(caches.get(0), embeds.get(0), new boolean[][] {allTrue((int) embeds.get(0).getShape().get(1))});
      h.attach(into);
      return java.util.List.of(h);
    }
    int longest = 0;
    for (NDArray e : embeds) {
      longest = Math.max(longest, (int) e.getShape().get(1));
    }
    java.util.List<NDArray> out = new java.util.ArrayList<>();
    try (NDManager m = into.newSubManager(); KvCache batch = KvCache.gather(manager, caches, longest)) {
      int start = batch.length();
      boolean[][] valid = new boolean[count][longest];
      NDList rows = new NDList();
      for (int i = 0; i < count; i++) {
        NDArray e = embeds.get(i);
        int n = (int) e.getShape().get(1);
        Arrays.fill(valid[i], 0, n, true);
        rows.add(n == longest ? e : e.concat(m.zeros(new Shape(1, longest - n, config.hiddenSize())), 1));
      }
      NDArray hidden = forward(batch, NDArrays.concat(rows, 0), valid);
      for (int i = 0; i < count; i++) {
        int n = (int) embeds.get(i).getShape().get(1);
        NDArray h = Ops.slice(Ops.slice(hidden, 0, i, i + 1), 1, 0, n);
        h.attach(into);
        out.add(h);
        batch.copyEntries(i, start, n, caches.get(i));
      }
    }
    return out;
  }

  private static boolean[] allTrue(int n) {
    boolean[] v = new boolean[n];
    Arrays.fill(v, true);
    return v;
  }

  /** Next-token logits {@code [..., vocab]} from final-norm hidden states {@code [..., hidden]}. */
  public NDArray logits(NDArray hidden) {
    return lmHead.forward(hidden);
  }

  @Override
  public void close() {
    manager.close();
  }
}
