package dev.memgen.model.generate;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.Random;
import org.junit.jupiter.api.Test;

/** Sampling follows the distribution it claims, with the same seed giving the same draws. */
class SamplerTest {
  static final float[] LOGITS = {2.0f, 1.0f, 0.5f, -1.0f, 3.0f, 0.0f};

  static double[] softmax(float[] logits, double temperature) {
    double[] p = new double[logits.length];
    double sum = 0;
    for (int i = 0; i < p.length; i++) {
      p[i] = Math.exp(logits[i] / temperature);
      sum += p[i];
    }
    for (int i = 0; i < p.length; i++) {
      p[i] /= sum;
    }
    return p;
  }

  static int[] histogram(SamplingParams params, int draws) {
    Sampler s = new Sampler(params);
    int[] counts = new int[LOGITS.length];
    for (int i = 0; i < draws; i++) {
      counts[s.sample(LOGITS, 0, LOGITS.length)]++;
    }
    return counts;
  }

  @Test
  void greedyTakesTheArgmax() {
    assertEquals(4, new Sampler(SamplingParams.GREEDY).sample(LOGITS, 0, LOGITS.length));
    float[] padded = new float[10];
    System.arraycopy(LOGITS, 0, padded, 4, LOGITS.length);
    assertEquals(4, new Sampler(SamplingParams.GREEDY).sample(padded, 4, LOGITS.length), "honours the offset");
  }

  @Test
  void temperatureSamplingMatchesSoftmax() {
    int draws = 200_000;
    int[] counts = histogram(new SamplingParams(0.7, 0, 1, 1), draws);
    double[] p = softmax(LOGITS, 0.7);
    for (int i = 0; i < p.length; i++) {
      double sd = Math.sqrt(p[i] * (1 - p[i]) / draws);
      assertEquals(p[i], counts[i] / (double) draws, 5 * sd + 1e-4, "token " + i);
    }
  }

  @Test
  void topKKeepsOnlyTheKMostLikelyRenormalised() {
    int draws = 100_000;
    int[] counts = histogram(new SamplingParams(1, 2, 1, 2), draws);
    double z = Math.exp(3) + Math.exp(2);
    assertEquals(Math.exp(3) / z, counts[4] / (double) draws, 0.01);
    assertEquals(Math.exp(2) / z, counts[0] / (double) draws, 0.01);
    assertEquals(draws, counts[4] + counts[0]);
  }

  @Test
  void topPKeepsTheSmallestNucleus() {
    double[] p = softmax(LOGITS, 1);
    // Sorted: 4 (0.58), 0 (0.21), 1 (0.08)... ; top_p 0.7 needs tokens 4 and 0 only.
    assertTrue(p[4] < 0.7 && p[4] + p[0] >= 0.7);
    int[] counts = histogram(new SamplingParams(1, 0, 0.7, 3), 50_000);
    assertEquals(50_000, counts[4] + counts[0]);
    assertTrue(counts[0] > 0);
    int[] justTop = histogram(new SamplingParams(1, 0, 0.5, 3), 1000);
    assertEquals(1000, justTop[4], "a nucleus smaller than the top token is the top token");
  }

  @Test
  void topPIsExactOnALargeVocabulary() {
    float[] logits = new float[150_000];
    Random r = new Random(4);
    for (int i = 0; i < logits.length; i++) {
      logits[i] = (float) r.nextGaussian() * 3;
    }
    // The nucleus by brute force: sort every probability.
    double[] p = new double[logits.length];
    double max = Double.NEGATIVE_INFINITY;
    for (float l : logits) {
      max = Math.max(max, l);
    }
    double sum = 0;
    for (int i = 0; i < p.length; i++) {
      p[i] = Math.exp(logits[i] - max);
      sum += p[i];
    }
    Integer[] order = new Integer[p.length];
    for (int i = 0; i < p.length; i++) {
      order[i] = i;
      p[i] /= sum;
    }
    java.util.Arrays.sort(order, (a, b) -> Double.compare(p[b], p[a]));
    double cum = 0;
    java.util.Set<Integer> nucleus = new java.util.HashSet<>();
    for (int i = 0; cum < 0.9; i++) {
      cum += p[order[i]];
      nucleus.add(order[i]);
    }
    Sampler s = new Sampler(new SamplingParams(1, 0, 0.9, 5));
    for (int i = 0; i < 300; i++) {
      assertTrue(nucleus.contains(s.sample(logits, 0, logits.length)));
    }
  }

  @Test
  void sameSeedSameDraws() {
    int[] a = histogram(new SamplingParams(1.3, 0, 0.9, 42), 500);
    int[] b = histogram(new SamplingParams(1.3, 0, 0.9, 42), 500);
    int[] c = histogram(new SamplingParams(1.3, 0, 0.9, 43), 500);
    assertTrue(java.util.Arrays.equals(a, b));
    assertTrue(!java.util.Arrays.equals(a, c));
  }

  @Test
  void badParametersAreRejectedWithTheirName() {
    assertTrue(assertThrows(IllegalArgumentException.class, () -> new SamplingParams(-1, 0, 1, 0)).getMessage().contains("temperature"));
    assertTrue(assertThrows(IllegalArgumentException.class, () -> new SamplingParams(1, -2, 1, 0)).getMessage().contains("top_k"));
    assertTrue(assertThrows(IllegalArgumentException.class, () -> new SamplingParams(1, 0, 0, 0)).getMessage().contains("top_p"));
    assertTrue(assertThrows(IllegalArgumentException.class, () -> new SamplingParams(Double.NaN, 0, 1, 0)).getMessage().contains("temperature"));
  }
}
