package dev.memgen.rpc;

import dev.memgen.proto.v1.SessionAppend;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import io.grpc.stub.StreamObserver;
import java.util.concurrent.Executor;
import org.slf4j.Logger;
import org.slf4j.MDC;
import org.slf4j.LoggerFactory;

/**
 * The server side of one session stream, common to the weaver and the trigger: the protocol of memory.proto
 * (SessionOpen first and once, seq strictly increasing, nothing after SessionClose) and the mapping of every
 * failure to a status that says what was wrong. Subclasses handle the bodies.
 *
 * <p>Every message is handled on the service's model executor, one at a time and in arrival order, so the model
 * is never driven from two threads and a stream's replies leave in request order. An error ends this stream
 * only: the session's state is released and every other session goes on.
 */
abstract class SessionCall<Q, R> implements StreamObserver<Q> {
  private static final Logger LOG = LoggerFactory.getLogger(SessionCall.class);

  /** A protocol or content error: the status to end the stream with. */
  static final class Refusal extends RuntimeException {
    final Status status;

    Refusal(Status.Code code, String message) {
      super(message, null, false, false);
      this.status = Status.fromCode(code).withDescription(message);
    }
  }

  static Refusal invalid(String message) {
    return new Refusal(Status.Code.INVALID_ARGUMENT, message);
  }

  static Refusal precondition(String message) {
    return new Refusal(Status.Code.FAILED_PRECONDITION, message);
  }

  protected final StreamObserver<R> out;
  private final Executor model;
  private final SessionRegistry registry;
  private final ServiceLimits limits;
  private final int maxLength;
  private final String service;
  protected int length; // rows (tokens and latents) appended so far
  private long lastSeq;
  private boolean opened;
  private boolean closed;
  private boolean ended; // the stream is over (error sent, completed, or cancelled): ignore whatever still arrives
  protected String sessionId = "?";
  /** The MDC key of the session id in log records (the reasoner's records use the same key). */
  static final String SESSION_ID = "session_id";
  /** Who opened the stream (null when the service checks no API keys), for the adapter check at open. */
  protected final ApiKeys.Caller caller = ApiKeys.caller();

  /**
   * @param maxPositions the base model's context; a session may not grow past it (or past the limits' own bound)
   * @param service "weaver" or "trigger", for messages
   */
  SessionCall(StreamObserver<R> out, Executor model, SessionRegistry registry, ServiceLimits limits, int maxPositions,
      String service) {
    this.out = out;
    this.model = model;
    this.registry = registry;
    this.limits = limits;
    this.maxLength = limits.sessionLength(maxPositions);
    this.service = service;
  }

  /** Checks an append's position and size against the session and the limits; returns how many rows it adds. */
  int checkAppend(SessionAppend a) {
    if (a.getPosition() != length) {
      throw precondition("append.position " + a.getPosition() + ", but the session holds " + length
          + " rows: appends must be contiguous");
    }
    return switch (a.getContentCase()) {
      case TOKENS -> checkGrowth("append.tokens", a.getTokens().getTokenIdsCount());
      case LATENTS -> checkGrowth("append.latents", a.getLatents().getK());
      case CONTENT_NOT_SET -> throw invalid("append has no content (set tokens or latents)");
    };
  }

  /** Checks that {@code n} more rows (named {@code field} in messages) may join the session; returns n. */
  int checkGrowth(String field, int n) {
    if (n < 1) {
      throw invalid(field + " is empty (" + (field.endsWith("tokens") ? "token_ids" : "k") + " must be >= 1)");
    }
    if (n > limits.maxAppendRows()) {
      throw invalid(field + " carries " + n + " rows; one append may carry at most " + limits.maxAppendRows());
    }
    if ((long) length + n > maxLength) {
      throw invalid(field + ": " + n + " more rows after " + length + " would pass this " + service
          + "'s limit of " + maxLength + " rows per session");
    }
    return n;
  }

  /** The request's seq. */
  abstract long seq(Q request);

  /** Which body the request carries, for messages: "open", "append", ... or null when none is set. */
  abstract String bodyName(Q request);

  /** Handles SessionOpen: validate, allocate, reply. */
  abstract void open(Q request);

  /** Handles any body but SessionOpen and SessionClose. */
  abstract void handle(Q request);

  /** Frees the session's model state. Called exactly once, on the model executor, if {@link #open} succeeded. */
  abstract void release();

  @Override
  public void onNext(Q request) {
    model.execute(() -> {
      MDC.put(SESSION_ID, sessionId); // every record logged for this message names its session (JSON logs: "mdc")
      try {
        receive(request);
      } finally {
        MDC.remove(SESSION_ID);
      }
    });
  }

  /**
   * Called on the model thread before this session's next message is read and before it is freed: a service that
   * holds the session's model work for a batched pass ({@link PendingPasses}) runs it here.
   */
  void beforeNext() {}

  /** Whether the stream is still going: held work of a stream that ended is dropped. */
  boolean live() {
    return !ended;
  }

  /** Ends the stream for a failure of its held model work, with the status the same failure gets inline. */
  void failed(RuntimeException e) {
    if (e instanceof IllegalArgumentException) {
      end(Status.INVALID_ARGUMENT.withDescription(e.getMessage()));
    } else {
      LOG.error("session {} failed", sessionId, e);
      end(Status.INTERNAL.withDescription("session " + sessionId + " failed: " + e));
    }
  }

  private void receive(Q request) {
    if (ended) {
      return;
    }
    beforeNext();
    if (ended) { // the held work failed and ended the stream
      return;
    }
    try {
      long seq = seq(request);
      if (seq <= lastSeq) {
        throw precondition("seq " + seq + " after seq " + lastSeq + ": seq must strictly increase within a stream");
      }
      lastSeq = seq;
      String body = bodyName(request);
      if (body == null) {
        throw invalid("message seq " + seq + " has no body (set exactly one of open, append, decide/weave, close)");
      }
      if (closed) {
        throw precondition("'" + body + "' (seq " + seq + ") after SessionClose");
      }
      if (!opened) {
        if (!body.equals("open")) {
          throw precondition("the first message must be 'open' (SessionOpen), got '" + body + "' (seq " + seq + ")");
        }
        registry.acquire(this);
        try {
          open(request);
          MDC.put(SESSION_ID, sessionId);
        } catch (RuntimeException e) {
          MDC.put(SESSION_ID, sessionId); // the refusal logged next names the session it refused
          registry.release(this);
          throw e;
        }
        opened = true;
        return;
      }
      switch (body) {
        case "open" -> throw precondition("a second 'open' (seq " + seq + "): one SessionOpen per stream");
        case "close" -> closed = true;
        default -> handle(request);
      }
    } catch (Refusal r) {
      end(r.status);
    } catch (IllegalArgumentException e) { // the model's own input checks
      end(Status.INVALID_ARGUMENT.withDescription(e.getMessage()));
    } catch (RuntimeException e) {
      LOG.error("session {} failed", sessionId, e);
      end(Status.INTERNAL.withDescription("session " + sessionId + " failed: " + e));
    }
  }

  @Override
  public void onError(Throwable t) { // the client cancelled or the connection broke
    model.execute(() -> {
      if (!ended) {
        ended = true;
        free();
      }
    });
  }

  @Override
  public void onCompleted() {
    model.execute(() -> {
      beforeNext(); // a client may half-close right after its last Decide or Weave: answer it first
      if (!ended) {
        ended = true;
        free();
        send(() -> out.onCompleted());
      }
    });
  }

  /** Ends this stream with {@code status}: the session's state is freed, every other session goes on. */
  void end(Status status) {
    ended = true;
    LOG.info("session {} refused: {} {}", sessionId, status.getCode(), status.getDescription());
    free();
    send(() -> out.onError(status.asRuntimeException()));
  }

  private void free() {
    beforeNext();
    if (opened) {
      opened = false;
      registry.release(this);
      release();
    }
  }

  /** Sends a reply; a client that has gone away (cancelled) is not an error of ours. */
  void reply(R message) {
    send(() -> out.onNext(message));
  }

  private static void send(Runnable r) {
    try {
      r.run();
    } catch (StatusRuntimeException | IllegalStateException e) {
      LOG.debug("reply to a gone client dropped: {}", e.toString());
    }
  }
}
