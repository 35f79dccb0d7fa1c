package dev.memgen.model.train;

import dev.memgen.model.Decoder;
import dev.memgen.model.LoraAdapter;
import dev.memgen.model.checkpoint.Checkpoint;
import dev.memgen.model.checkpoint.DType;
import dev.memgen.model.checkpoint.TinyCheckpoint;
import dev.memgen.model.memory.LoraConfig;
import dev.memgen.model.memory.Memory;
import dev.memgen.model.memory.MemoryManifest;
import dev.memgen.model.text.DelimiterTable;
import dev.memgen.model.text.TextTokenizer;
import java.nio.file.Path;
import java.util.List;

/** A tiny random Qwen2 base for the weaver-training tests, loaded once per test class, and fresh memories for it. */
final class TinyTrainingBase implements AutoCloseable {
  final Path dir;
  final Decoder base;
  final TextTokenizer tokenizer;
  final String fingerprint;
  final DelimiterTable delimiters;

  /** Writes the base (weights seeded {@code seed}) under {@code tmp} and loads it. */
  TinyTrainingBase(Path tmp, long seed) throws Exception {
    dir = tmp.resolve("base");
    TinyCheckpoint.write(dir, TinyCheckpoint.tiny("qwen2"), DType.F32, 1, seed);
    fingerprint = Checkpoint.open(dir).fingerprint();
    base = Decoder.load(dir);
    tokenizer = TextTokenizer.load(dir);
    delimiters = DelimiterTable.build(tokenizer, base.config().vocabSize(), DelimiterTable.DEFAULT);
  }

  /** A fresh memory at {@code at}: K = {@code k} of both kinds, the weaver's LoRA {@code lora}, a small trigger. */
  Path freshMemory(Path at, int k, LoraConfig lora) throws Exception {
    var c = base.config();
    Memory.init(at, c, new MemoryManifest(1, fingerprint, c.hiddenSize(), c.numLayers(), k, k, "embeddings", lora,
        new LoraConfig(4, 8, List.of(LoraAdapter.Target.Q_PROJ), 0.0), DelimiterTable.DEFAULT, 2), 7);
    return at;
  }

  @Override
  public void close() {
    tokenizer.close();
    base.close();
  }
}
