package dev.memgen.model.memory;

import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.function.Function;
import java.util.function.IntConsumer;
import java.util.function.IntFunction;
import java.util.function.Predicate;

/**
 * Runs blocking calls to remote memory services side by side: each waits on the network, not on a core, so a
 * batch's calls to a weaver or trigger service overlap instead of queueing behind each other (and the service can
 * run them as one batch).
 */
final class Concurrently {
  private static final ExecutorService CALLS = Executors.newCachedThreadPool(r -> {
    Thread t = new Thread(r, "memgen-memory-call");
    t.setDaemon(true);
    return t;
  });

  private Concurrently() {}

  /**
   * One answer per session, entry i for {@code sessions.get(i)}: the sessions with an in-process session behind them
   * ({@code local}) in one {@code together} call, given their indices; the others (remote) each by {@code alone},
   * side by side. {@code alone} answers a failure itself; it must not throw.
   */
  static <S, R> List<R> batched(List<? extends S> sessions, Predicate<S> local, Function<List<Integer>, List<R>> together,
      IntFunction<R> alone) {
    List<R> out = new ArrayList<>(java.util.Collections.nCopies(sessions.size(), null));
    List<Integer> localAt = new ArrayList<>();
    List<Integer> other = new ArrayList<>();
    for (int i = 0; i < sessions.size(); i++) {
      (local.test(sessions.get(i)) ? localAt : other).add(i);
    }
    if (!localAt.isEmpty()) {
      List<R> answers = together.apply(localAt);
      for (int j = 0; j < answers.size(); j++) {
        out.set(localAt.get(j), answers.get(j));
      }
    }
    each(other, i -> out.set(i, alone.apply(i)));
    return out;
  }

  /** Calls {@code call} for each index, the first on this thread and the rest on others; returns when all have. */
  static void each(List<Integer> indices, IntConsumer call) {
    if (indices.size() <= 1) {
      indices.forEach(call::accept);
      return;
    }
    List<Future<?>> others = new ArrayList<>();
    for (int i : indices.subList(1, indices.size())) {
      others.add(CALLS.submit(() -> call.accept(i)));
    }
    call.accept(indices.get(0));
    for (Future<?> f : others) {
      try {
        f.get();
      } catch (InterruptedException e) {
        Thread.currentThread().interrupt();
        throw new IllegalStateException("interrupted while waiting for memory calls", e);
      } catch (ExecutionException e) {
        throw new IllegalStateException("a memory call failed: " + e.getCause(), e.getCause());
      }
    }
  }
}
