package dev.memgen.cli;

import dev.memgen.model.Engines;
import dev.memgen.model.train.WeaverSft;

/** What the training commands share: libtorch's threads and the progress bar. */
final class Training {
  private Training() {}

  /**
   * Training is compute-bound (batched matrix products, their gradients): let libtorch use every core. Decoding
   * keeps one libtorch thread and splits its matrix-vector products itself (see Engines); a training command
   * calls this first.
   */
  static void useAllCores() {
    Engines.computeThreads(Engines.THREADS);
  }

  /** libtorch's thread count, restored when closed. */
  interface Cores extends AutoCloseable {
    @Override
    void close();
  }

  /** Every core for libtorch until closed, then the count before: a training phase inside a decoding command. */
  static Cores allCores() {
    int previous = Engines.computeThreads(Engines.THREADS);
    return () -> Engines.computeThreads(previous);
  }

  /** A progress bar fed by a trainer: step, loss, learning rate and tokens/s. */
  static final class Bar implements WeaverSft.Listener, AutoCloseable {
    private final Progress progress;

    Bar(String label, int steps) {
      progress = new Progress(label, steps);
    }

    @Override
    public void step(int step, int steps, double loss, double lr, double gradNorm, double tokensPerSecond) {
      progress.step(String.format("loss %.4f lr %.2e |g| %.2f %.0f tok/s", loss, lr, gradNorm, tokensPerSecond));
    }

    @Override
    public void resumed(int step) {
      System.err.println("resuming from the checkpoint at step " + step);
      for (int i = 0; i < step; i++) {
        progress.step("");
      }
    }

    @Override
    public void checkpointed(int step) {}

    @Override
    public void close() {
      progress.close();
    }
  }
}
