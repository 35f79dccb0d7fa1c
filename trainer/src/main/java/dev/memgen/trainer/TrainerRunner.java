package dev.memgen.trainer;

import java.time.Duration;
import java.util.Optional;
import java.util.concurrent.Callable;
import java.util.function.BooleanSupplier;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Runs one adapter's {@link ContinualTrainer} on a thread of its own until closed, restarting it after a failure under
 * an exponential back-off (1 s to 60 s) that starts over only once a trainer has run for a minute: one that fails right
 * after starting, again and again, backs off. A restarted trainer resumes from the adapter store, so a failure (the
 * broker away, the store unwritable, another trainer's version in the way) loses nothing and trains nothing twice.
 */
public final class TrainerRunner implements AutoCloseable {
  private static final Logger LOG = LoggerFactory.getLogger(TrainerRunner.class);
  private static final Duration HEALTHY_RUN = Duration.ofMinutes(1);

  private final String adapter;
  private final Callable<ContinualTrainer> start;
  private final Thread thread;
  private volatile ContinualTrainer trainer;
  private volatile boolean stopping;

  /** Starts the thread; {@code start} builds (and so recovers) a trainer, again after each failure. */
  public TrainerRunner(String adapter, Callable<ContinualTrainer> start) {
    this.adapter = adapter;
    this.start = start;
    this.thread = new Thread(this::runWithRetries, "memgen-trainer-" + adapter);
    thread.start();
  }

  public String adapter() {
    return adapter;
  }

  /** The running trainer; empty before it has started (or while it restarts after a failure). */
  public Optional<ContinualTrainer> trainer() {
    ContinualTrainer t = trainer;
    return t == null || t.status() == null ? Optional.empty() : Optional.of(t);
  }

  private void runWithRetries() {
    untilStopped("trainer of " + adapter, () -> stopping, () -> {
      ContinualTrainer t = start.call();
      trainer = t;
      try {
        if (!stopping) { // not shut down while it was starting
          t.run();
        }
      } finally {
        trainer = null;
        t.release();
      }
    });
  }

  /** Work to run again after a failure. */
  interface Attempt {
    void run() throws Exception;
  }

  /**
   * Runs {@code attempt} until {@code stopped}, again after each failure under an exponential back-off (1 s to 60 s)
   * that starts over only once an attempt has run for a minute: one that fails right after starting, again and again,
   * backs off. {@code what} names it in the log. (A trainer group's membership retries so too.)
   */
  static void untilStopped(String what, BooleanSupplier stopped, Attempt attempt) {
    long backoffMs = 1000;
    while (!stopped.getAsBoolean()) {
      long started = System.nanoTime();
      try {
        attempt.run();
      } catch (InterruptedException e) {
        Thread.currentThread().interrupt();
        return;
      } catch (Exception e) {
        if (stopped.getAsBoolean()) {
          return;
        }
        if (System.nanoTime() - started > HEALTHY_RUN.toNanos()) {
          backoffMs = 1000;
        }
        LOG.error("{} failed (retrying in {} s): {}", what, backoffMs / 1000, e.toString(), e);
        try {
          Thread.sleep(backoffMs);
        } catch (InterruptedException ie) {
          return;
        }
        backoffMs = Math.min(60_000, backoffMs * 2);
      }
    }
  }

  /**
   * Stops the trainer and waits up to {@code patience} for it: it returns within a poll, or after the window in
   * progress is published or refused. One still busy then is interrupted; the store makes stopping anywhere safe.
   */
  public void close(Duration patience) throws InterruptedException {
    stopping = true;
    ContinualTrainer t = trainer;
    if (t != null) {
      t.close();
    }
    thread.join(Math.max(1, patience.toMillis()));
    if (thread.isAlive()) { // in a back-off sleep, or a window that takes longer
      thread.interrupt();
      thread.join(5_000);
    }
  }

  @Override
  public void close() throws InterruptedException {
    close(Duration.ofSeconds(30));
  }
}
