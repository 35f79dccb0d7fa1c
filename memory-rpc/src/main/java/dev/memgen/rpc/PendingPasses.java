package dev.memgen.rpc;

import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.Executor;
import java.util.concurrent.RejectedExecutionException;
import java.util.function.Consumer;

/**
 * Dynamic batching on a service's model thread: the model work of one kind (Weaves, Decides) that sessions ask for
 * is held and run as one batched forward pass once every message queued before it has been read — everything that
 * arrived while the model was busy goes in one pass, as a batching inference server does. A session with work held
 * gets it run before its next message is read ({@link #flushFor}), so each stream stays in order. Model thread only.
 */
public final class PendingPasses<C> {
  private final Executor model;
  private final Consumer<List<C>> run;
  private final List<C> held = new ArrayList<>();
  private boolean scheduled;
  private volatile long passes;
  private volatile long items;
  private volatile long nanos;

  /** @param run runs a batch (never empty), on the model thread; it answers each call itself */
  PendingPasses(Executor model, Consumer<List<C>> run) {
    this.model = model;
    this.run = run;
  }

  /** Holds {@code call}'s work for the next pass. */
  void add(C call) {
    held.add(call);
    if (!scheduled) {
      try {
        model.execute(() -> {
          scheduled = false;
          flush();
        });
        scheduled = true;
      } catch (RejectedExecutionException e) { // shutting down: run it now rather than never
        flush();
      }
    }
  }

  /** Runs the held work now if {@code call} has some: its next message must see it done. */
  void flushFor(C call) {
    if (held.contains(call)) {
      flush();
    }
  }

  /** Passes run so far, the work items they carried (their ratio is the mean batch) and the time they took. */
  Passes stats() {
    return new Passes(passes, items, nanos);
  }

  /** What the passes of one kind came to; readable from any thread (metrics). */
  public record Passes(long passes, long items, long nanos) {}

  private void flush() {
    if (held.isEmpty()) {
      return;
    }
    List<C> batch = List.copyOf(held);
    held.clear();
    long t0 = System.nanoTime();
    run.accept(batch);
    nanos += System.nanoTime() - t0; // written on the model thread only
    items += batch.size();
    passes++;
  }
}
