package dev.memgen.model.train;

import ai.djl.engine.Engine;
import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.training.GradientCollector;
import dev.memgen.model.Decoder;
import dev.memgen.model.memory.Memory;
import dev.memgen.model.memory.MemoryManifest;
import dev.memgen.model.text.DelimiterTable;
import java.io.IOException;
import java.nio.file.Path;
import java.util.List;

/**
 * Weaver SFT (MemGen's first stage): the reasoner stays frozen and the trigger inactive; the weaver's LoRA,
 * projections and queries learn to make latents that raise the likelihood of the reference answers (see
 * {@link TeacherForcing} for where latents go and which tokens the loss covers).
 *
 * <p>AdamW with a cosine schedule after a linear warm-up, gradient accumulation, and a checkpoint every N updates
 * in {@code out/checkpoint} (the memory, the optimizer's moments and the step, replaced atomically). A run given the
 * same {@code out} resumes from it and ends where an uninterrupted run ends: batches are addressed by index and
 * dropout is seeded per micro-batch. The trained memory goes to {@code out} with its version one above the input's.
 */
public final class WeaverSft {
  public static final String CHECKPOINT = MemoryCheckpoint.DIR;

  public record Settings(int steps, int batchSize, int gradAccum, double lr, int warmupSteps, double minLrRatio,
      AdamW.Settings optimizer, int checkpointEvery, long seed) {
    public Settings {
      if (steps < 1 || batchSize < 1 || gradAccum < 1 || checkpointEvery < 0) {
        throw new IllegalArgumentException("need steps, batch size and gradient accumulation >= 1 and checkpoint "
            + "interval >= 0; got " + steps + ", " + batchSize + ", " + gradAccum + ", " + checkpointEvery);
      }
    }
  }

  /** Told after every update: its loss (mean over answer tokens), learning rate, gradient norm and throughput. */
  public interface Listener {
    void step(int step, int steps, double loss, double lr, double gradNorm, double tokensPerSecond);

    default void resumed(int step) {}

    default void checkpointed(int step) {}
  }

  /** {@code skippedSteps}: updates skipped because their gradients were not finite (see {@link AdamW#step}). */
  public record Result(int steps, int resumedFrom, double lastLoss, long tokens, double seconds, int skippedSteps,
      MemoryManifest manifest) {}

  private WeaverSft() {}

  /**
   * Trains the memory at {@code memoryIn} (made for {@code base}, fingerprint {@code fingerprint}) on {@code data}
   * and writes the result to {@code out}, resuming from {@code out/checkpoint} when there is one.
   */
  public static Result train(Decoder base, String fingerprint, Path memoryIn, Path out, List<TokenizedExample> data,
      DelimiterTable delimiters, Settings s, Listener listener) throws IOException {
    try (MemoryTrainingRun run = new MemoryTrainingRun(base, fingerprint, memoryIn, out, "weaver", s.optimizer(), listener::resumed)) {
      MemoryManifest manifest = run.memory.manifest();
      Memory memory = run.memory;
      NDManager manager = run.manager;
      TeacherForcing forcing = new TeacherForcing(base, delimiters, manifest.maxInferenceAug());
      TeacherForcing.MemorySource weaver = TeacherForcing.weaver(memory.weaver().withLoraDropout(manifest.weaverLora().dropout()));
      CosineSchedule schedule = new CosineSchedule(s.lr(), s.warmupSteps(), s.steps(), s.minLrRatio());
      Batches<TokenizedExample> batches = new Batches<>(data, s.batchSize(), s.seed());
      Engine engine = base.manager().getEngine();
      double loss = Double.NaN;
      long tokens = 0;
      long t0 = System.nanoTime();
      for (int step = run.start; step < s.steps(); step++) {
        long stepStart = System.nanoTime();
        double lossSum = 0;
        int stepTokens = 0;
        for (int micro = 0; micro < s.gradAccum(); micro++) {
          List<TokenizedExample> batch = batches.get((long) step * s.gradAccum() + micro);
          engine.setRandomSeed((int) (s.seed() * 7919 + (long) step * s.gradAccum() + micro)); // dropout masks
          try (NDManager m = manager.newSubManager(); GradientCollector collector = engine.newGradientCollector()) {
            TeacherForcing.Loss l = forcing.loss(m, batch, weaver);
            NDArray mean = l.sum().div(l.tokens() * (double) s.gradAccum());
            collector.backward(mean);
            lossSum += l.sum().getFloat();
            stepTokens += l.tokens();
            for (TokenizedExample e : batch) {
              tokens += e.length();
            }
          }
        }
        double lr = schedule.at(step);
        double norm = run.optimizer.step(lr);
        loss = lossSum / stepTokens;
        double seconds = (System.nanoTime() - stepStart) / 1e9;
        listener.step(step + 1, s.steps(), loss, lr, norm, stepTokens / seconds);
        if (run.maybeCheckpoint(step + 1, s.checkpointEvery(), s.steps())) {
          listener.checkpointed(step + 1);
        }
      }
      return new Result(s.steps(), run.start, loss, tokens, (System.nanoTime() - t0) / 1e9, run.optimizer.skippedSteps(),
          run.finish());
    }
  }
}
