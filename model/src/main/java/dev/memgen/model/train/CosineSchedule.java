package dev.memgen.model.train;

/** Linear warm-up to the peak learning rate, then cosine decay to {@code minRatio} of it at the last step. */
public record CosineSchedule(double peak, int warmupSteps, int totalSteps, double minRatio) {
  public CosineSchedule {
    if (!(peak > 0) || warmupSteps < 0 || totalSteps < 1 || minRatio < 0 || minRatio > 1) {
      throw new IllegalArgumentException("need lr > 0, warmup >= 0, steps >= 1, 0 <= min ratio <= 1; got "
          + peak + ", " + warmupSteps + ", " + totalSteps + ", " + minRatio);
    }
  }

  /** The learning rate of update {@code step} (0-based). */
  public double at(int step) {
    if (step < warmupSteps) {
      return peak * (step + 1) / warmupSteps;
    }
    double progress = totalSteps <= warmupSteps ? 1 : Math.min(1.0, (double) (step - warmupSteps) / (totalSteps - warmupSteps));
    double min = peak * minRatio;
    return min + 0.5 * (1 + Math.cos(Math.PI * progress)) * (peak - min);
  }
}
