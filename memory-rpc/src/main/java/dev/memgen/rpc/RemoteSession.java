package dev.memgen.rpc;

import dev.memgen.model.Weaver;
import io.grpc.Channel;
import io.grpc.ConnectivityState;
import io.grpc.ManagedChannel;
import io.grpc.stub.StreamObserver;
import io.opentelemetry.context.Context;
import io.opentelemetry.context.Scope;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.function.BiFunction;
import java.util.function.Function;
import java.util.function.LongFunction;
import java.util.function.ToLongFunction;

/**
 * What the remote weaver and trigger sessions share: the session's whole sequence kept on the client (so it can be
 * replayed), appends sent lazily just before a call, and a stream that is opened on first use and re-opened after
 * a failure — replaying the sequence — once the {@link Backoff} allows. A session never blocks past the deadline.
 */
abstract class RemoteSession<Q, R> implements AutoCloseable {
  /** One append: text tokens, or a latent block (with its rows when the weaver needs them). */
  record Item(int[] tokens, Weaver.Kind kind, int k, float[] rows, long weaveSeq, ClientStream<?, ?> wovenOn) {
    int size() {
      return tokens != null ? tokens.length : k;
    }
  }

  private final Channel channel;
  private final Function<StreamObserver<R>, StreamObserver<Q>> start;
  private final ToLongFunction<R> seqOf;
  private final CallDeadline deadline;
  private final Backoff backoff;
  private final String service;
  protected final String sessionId;
  protected final List<Item> history = new ArrayList<>();
  protected int length; //     rows in the sequence
  private int sentItems; //    items of history the current stream has
  private int sentLength;
  protected ClientStream<Q, R> stream;
  private final Context trace; // of the request that opened the session

  RemoteSession(Channel channel, Function<StreamObserver<R>, StreamObserver<Q>> start, ToLongFunction<R> seqOf,
      CallDeadline deadline, Backoff backoff, String service, String sessionId) {
    this.channel = channel;
    this.start = start;
    this.seqOf = seqOf;
    this.deadline = deadline;
    this.backoff = backoff;
    this.service = service;
    this.sessionId = sessionId;
    this.trace = Context.current();
  }

  /** The SessionOpen request. */
  abstract Q openRequest(long seq);

  /** Takes what it needs from the server's answer to SessionOpen; throws IllegalArgumentException if unusable. */
  abstract void opened(R reply);

  /** The SessionAppend request for {@code item} at {@code position}; {@code sameStream} when it was woven on this stream. */
  abstract Q appendRequest(long seq, int position, Item item, boolean sameStream);

  abstract Q closeRequest(long seq);

  void add(Item item) {
    history.add(item);
    length += item.size();
  }

  /**
   * Runs {@code call} on a live stream after sending every append it lacks, giving it the deadline for the work
   * those appends (and {@code extraRows}, e.g. the weave's queries) make. Any failure ends the stream and comes out
   * as {@link MemoryUnavailableException}; the next call reconnects, when the backoff allows.
   */
  <T> T withStream(int extraRows, BiFunction<ClientStream<Q, R>, Duration, T> call) {
    ClientStream<Q, R> s = stream;
    try {
      if (s == null || !s.alive()) {
        s = connect();
      }
      int newRows = length - sentLength;
      for (; sentItems < history.size(); sentItems++) {
        Item item = history.get(sentItems);
        int position = sentLength;
        ClientStream<Q, R> on = s;
        s.send(seq -> appendRequest(seq, position, item, item.wovenOn() == on));
        sentLength += item.size();
      }
      return call.apply(s, deadline.forRows(newRows + extraRows));
    } catch (MemoryUnavailableException e) {
      stream = null;
      backoff.failed();
      throw e;
    } catch (IllegalArgumentException e) { // the server's answer did not make sense
      if (s != null) {
        s.cancel("bad reply: " + e.getMessage());
      }
      stream = null;
      backoff.failed();
      throw new MemoryUnavailableException("the " + service + " sent a bad reply: " + e.getMessage(), e);
    }
  }

  private ClientStream<Q, R> connect() {
    long wait = backoff.waitMillis();
    if (wait > 0) {
      throw new MemoryUnavailableException("the " + service + " failed recently; next attempt in " + wait + " ms", null);
    }
    if (channel instanceof ManagedChannel m) {
      retryConnectionNow(m);
    }
    ClientStream<Q, R> s;
    // Streams are (re)connected on the decoding thread; the call continues the trace of the request that opened the
    // session (a tracing interceptor on the channel reads the current context when the call starts).
    try (Scope ignored = trace.makeCurrent()) {
      s = new ClientStream<>(start, seqOf, service);
    }
    stream = s;
    opened(s.call(this::openRequest, deadline.fixed()));
    sentItems = 0;
    sentLength = 0;
    backoff.succeeded();
    return s;
  }

  /**
   * Our backoff decides when to try a failed service again, not the channel's: a channel in TRANSIENT_FAILURE fails
   * every call at once with its last error until its own (longer) backoff passes. So make it reconnect now and wait
   * for the attempt to resolve, at most the deadline: refused in a millisecond when the service is down, READY when
   * it is back.
   */
  private void retryConnectionNow(ManagedChannel m) {
    long end = System.nanoTime() + deadline.fixed().toNanos();
    ConnectivityState state = m.getState(true);
    if (state == ConnectivityState.TRANSIENT_FAILURE) {
      m.resetConnectBackoff();
      state = awaitChange(m, state, end);
    }
    while (state == ConnectivityState.CONNECTING || state == ConnectivityState.IDLE) {
      state = awaitChange(m, state, end);
      if (System.nanoTime() >= end) {
        return;
      }
    }
  }

  private static ConnectivityState awaitChange(ManagedChannel m, ConnectivityState from, long endNanos) {
    CountDownLatch changed = new CountDownLatch(1);
    m.notifyWhenStateChanged(from, changed::countDown);
    try {
      changed.await(Math.max(0, endNanos - System.nanoTime()), TimeUnit.NANOSECONDS);
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
    }
    return m.getState(false);
  }

  @Override
  public void close() {
    if (stream != null) {
      stream.close(this::closeRequest);
      stream = null;
    }
  }
}
