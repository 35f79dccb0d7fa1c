package dev.memgen.model.checkpoint;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.memgen.model.ModelConfig;
import dev.memgen.model.text.ByteLevelVocabulary;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;

/**
 * Writes a random checkpoint in Hugging Face layout (config.json, safetensors, tokenizer.json): the model every
 * test and demo can make for itself, since no pre-trained weights can be downloaded here.
 */
public final class TinyCheckpoint {
  private TinyCheckpoint() {}

  /** The shapes of a tiny test model. */
  public static ModelConfig tiny(String arch) {
    boolean qwen = !arch.equals("llama");
    return new ModelConfig(qwen ? ModelConfig.QWEN2 : ModelConfig.LLAMA, 64, 128, 2, 4, 2, 16, 320, 1e-6, 10000.0,
        null, 4096, qwen, qwen, false, false, List.of(ByteLevelVocabulary.IM_END_ID));
  }

  /** The shapes of Qwen2.5-0.5B (random weights): the size the performance targets are stated for. */
  public static ModelConfig qwen25HalfB() {
    return new ModelConfig(ModelConfig.QWEN2, 896, 4864, 24, 14, 2, 64, 151936, 1e-6, 1000000.0,
        null, 32768, true, true, false, false, List.of(ByteLevelVocabulary.IM_END_ID));
  }

  /** Writes {@code config} with random weights to {@code out}, split into {@code shards} files. */
  public static void write(Path out, ModelConfig c, DType dtype, int shards, long seed) throws IOException {
    Files.createDirectories(out);
    SplittableRandom random = new SplittableRandom(seed);
    List<SafeTensorsWriter.Tensor> tensors = new ArrayList<>();
    long h = c.hiddenSize();
    long q = (long) c.numHeads() * c.headDim();
    long kv = (long) c.numKvHeads() * c.headDim();
    long inter = c.intermediateSize();
    // Embedding rows of norm ~1: with tied weights, larger rows make a random model repeat its last token forever.
    tensors.add(gaussian(random, "model.embed_tokens.weight", 1.0 / Math.sqrt(h), c.vocabSize(), h));
    for (int l = 0; l < c.numLayers(); l++) {
      String p = "model.layers." + l + ".";
      tensors.add(norm(random, p + "input_layernorm.weight", h));
      tensors.add(linear(random, p + "self_attn.q_proj.weight", q, h));
      tensors.add(linear(random, p + "self_attn.k_proj.weight", kv, h));
      tensors.add(linear(random, p + "self_attn.v_proj.weight", kv, h));
      if (c.qkvBias()) {
        tensors.add(gaussian(random, p + "self_attn.q_proj.bias", 0.1, q));
        tensors.add(gaussian(random, p + "self_attn.k_proj.bias", 0.1, kv));
        tensors.add(gaussian(random, p + "self_attn.v_proj.bias", 0.1, kv));
      }
      tensors.add(linear(random, p + "self_attn.o_proj.weight", h, q));
      tensors.add(norm(random, p + "post_attention_layernorm.weight", h));
      tensors.add(linear(random, p + "mlp.gate_proj.weight", inter, h));
      tensors.add(linear(random, p + "mlp.up_proj.weight", inter, h));
      tensors.add(linear(random, p + "mlp.down_proj.weight", h, inter));
    }
    tensors.add(norm(random, "model.norm.weight", h));
    if (!c.tieWordEmbeddings()) {
      tensors.add(linear(random, "lm_head.weight", c.vocabSize(), h));
    }
    writeShards(out, tensors, dtype, shards);
    ObjectMapper json = new ObjectMapper();
    Files.writeString(out.resolve("config.json"), json.writerWithDefaultPrettyPrinter()
        .writeValueAsString(c.toJson(dtype.torchName())));
    Files.writeString(out.resolve("tokenizer.json"), ByteLevelVocabulary.tokenizerJson(c.vocabSize()));
  }

  /** One model.safetensors, or N shards plus model.safetensors.index.json, as Hugging Face names them. */
  public static void writeShards(Path out, List<SafeTensorsWriter.Tensor> tensors, DType dtype, int shards) throws IOException {
    if (shards < 1 || shards > tensors.size()) {
      throw new IllegalArgumentException("shards must be in [1, " + tensors.size() + "], got " + shards);
    }
    if (shards == 1) {
      SafeTensorsWriter.write(out.resolve("model.safetensors"), tensors, dtype);
      return;
    }
    ObjectMapper json = new ObjectMapper();
    ObjectNode index = json.createObjectNode();
    ObjectNode weightMap = json.createObjectNode();
    long total = 0;
    for (int s = 0; s < shards; s++) {
      List<SafeTensorsWriter.Tensor> part = tensors.subList(s * tensors.size() / shards, (s + 1) * tensors.size() / shards);
      String name = String.format("model-%05d-of-%05d.safetensors", s + 1, shards);
      total += SafeTensorsWriter.write(out.resolve(name), part, dtype);
      part.forEach(t -> weightMap.put(t.name(), name));
    }
    index.putObject("metadata").put("total_size", total);
    index.set("weight_map", weightMap);
    Files.writeString(out.resolve("model.safetensors.index.json"), json.writerWithDefaultPrettyPrinter().writeValueAsString(index));
  }

  private static SafeTensorsWriter.Tensor gaussian(SplittableRandom r, String name, double std, long... shape) {
    return new SafeTensorsWriter.Tensor(name, shape, () -> (float) (r.nextGaussian() * std));
  }

  /** nn.Linear-like scale 1/sqrt(fan_in): activations keep their size through the layers. */
  private static SafeTensorsWriter.Tensor linear(SplittableRandom r, String name, long out, long in) {
    return gaussian(r, name, 1.0 / Math.sqrt(in), out, in);
  }

  private static SafeTensorsWriter.Tensor norm(SplittableRandom r, String name, long size) {
    return new SafeTensorsWriter.Tensor(name, new long[] {size}, () -> (float) (1 + 0.1 * r.nextGaussian()));
  }
}
