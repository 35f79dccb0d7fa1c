package dev.memgen.cli;

import dev.memgen.model.Decoder;
import dev.memgen.model.checkpoint.Checkpoint;
import dev.memgen.model.checkpoint.DType;
import dev.memgen.model.checkpoint.Directories;
import dev.memgen.model.checkpoint.TinyCheckpoint;
import dev.memgen.model.text.TextTokenizer;
import dev.memgen.model.train.Pretrain;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;

/**
 * The project's base model, trained once ({@code memgen pretrain}'s defaults, about 8 minutes on two cores) and cached
 * under {@code .memgen/base}, so that the demo, its quick mode and the experiment's quick mode reuse one real base
 * instead of each training a short, meaningless one.
 */
final class CachedBase {
  private CachedBase() {}

  /** The cached base at {@code at}, trained first if it is not there; a cache that does not load is named with the fix. */
  static Path trained(Path at) throws IOException {
    if (!Files.exists(at)) {
      Path partial = at.resolveSibling(at.getFileName() + ".partial");
      Directories.deleteRecursively(partial);
      System.err.println("memgen: training the base model once (about 8 minutes on two cores); it is cached in " + at);
      // Every core for training, then one again: the demo decodes next, and its decode splits products itself.
      try (Training.Cores cores = Training.allCores();
          Training.Bar bar = new Training.Bar("pretrain base", Pretrain.defaults().steps())) {
        Pretrain.train(partial, Pretrain.defaults(), bar);
      }
      Files.move(partial, at, StandardCopyOption.ATOMIC_MOVE); // a crash mid-training leaves only the .partial
    }
    return check(at).toAbsolutePath();
  }

  /** A tiny random Qwen2 model at {@code at} (made once): plumbing runs, whose accuracies mean nothing. */
  static Path tiny(Path at) throws IOException {
    if (!Files.exists(at.resolve("config.json"))) {
      System.err.println("memgen: making a tiny random Qwen2 model in " + at);
      TinyCheckpoint.write(at, TinyCheckpoint.tiny("qwen2"), DType.F32, 1, 0);
    }
    return check(at).toAbsolutePath();
  }

  /** Loads checkpoint, tokenizer and weights once, before any service starts on them. */
  private static Path check(Path at) {
    try {
      Checkpoint.open(at);
      TextTokenizer.load(at).close();
      Decoder.load(at).close();
      return at;
    } catch (RuntimeException e) { // a CheckpointException names the file and tensor
      String why = String.valueOf(e.getMessage()).replaceAll("\\s*\\R\\s*", " "); // one line
      throw new IllegalArgumentException("the cached base " + at + " is unusable (" + why + "): delete " + at
          + " and run again to retrain it");
    }
  }
}
