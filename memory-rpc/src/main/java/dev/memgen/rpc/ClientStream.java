package dev.memgen.rpc;

import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import io.grpc.stub.ClientCallStreamObserver;
import io.grpc.stub.ClientResponseObserver;
import io.grpc.stub.StreamObserver;
import java.time.Duration;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import java.util.function.Function;
import java.util.function.LongFunction;
import java.util.function.ToLongFunction;

/**
 * The client end of one session stream: numbers requests, pipelines the ones that get no reply, and waits for a
 * reply with a deadline. Anything that goes wrong — the server refusing, the connection breaking, the deadline
 * passing — makes the stream dead (cancelled, so the server frees the session) and surfaces as a
 * {@link MemoryUnavailableException}; the owner then opens a new stream when it next needs one.
 *
 * <p>Requests are sent from one thread (the decode loop's); replies arrive on gRPC's threads.
 */
final class ClientStream<Q, R> {
  private final Map<Long, CompletableFuture<R>> waiting = new ConcurrentHashMap<>();
  private final ClientCallStreamObserver<Q> requests;
  private final String service;
  private volatile Throwable failure;
  private long seq;

  /**
   * @param start the stub's session method, e.g. {@code WeaverGrpc.newStub(channel)::session}
   * @param seqOf a reply's seq
   * @param service "weaver" or "trigger", for messages
   */
  ClientStream(Function<StreamObserver<R>, StreamObserver<Q>> start, ToLongFunction<R> seqOf, String service) {
    this.service = service;
    Object[] call = new Object[1];
    start.apply(new ClientResponseObserver<Q, R>() {
      @Override
      public void beforeStart(ClientCallStreamObserver<Q> stream) {
        call[0] = stream;
      }

      @Override
      public void onNext(R reply) {
        CompletableFuture<R> f = waiting.remove(seqOf.applyAsLong(reply));
        if (f != null) {
          f.complete(reply);
        }
      }

      @Override
      public void onError(Throwable t) {
        die(t);
      }

      @Override
      public void onCompleted() {
        die(Status.UNAVAILABLE.withDescription("the " + service + " ended the session").asRuntimeException());
      }
    });
    @SuppressWarnings("unchecked")
    ClientCallStreamObserver<Q> requests = (ClientCallStreamObserver<Q>) call[0];
    this.requests = requests;
  }

  private void die(Throwable t) {
    if (failure == null) {
      failure = t;
    }
    waiting.values().forEach(f -> f.completeExceptionally(t));
    waiting.clear();
  }

  boolean alive() {
    return failure == null;
  }

  /** Sends a request that gets no reply; returns its seq. */
  long send(LongFunction<Q> build) {
    check();
    long s = ++seq;
    try {
      requests.onNext(build.apply(s));
    } catch (RuntimeException e) {
      throw fail("sending to the " + service + " failed", e);
    }
    return s;
  }

  /** Sends a request and waits, at most {@code deadline}, for its reply. */
  R call(LongFunction<Q> build, Duration deadline) {
    check();
    long s = seq + 1;
    CompletableFuture<R> reply = new CompletableFuture<>();
    waiting.put(s, reply);
    if (failure != null) { // died between the check and the put: the future may have been missed
      reply.completeExceptionally(failure);
    }
    send(build);
    try {
      return reply.get(deadline.toNanos(), TimeUnit.NANOSECONDS);
    } catch (TimeoutException e) {
      throw fail("the " + service + " did not answer within " + deadline.toMillis() + " ms", null);
    } catch (ExecutionException e) {
      throw fail("the " + service + " failed", e.getCause());
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      throw fail("interrupted while waiting for the " + service, e);
    }
  }

  /** Ends the session politely: the close message, then half-close. Never throws. */
  void close(LongFunction<Q> closeMessage) {
    if (failure != null) {
      return;
    }
    try {
      requests.onNext(closeMessage.apply(++seq));
      requests.onCompleted();
    } catch (RuntimeException e) {
      cancel("close failed: " + e);
    }
    failure = Status.CANCELLED.withDescription("closed").asRuntimeException();
  }

  void cancel(String why) {
    try {
      requests.cancel(why, null);
    } catch (RuntimeException ignored) {
      // already gone
    }
    die(Status.CANCELLED.withDescription(why).asRuntimeException());
  }

  private void check() {
    if (failure != null) {
      throw new MemoryUnavailableException("the " + service + " session is over: " + describe(failure), failure);
    }
  }

  private MemoryUnavailableException fail(String what, Throwable cause) {
    Throwable root = cause != null ? cause : failure;
    cancel(what);
    return new MemoryUnavailableException(what + (root == null ? "" : ": " + describe(root)), root);
  }

  static String describe(Throwable t) {
    return t instanceof StatusRuntimeException s
        ? s.getStatus().getCode() + (s.getStatus().getDescription() == null ? "" : " " + s.getStatus().getDescription())
        : t.toString();
  }
}
