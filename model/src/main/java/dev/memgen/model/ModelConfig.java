package dev.memgen.model;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.memgen.model.checkpoint.CheckpointException;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

/**
 * The decoder's hyper-parameters, read from a Hugging Face {@code config.json}. Qwen2 and Llama share one
 * shape (RMSNorm, RoPE, grouped-query attention, SwiGLU); they differ in biases: Qwen2 always has q/k/v biases,
 * Llama has q/k/v/o biases with {@code attention_bias} and MLP biases with {@code mlp_bias}.
 */
public record ModelConfig(
    String architecture,
    int hiddenSize,
    int intermediateSize,
    int numLayers,
    int numHeads,
    int numKvHeads,
    int headDim,
    int vocabSize,
    double rmsNormEps,
    double ropeTheta,
    RopeScaling ropeScaling,
    int maxPositions,
    boolean tieWordEmbeddings,
    boolean qkvBias,
    boolean outBias,
    boolean mlpBias,
    List<Integer> eosTokenIds) {

  public static final String QWEN2 = "Qwen2ForCausalLM";
  public static final String LLAMA = "LlamaForCausalLM";
  private static final ObjectMapper JSON = new ObjectMapper();

  /** Llama-3 style frequency scaling ({@code rope_type: "llama3"}); null for plain RoPE. */
  public record RopeScaling(double factor, double lowFreqFactor, double highFreqFactor, int originalMaxPositions) {}

  public boolean isQwen2() {
    return architecture.equals(QWEN2);
  }

  public int qkvSize() {
    return (numHeads + 2 * numKvHeads) * headDim;
  }

  public static ModelConfig load(Path dir) {
    Path file = dir.resolve("config.json");
    JsonNode c;
    try {
      c = JSON.readTree(Files.readAllBytes(file));
    } catch (NoSuchFileException e) {
      throw new CheckpointException(file, null, "missing file (a Hugging Face checkpoint directory needs config.json)");
    } catch (IOException e) {
      throw new CheckpointException(file, null, "unreadable JSON: " + e.getMessage(), e);
    }
    return parse(file, c);
  }

  static ModelConfig parse(Path file, JsonNode c) {
    String arch = c.path("architectures").path(0).asText("");
    String type = c.path("model_type").asText("");
    if (arch.isEmpty()) {
      arch = switch (type) {
        case "qwen2" -> QWEN2;
        case "llama" -> LLAMA;
        default -> "";
      };
    }
    if (!arch.equals(QWEN2) && !arch.equals(LLAMA)) {
      throw new CheckpointException(file, null, "unknown architecture '" + (arch.isEmpty() ? type : arch)
          + "' (supported: " + QWEN2 + ", " + LLAMA + ")");
    }
    String act = c.path("hidden_act").asText("silu");
    if (!act.equals("silu")) {
      throw new CheckpointException(file, null, "unsupported hidden_act '" + act + "' (only silu)");
    }
    int hidden = required(file, c, "hidden_size");
    int heads = required(file, c, "num_attention_heads");
    int kvHeads = c.path("num_key_value_heads").asInt(heads);
    int headDim = c.hasNonNull("head_dim") ? c.get("head_dim").asInt() : (heads > 0 ? hidden / heads : 0);
    if (heads <= 0 || kvHeads <= 0 || heads % kvHeads != 0 || headDim <= 0 || headDim % 2 != 0) {
      throw new CheckpointException(file, null, "inconsistent attention shape: num_attention_heads=" + heads
          + ", num_key_value_heads=" + kvHeads + ", head_dim=" + headDim
          + " (heads must be a multiple of kv heads, head_dim even)");
    }
    List<Integer> eos = new ArrayList<>();
    JsonNode e = c.path("eos_token_id");
    if (e.isArray()) {
      e.forEach(x -> eos.add(x.asInt()));
    } else if (e.isInt()) {
      eos.add(e.asInt());
    }
    boolean qwen = arch.equals(QWEN2);
    return new ModelConfig(
        arch, hidden, required(file, c, "intermediate_size"), required(file, c, "num_hidden_layers"),
        heads, kvHeads, headDim, required(file, c, "vocab_size"),
        c.path("rms_norm_eps").asDouble(1e-6), c.path("rope_theta").asDouble(10000.0),
        ropeScaling(file, c.path("rope_scaling")),
        c.path("max_position_embeddings").asInt(32768),
        c.path("tie_word_embeddings").asBoolean(false),
        qwen || c.path("attention_bias").asBoolean(false),
        !qwen && c.path("attention_bias").asBoolean(false),
        !qwen && c.path("mlp_bias").asBoolean(false),
        List.copyOf(eos));
  }

  private static RopeScaling ropeScaling(Path file, JsonNode s) {
    if (s.isMissingNode() || s.isNull()) {
      return null;
    }
    String type = s.path("rope_type").asText(s.path("type").asText(""));
    if (type.equals("default")) {
      return null;
    }
    if (!type.equals("llama3")) {
      throw new CheckpointException(file, null, "unsupported rope_scaling type '" + type + "' (supported: llama3)");
    }
    return new RopeScaling(s.path("factor").asDouble(8), s.path("low_freq_factor").asDouble(1),
        s.path("high_freq_factor").asDouble(4), s.path("original_max_position_embeddings").asInt(8192));
  }

  private static int required(Path file, JsonNode c, String key) {
    JsonNode n = c.get(key);
    if (n == null || !n.canConvertToInt() || n.asInt() <= 0) {
      throw new CheckpointException(file, null, "missing or invalid '" + key + "'");
    }
    return n.asInt();
  }

  /** The config.json a Hugging Face loader would accept for this model. */
  public ObjectNode toJson(String torchDtype) {
    ObjectNode c = JSON.createObjectNode();
    c.putArray("architectures").add(architecture);
    c.put("model_type", isQwen2() ? "qwen2" : "llama");
    c.put("hidden_size", hiddenSize);
    c.put("intermediate_size", intermediateSize);
    c.put("num_hidden_layers", numLayers);
    c.put("num_attention_heads", numHeads);
    c.put("num_key_value_heads", numKvHeads);
    if (headDim * numHeads != hiddenSize) {
      c.put("head_dim", headDim);
    }
    c.put("vocab_size", vocabSize);
    c.put("rms_norm_eps", rmsNormEps);
    c.put("rope_theta", ropeTheta);
    c.put("max_position_embeddings", maxPositions);
    c.put("tie_word_embeddings", tieWordEmbeddings);
    c.put("hidden_act", "silu");
    if (!isQwen2()) {
      c.put("attention_bias", qkvBias);
      c.put("mlp_bias", mlpBias);
    }
    if (!eosTokenIds.isEmpty()) {
      c.put("eos_token_id", eosTokenIds.get(0));
    }
    c.put("torch_dtype", torchDtype);
    return c;
  }
}
