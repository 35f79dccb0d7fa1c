package dev.memgen.rpc;

import dev.memgen.model.ModelConfig;
import dev.memgen.model.checkpoint.Checkpoint;
import dev.memgen.model.memory.LoraConfig;
import dev.memgen.model.memory.Memory;
import dev.memgen.model.memory.MemoryManifest;
import java.io.IOException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

/** A fresh memory for a tiny test checkpoint, written without native code (safe before any app starts). */
public final class TinyMemory {
  private TinyMemory() {}

  public static final int PROMPT_K = 3;
  public static final int INFERENCE_K = 2;
  public static final int MAX_INFERENCE_AUG = 4;
  public static final long VERSION = 2;

  /** A fresh memory for the tiny checkpoint in {@code model} (K and cap as above, the reference LoRA). */
  public static void write(Path model, Path out, List<String> delimiters) throws IOException {
    write(model, out, delimiters, VERSION, 5);
  }

  /** The same with another manifest version and weights drawn from {@code seed}: versions of one adapter. */
  public static void write(Path model, Path out, List<String> delimiters, long version, long seed) throws IOException {
    ModelConfig c = ModelConfig.load(model);
    Memory.init(out, c, new MemoryManifest(version, Checkpoint.open(model).fingerprint(), c.hiddenSize(), c.numLayers(),
        PROMPT_K, INFERENCE_K, "embeddings", LoraConfig.REFERENCE, LoraConfig.REFERENCE, delimiters, MAX_INFERENCE_AUG), seed);
  }

  /** Delimiters a random model's output meets at once: every ASCII character and U+FFFD. */
  public static List<String> everyCharacter() {
    List<String> all = new ArrayList<>(List.of("\uFFFD"));
    for (char c = 1; c < 128; c++) {
      all.add(String.valueOf(c));
    }
    return all;
  }
}
