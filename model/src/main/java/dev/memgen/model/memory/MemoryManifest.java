package dev.memgen.model.memory;

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
 * {@code manifest.json} of a memory checkpoint: what the tensors in {@code memory.safetensors} mean, and which base
 * model they were made for.
 *
 * @param weaverInput which reasoner rows the weaver reads: "embeddings" (the reference code) or "hidden" (the
 *     reasoner's last-layer hidden states, as the paper's text describes)
 */
public record MemoryManifest(
    long version,
    String baseFingerprint,
    int hiddenSize,
    int numLayers,
    int promptK,
    int inferenceK,
    String weaverInput,
    LoraConfig weaverLora,
    LoraConfig triggerLora,
    List<String> delimiters,
    int maxInferenceAug) {

  public static final String FORMAT = "memgen-memory";
  public static final int FORMAT_VERSION = 1;
  public static final String FILE = "manifest.json";
  private static final ObjectMapper JSON = new ObjectMapper();

  public MemoryManifest {
    if (promptK < 1 || inferenceK < 1) {
      throw new IllegalArgumentException("prompt_k and inference_k must be >= 1, got " + promptK + ", " + inferenceK);
    }
    if (!weaverInput.equals("embeddings") && !weaverInput.equals("hidden")) {
      throw new IllegalArgumentException("weaver input must be 'embeddings' or 'hidden', got '" + weaverInput + "'");
    }
    if (maxInferenceAug < 0) {
      throw new IllegalArgumentException("max_inference_aug must be >= 0, got " + maxInferenceAug);
    }
    delimiters = List.copyOf(delimiters);
  }

  /** This manifest with another version number (a trained memory is its input's version plus one). */
  public MemoryManifest withVersion(long newVersion) {
    return new MemoryManifest(newVersion, baseFingerprint, hiddenSize, numLayers, promptK, inferenceK, weaverInput,
        weaverLora, triggerLora, delimiters, maxInferenceAug);
  }

  public static MemoryManifest read(Path dir) {
    Path file = dir.resolve(FILE);
    JsonNode m;
    try {
      m = JSON.readTree(Files.readAllBytes(file));
    } catch (NoSuchFileException e) {
      throw new CheckpointException(file, null, "missing file (a memory directory needs " + FILE + ")");
    } catch (IOException e) {
      throw new CheckpointException(file, null, "unreadable JSON: " + e.getMessage(), e);
    }
    if (!FORMAT.equals(m.path("format").asText()) || m.path("format_version").asInt() != FORMAT_VERSION) {
      throw new CheckpointException(file, null, "not a " + FORMAT + " v" + FORMAT_VERSION + " manifest (format '"
          + m.path("format").asText() + "', version " + m.path("format_version").asInt() + ")");
    }
    try {
      JsonNode w = m.path("weaver");
      List<String> delimiters = new ArrayList<>();
      m.path("delimiters").forEach(d -> delimiters.add(d.asText()));
      return new MemoryManifest(m.path("version").asLong(1), m.path("base_fingerprint").asText(""),
          m.path("hidden_size").asInt(), m.path("num_layers").asInt(), w.path("prompt_k").asInt(),
          w.path("inference_k").asInt(), w.path("input").asText("embeddings"),
          LoraConfig.parse(w.path("lora"), "weaver.lora"), LoraConfig.parse(m.path("trigger").path("lora"), "trigger.lora"),
          delimiters, m.path("max_inference_aug").asInt(5));
    } catch (IllegalArgumentException e) {
      throw new CheckpointException(file, null, e.getMessage(), e);
    }
  }

  public void write(Path dir) throws IOException {
    ObjectNode m = JSON.createObjectNode();
    m.put("format", FORMAT);
    m.put("format_version", FORMAT_VERSION);
    m.put("version", version);
    m.put("base_fingerprint", baseFingerprint);
    m.put("hidden_size", hiddenSize);
    m.put("num_layers", numLayers);
    ObjectNode w = m.putObject("weaver");
    w.put("prompt_k", promptK);
    w.put("inference_k", inferenceK);
    w.put("input", weaverInput);
    w.set("lora", weaverLora.toJson());
    m.putObject("trigger").set("lora", triggerLora.toJson());
    var d = m.putArray("delimiters");
    delimiters.forEach(d::add);
    m.put("max_inference_aug", maxInferenceAug);
    Files.writeString(dir.resolve(FILE), JSON.writerWithDefaultPrettyPrinter().writeValueAsString(m));
  }
}
