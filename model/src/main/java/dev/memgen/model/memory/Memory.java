package dev.memgen.model.memory;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import dev.memgen.model.Decoder;
import dev.memgen.model.LoraAdapter;
import dev.memgen.model.ModelConfig;
import dev.memgen.model.Trigger;
import dev.memgen.model.Weaver;
import dev.memgen.model.checkpoint.CheckpointException;
import dev.memgen.model.checkpoint.DType;
import dev.memgen.model.checkpoint.SafeTensorsFile;
import dev.memgen.model.checkpoint.SafeTensorsWriter;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.SplittableRandom;

/**
 * A memory checkpoint: the weaver's and the trigger's parameters in {@code memory.safetensors} (f32) plus
 * {@code manifest.json}. Loaded onto a base {@link Decoder} whose weights it shares; a memory made for another base
 * (a different fingerprint, hidden size or depth) is refused with a message saying which.
 *
 * <p>Tensor names: {@code {weaver,trigger}.lora.layers.{i}.{self_attn,mlp}.{module}.lora_{A,B}},
 * {@code weaver.{reasoner_to_weaver,weaver_to_reasoner}.{weight,bias}}, {@code weaver.{prompt,inference}_queries},
 * {@code weaver.{prompt,inference}_query_norm.{weight,bias}}, {@code weaver.{prompt,inference}_query_scale},
 * {@code trigger.head.{weight,bias}}.
 */
public final class Memory implements AutoCloseable {
  public static final String TENSORS = "memory.safetensors";
  public static final double LAYER_NORM_EPS = 1e-5;

  private final MemoryManifest manifest;
  private final NDManager manager;
  private final Weaver weaver;
  private final Trigger trigger;
  private final Map<String, NDArray> tensors;

  private Memory(MemoryManifest manifest, NDManager manager, Weaver weaver, Trigger trigger, Map<String, NDArray> tensors) {
    this.manifest = manifest;
    this.manager = manager;
    this.weaver = weaver;
    this.trigger = trigger;
    this.tensors = tensors;
  }

  /**
   * Every tensor by its file name, in file order: the very tensors the weaver and trigger compute with, so
   * training updates them in place.
   */
  public Map<String, NDArray> tensors() {
    return java.util.Collections.unmodifiableMap(tensors);
  }

  /** The tensors of one part, "weaver" or "trigger". */
  public Map<String, NDArray> tensors(String part) {
    Map<String, NDArray> m = new LinkedHashMap<>();
    tensors.forEach((name, t) -> {
      if (name.startsWith(part + ".")) {
        m.put(name, t);
      }
    });
    return m;
  }

  /** Writes this memory's current tensors and {@code manifest} to {@code out} (a new memory directory). */
  public void save(Path out, MemoryManifest manifest) throws IOException {
    Files.createDirectories(out);
    List<SafeTensorsWriter.Tensor> list = new ArrayList<>();
    tensors.forEach((name, t) -> list.add(SafeTensorsWriter.Tensor.of(name, t)));
    SafeTensorsWriter.write(out.resolve(TENSORS), list, DType.F32);
    manifest.write(out);
  }

  public MemoryManifest manifest() {
    return manifest;
  }

  public Weaver weaver() {
    return weaver;
  }

  public Trigger trigger() {
    return trigger;
  }

  /** Loads {@code dir} onto {@code base}, whose checkpoint has fingerprint {@code baseFingerprint}. */
  public static Memory load(Path dir, Decoder base, String baseFingerprint) {
    MemoryManifest mf = MemoryManifest.read(dir);
    ModelConfig c = base.config();
    Path manifestFile = dir.resolve(MemoryManifest.FILE);
    if (mf.hiddenSize() != c.hiddenSize() || mf.numLayers() != c.numLayers()) {
      throw new CheckpointException(manifestFile, null, "made for a base with hidden_size " + mf.hiddenSize() + " and "
          + mf.numLayers() + " layers, but the base has " + c.hiddenSize() + " and " + c.numLayers());
    }
    if (!mf.baseFingerprint().equals(baseFingerprint)) {
      throw new CheckpointException(manifestFile, null, "made for another base model (fingerprint '"
          + mf.baseFingerprint() + "', this base is '" + baseFingerprint + "')");
    }
    SafeTensorsFile file = SafeTensorsFile.open(dir.resolve(TENSORS));
    Map<String, long[]> shapes = shapes(c, mf);
    for (String name : file.entries().keySet()) {
      if (!shapes.containsKey(name)) {
        throw new CheckpointException(file.path(), name, "unexpected tensor (not part of this manifest's memory)");
      }
    }
    NDManager m = base.manager().newSubManager();
    try {
      Map<String, NDArray> t = new LinkedHashMap<>();
      shapes.forEach((name, shape) -> t.put(name, file.load(m, name, SafeTensorsFile.MAX_BLOCK_BYTES, "manifest.json implies", shape)));
      NDArray[][] queries = new NDArray[2][];
      for (Weaver.Kind kind : Weaver.Kind.values()) {
        String p = "weaver." + kind.name().toLowerCase() + "_";
        queries[kind.ordinal()] = new NDArray[] {
          t.get(p + "queries"), t.get(p + "query_norm.weight"), t.get(p + "query_norm.bias"), t.get(p + "query_scale")
        };
      }
      Weaver weaver = new Weaver(base, adapter(t, "weaver", c, mf.weaverLora(), m),
          t.get("weaver.reasoner_to_weaver.weight"), t.get("weaver.reasoner_to_weaver.bias"),
          t.get("weaver.weaver_to_reasoner.weight"), t.get("weaver.weaver_to_reasoner.bias"), queries, LAYER_NORM_EPS);
      Trigger trigger = new Trigger(base, adapter(t, "trigger", c, mf.triggerLora(), m),
          t.get("trigger.head.weight"), t.get("trigger.head.bias"));
      return new Memory(mf, m, weaver, trigger, t);
    } catch (RuntimeException e) {
      m.close();
      throw e;
    }
  }

  private static LoraAdapter adapter(Map<String, NDArray> t, String which, ModelConfig c, LoraConfig lc, NDManager m) {
    List<Map<LoraAdapter.Target, LoraAdapter.Pair>> layers = new ArrayList<>();
    for (int l = 0; l < c.numLayers(); l++) {
      Map<LoraAdapter.Target, LoraAdapter.Pair> layer = new LinkedHashMap<>();
      for (LoraAdapter.Target target : lc.targets()) {
        String p = loraPrefix(which, l, target);
        layer.put(target, new LoraAdapter.Pair(t.get(p + ".lora_A"), t.get(p + ".lora_B")));
      }
      layers.add(layer);
    }
    return new LoraAdapter(layers, lc.alpha(), lc.rank(), m);
  }

  static String loraPrefix(String which, int layer, LoraAdapter.Target target) {
    return which + ".lora.layers." + layer + "." + target.block + "." + target.hfName;
  }

  /** Every tensor of a memory and its shape, in file order. */
  static Map<String, long[]> shapes(ModelConfig c, MemoryManifest mf) {
    Map<String, long[]> s = new LinkedHashMap<>();
    long h = c.hiddenSize();
    loraShapes(s, "weaver", c, mf.weaverLora());
    s.put("weaver.reasoner_to_weaver.weight", new long[] {h, h});
    s.put("weaver.reasoner_to_weaver.bias", new long[] {h});
    s.put("weaver.weaver_to_reasoner.weight", new long[] {h, h});
    s.put("weaver.weaver_to_reasoner.bias", new long[] {h});
    for (Weaver.Kind kind : Weaver.Kind.values()) {
      String p = "weaver." + kind.name().toLowerCase() + "_";
      s.put(p + "queries", new long[] {kind == Weaver.Kind.PROMPT ? mf.promptK() : mf.inferenceK(), h});
      s.put(p + "query_norm.weight", new long[] {h});
      s.put(p + "query_norm.bias", new long[] {h});
      s.put(p + "query_scale", new long[] {1});
    }
    loraShapes(s, "trigger", c, mf.triggerLora());
    s.put("trigger.head.weight", new long[] {2, h});
    s.put("trigger.head.bias", new long[] {2});
    return s;
  }

  private static void loraShapes(Map<String, long[]> s, String which, ModelConfig c, LoraConfig lc) {
    for (int l = 0; l < c.numLayers(); l++) {
      for (LoraAdapter.Target target : lc.targets()) {
        long[] f = target.features(c);
        s.put(loraPrefix(which, l, target) + ".lora_A", new long[] {lc.rank(), f[0]});
        s.put(loraPrefix(which, l, target) + ".lora_B", new long[] {f[1], lc.rank()});
      }
    }
  }

  /**
   * Writes a freshly initialised memory, as training starts from: LoRA A like PEFT (uniform in +-1/sqrt(in)) and
   * B = 0, so the weaver's base starts as the frozen base; projections like nn.Linear; queries N(0, 1); LayerNorm
   * weight 1, bias 0; scales 1; trigger head like nn.Linear.
   */
  public static void init(Path out, ModelConfig c, MemoryManifest mf, long seed) throws IOException {
    Files.createDirectories(out);
    SplittableRandom random = new SplittableRandom(seed);
    List<SafeTensorsWriter.Tensor> tensors = new ArrayList<>();
    shapes(c, mf).forEach((name, shape) ->
        tensors.add(new SafeTensorsWriter.Tensor(name, shape, initialValues(name, shape, c.hiddenSize(), random))));
    SafeTensorsWriter.write(out.resolve(TENSORS), tensors, DType.F32);
    mf.write(out);
  }

  private static SafeTensorsWriter.ValueSource initialValues(String name, long[] shape, int hidden, SplittableRandom r) {
    if (name.endsWith(".lora_B")) {
      return () -> 0f;
    }
    if (name.endsWith("_queries")) {
      return () -> (float) r.nextGaussian();
    }
    if (name.endsWith("norm.weight") || name.endsWith("_query_scale")) {
      return () -> 1f;
    }
    if (name.endsWith("norm.bias")) {
      return () -> 0f;
    }
    // nn.Linear's default (and PEFT's lora_A): uniform in +-1/sqrt(fan_in); every bias here belongs to a layer
    // reading the hidden size.
    double bound = 1 / Math.sqrt(shape.length == 2 ? shape[1] : hidden);
    return () -> (float) ((r.nextDouble() * 2 - 1) * bound);
  }

  @Override
  public void close() {
    manager.close();
  }
}
