package dev.memgen.cli;

import java.util.Arrays;
import java.util.List;

final class Stats {
  private Stats() {}

  static double median(double[] values) {
    double[] s = values.clone();
    Arrays.sort(s);
    int n = s.length;
    return n % 2 == 1 ? s[n / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
  }

  /** The {@code q}-quantile (nearest rank) of {@code values}; NaN when empty. */
  static double quantile(List<Double> values, double q) {
    if (values.isEmpty()) {
      return Double.NaN;
    }
    double[] s = values.stream().mapToDouble(Double::doubleValue).sorted().toArray();
    return s[Math.min(s.length - 1, Math.max(0, (int) Math.ceil(q * s.length) - 1))];
  }
}
