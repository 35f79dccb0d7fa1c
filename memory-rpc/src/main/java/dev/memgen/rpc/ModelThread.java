package dev.memgen.rpc;

import java.util.concurrent.ExecutionException;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.RejectedExecutionException;
import java.util.concurrent.ThreadPoolExecutor;
import java.util.concurrent.TimeUnit;

/**
 * The one thread a memory service runs its model on. Sessions take turns message by message: the model's matrix
 * products already use every core (see {@code Engines}), so running two sessions at once would only make both
 * slower, and one thread keeps each stream's messages in order without locks.
 */
final class ModelThread implements AutoCloseable {
  private final ThreadPoolExecutor executor;

  ModelThread(String name) {
    executor = new ThreadPoolExecutor(1, 1, 0, TimeUnit.MILLISECONDS, new LinkedBlockingQueue<>(), r -> {
      Thread t = new Thread(r, name);
      t.setDaemon(true);
      return t;
    });
  }

  ExecutorService executor() {
    return executor;
  }

  /** Tasks (session messages, passes) waiting for the thread. */
  int queued() {
    return executor.getQueue().size();
  }

  /** Waits until every task queued so far has run (none, if the thread has been closed). */
  void drain() {
    try {
      executor.submit(() -> {}).get();
    } catch (RejectedExecutionException | ExecutionException e) {
      // closed: nothing will run any more
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
    }
  }

  @Override
  public void close() {
    executor.shutdownNow();
    try {
      executor.awaitTermination(10, TimeUnit.SECONDS);
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
    }
  }
}
