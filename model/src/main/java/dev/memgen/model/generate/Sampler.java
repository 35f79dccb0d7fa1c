package dev.memgen.model.generate;

import java.util.Arrays;
import java.util.Comparator;
import java.util.PriorityQueue;
import java.util.SplittableRandom;
import java.util.stream.IntStream;

/**
 * Draws tokens from logits for one sequence. Exact top-p without sorting the whole vocabulary: tokens with
 * probability below {@code (1 - topP) / vocab} together hold less than {@code 1 - topP}, so the nucleus never
 * reaches them and only the tokens above that bar are sorted (usually a few hundred of 150k).
 */
public final class Sampler {
  private final SamplingParams params;
  private final SplittableRandom random;

  public Sampler(SamplingParams params) {
    this.params = params;
    this.random = new SplittableRandom(params.seed());
  }

  public SamplingParams params() {
    return params;
  }

  /** The next token for {@code logits[offset, offset + vocab)}. */
  public int sample(float[] logits, int offset, int vocab) {
    if (params.greedy()) {
      return argmax(logits, offset, vocab);
    }
    double max = Double.NEGATIVE_INFINITY;
    for (int i = 0; i < vocab; i++) {
      max = Math.max(max, logits[offset + i]);
    }
    double[] p = new double[vocab];
    double sum = 0;
    for (int i = 0; i < vocab; i++) {
      p[i] = Math.exp((logits[offset + i] - max) / params.temperature());
      sum += p[i];
    }
    for (int i = 0; i < vocab; i++) {
      p[i] /= sum;
    }
    // Candidates, most likely first (ties to the lower id, so the draw never depends on sort stability).
    Comparator<Integer> likelier = (a, b) -> p[a] != p[b] ? Double.compare(p[b], p[a]) : Integer.compare(a, b);
    Integer[] order;
    double mass;
    if (params.topK() > 0 && params.topK() < vocab) {
      PriorityQueue<Integer> top = new PriorityQueue<>(params.topK() + 1, likelier.reversed());
      for (int i = 0; i < vocab; i++) {
        top.add(i);
        if (top.size() > params.topK()) {
          top.poll();
        }
      }
      order = top.toArray(new Integer[0]);
      mass = 0;
      for (int i : order) {
        mass += p[i];
      }
    } else {
      double floor = params.topP() < 1 ? (1 - params.topP()) / vocab : 0;
      order = IntStream.range(0, vocab).filter(i -> p[i] > 0 && p[i] >= floor).boxed().toArray(Integer[]::new);
      mass = 1;
    }
    Arrays.sort(order, likelier);
    // Top-p applies to the top-k distribution renormalised, as Hugging Face's warpers do.
    double target = params.topP() * mass;
    double cumulative = 0;
    int nucleus = 0;
    while (nucleus < order.length) {
      cumulative += p[order[nucleus++]];
      if (cumulative >= target) {
        break;
      }
    }
    double u = random.nextDouble() * cumulative;
    double acc = 0;
    for (int j = 0; j < nucleus; j++) {
      acc += p[order[j]];
      if (u < acc) {
        return order[j];
      }
    }
    return order[nucleus - 1];
  }

  static int argmax(float[] logits, int offset, int vocab) {
    int best = 0;
    for (int i = 1; i < vocab; i++) {
      if (logits[offset + i] > logits[offset + best]) {
        best = i;
      }
    }
    return best;
  }
}
