package dev.memgen.model.generate;

/**
 * How to pick the next token. Greedy when {@code temperature <= 0}; otherwise softmax(logits / temperature)
 * restricted to the {@code topK} most likely tokens (0 = all) and to the smallest set whose probability reaches
 * {@code topP} (1 = all), sampled with a generator seeded by {@code seed}, so a seed always gives the same text.
 */
public record SamplingParams(double temperature, int topK, double topP, long seed) {
  public static final SamplingParams GREEDY = new SamplingParams(0, 0, 1, 0);

  public SamplingParams {
    if (!(temperature >= 0) || Double.isInfinite(temperature)) {
      throw new IllegalArgumentException("temperature must be a finite number >= 0, got " + temperature);
    }
    if (topK < 0) {
      throw new IllegalArgumentException("top_k must be >= 0 (0 = no limit), got " + topK);
    }
    if (!(topP > 0 && topP <= 1)) {
      throw new IllegalArgumentException("top_p must be in (0, 1], got " + topP);
    }
  }

  public boolean greedy() {
    return temperature <= 0;
  }
}
