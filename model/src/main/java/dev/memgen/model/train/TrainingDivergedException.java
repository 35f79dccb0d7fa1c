package dev.memgen.model.train;

/** Training produced a non-finite loss or gradient; nothing from the diverged step was kept. */
public final class TrainingDivergedException extends RuntimeException {
  public TrainingDivergedException(String message) {
    super(message);
  }
}
