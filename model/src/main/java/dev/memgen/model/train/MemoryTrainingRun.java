package dev.memgen.model.train;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import dev.memgen.model.Decoder;
import dev.memgen.model.memory.Memory;
import dev.memgen.model.memory.MemoryManifest;
import java.io.IOException;
import java.nio.file.Path;
import java.util.Map;
import java.util.function.IntConsumer;

/**
 * What every memory trainer does around its loop: load the memory (from {@code out}'s checkpoint when a previous run
 * was interrupted), make one part's tensors trainable ("weaver" or "trigger"; the base is never touched), set up
 * AdamW (restored on resume), checkpoint every N updates, and at the end write the trained memory to {@code out}
 * with its version one above the input's.
 */
final class MemoryTrainingRun implements AutoCloseable {
  final Memory memory;
  final MemoryManifest trained; // the output's manifest: the input's, one version up
  final AdamW optimizer;
  final NDManager manager;
  /** Updates already done (a resumed run starts there). */
  final int start;
  private final MemoryCheckpoint checkpoint;
  private final Path out;

  MemoryTrainingRun(Decoder base, String fingerprint, Path memoryIn, Path out, String part, AdamW.Settings optimizer,
      IntConsumer resumed) throws IOException {
    this.out = out;
    this.checkpoint = new MemoryCheckpoint(out);
    boolean resume = checkpoint.exists();
    this.memory = Memory.load(checkpoint.memoryOr(memoryIn), base, fingerprint);
    this.manager = base.manager().newSubManager();
    try {
      MemoryManifest manifest = memory.manifest();
      if (part.equals("weaver") && !manifest.weaverInput().equals("embeddings")) {
        throw new IllegalArgumentException(memoryIn + ": training supports weavers that read input embeddings (the "
            + "reference code's setting); this memory's weaver reads hidden states");
      }
      this.trained = resume ? manifest : manifest.withVersion(manifest.version() + 1);
      Map<String, NDArray> params = memory.tensors(part);
      params.values().forEach(p -> p.setRequiresGradient(true));
      this.optimizer = new AdamW(params, optimizer, manager);
      this.start = resume ? checkpoint.restore(this.optimizer, manager) : 0;
      if (resume) {
        resumed.accept(start);
      }
    } catch (IOException | RuntimeException e) {
      close();
      throw e;
    }
  }

  /** Checkpoints after update {@code step} (1-based) when {@code every} says so and it is not the last. */
  boolean maybeCheckpoint(int step, int every, int steps) throws IOException {
    if (every > 0 && step % every == 0 && step < steps) {
      checkpoint.save(memory, trained, optimizer, step);
      return true;
    }
    return false;
  }

  /** Writes the trained memory to {@code out} and drops the checkpoint. */
  MemoryManifest finish() throws IOException {
    memory.save(out, trained);
    checkpoint.delete();
    return trained;
  }

  @Override
  public void close() {
    manager.close();
    memory.close();
  }
}
