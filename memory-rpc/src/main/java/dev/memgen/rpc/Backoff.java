package dev.memgen.rpc;

import java.time.Duration;

/**
 * When to try a failed service again: not before a delay that doubles with each failure in a row (up to a cap)
 * and resets on success. Until then calls fail at once, so a dead service costs a decode nothing but a clock read.
 */
final class Backoff {
  private final long minNanos;
  private final long maxNanos;
  private long delayNanos;
  private long notBefore;

  Backoff(Duration min, Duration max) {
    this.minNanos = min.toNanos();
    this.maxNanos = max.toNanos();
  }

  /** Milliseconds until the next attempt is allowed, 0 if now. */
  synchronized long waitMillis() {
    return Math.max(0, (notBefore - System.nanoTime()) / 1_000_000);
  }

  synchronized void failed() {
    delayNanos = delayNanos == 0 ? minNanos : Math.min(2 * delayNanos, maxNanos);
    notBefore = System.nanoTime() + delayNanos;
  }

  synchronized void succeeded() {
    delayNanos = 0;
    notBefore = 0;
  }
}
