package dev.memgen.rpc;

import java.time.Duration;

/**
 * How long a memory call may take: a fixed part, plus an allowance per row the service must run through the model
 * for it (the tokens appended since the last call, all of them after a reconnect). A fixed deadline alone would
 * either be long enough for a 2,000-token prompt on a CPU — and then slow to notice a stalled service — or make
 * every long prompt time out, reconnect, replay, and time out again.
 */
public record CallDeadline(Duration fixed, Duration perRow) {
  public CallDeadline {
    if (fixed.isNegative() || fixed.isZero() || perRow.isNegative()) {
      throw new IllegalArgumentException("a deadline needs fixed > 0 and per-row >= 0, got " + fixed + ", " + perRow);
    }
  }

  /** A deadline with no per-row allowance. */
  public static CallDeadline of(Duration fixed) {
    return new CallDeadline(fixed, Duration.ZERO);
  }

  /** The deadline for a call whose service runs {@code rows} rows through the model. */
  public Duration forRows(int rows) {
    return fixed.plus(perRow.multipliedBy(Math.max(0, rows)));
  }
}
