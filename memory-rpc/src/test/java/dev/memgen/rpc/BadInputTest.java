package dev.memgen.rpc;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.google.protobuf.ByteString;
import dev.memgen.proto.Tensors;
import dev.memgen.proto.v1.DType;
import dev.memgen.proto.v1.Decide;
import dev.memgen.proto.v1.LatentKind;
import dev.memgen.proto.v1.LatentSpan;
import dev.memgen.proto.v1.RowSource;
import dev.memgen.proto.v1.SessionAppend;
import dev.memgen.proto.v1.SessionClose;
import dev.memgen.proto.v1.SessionOpen;
import dev.memgen.proto.v1.TokenSpan;
import dev.memgen.proto.v1.TriggerGrpc;
import dev.memgen.proto.v1.TriggerReply;
import dev.memgen.proto.v1.TriggerRequest;
import dev.memgen.proto.v1.Weave;
import dev.memgen.proto.v1.WeaverGrpc;
import dev.memgen.proto.v1.WeaverReply;
import dev.memgen.proto.v1.WeaverRequest;
import io.grpc.ManagedChannel;
import io.grpc.Status;
import io.grpc.stub.StreamObserver;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import java.util.function.Function;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Every kind of bad input to the weaver and trigger services is refused with the documented status and a message
 * that names what was wrong; the service keeps serving, and a good session run after each refusal gets its answer.
 */
class BadInputTest {
  @TempDir static Path tmp;
  static Fixture fx;
  static Fixture.Served served;
  static ManagedChannel channel;
  static int hidden;
  static int vocab;
  static final int SESSION_LIMIT = 64;

  @BeforeAll
  static void setUp() throws Exception {
    fx = new Fixture(tmp);
    hidden = fx.base.config().hiddenSize();
    vocab = fx.base.config().vocabSize();
    served = fx.serve(0, new ServiceLimits(4, SESSION_LIMIT, 32));
    channel = Fixture.channel(served.port());
  }

  @AfterAll
  static void tearDown() {
    channel.shutdownNow();
    served.close();
    fx.close();
  }

  /** What a stream produced: its replies and how it ended. */
  record Outcome<R>(List<R> replies, Status status) {}

  static <Q, R> Outcome<R> exchange(Function<StreamObserver<R>, StreamObserver<Q>> start, List<Q> requests) throws Exception {
    List<R> replies = new ArrayList<>();
    CompletableFuture<Status> end = new CompletableFuture<>();
    StreamObserver<Q> out = start.apply(new StreamObserver<>() {
      @Override public void onNext(R r) {
        synchronized (replies) {
          replies.add(r);
        }
      }
      @Override public void onError(Throwable t) {
        end.complete(Status.fromThrowable(t));
      }
      @Override public void onCompleted() {
        end.complete(Status.OK);
      }
    });
    for (Q q : requests) {
      out.onNext(q);
    }
    out.onCompleted();
    Status status = end.get(30, TimeUnit.SECONDS);
    synchronized (replies) {
      return new Outcome<>(List.copyOf(replies), status);
    }
  }

  static Outcome<WeaverReply> weaver(WeaverRequest... requests) throws Exception {
    return exchange(WeaverGrpc.newStub(channel)::session, numbered(Arrays.asList(requests)));
  }

  static Outcome<TriggerReply> trigger(TriggerRequest... requests) throws Exception {
    return exchange(TriggerGrpc.newStub(channel)::session, numbered(Arrays.asList(requests)));
  }

  /** Numbers requests 1, 2, 3... unless a test set seq itself. */
  @SuppressWarnings("unchecked")
  static <Q> List<Q> numbered(List<Q> requests) {
    List<Q> out = new ArrayList<>();
    for (int i = 0; i < requests.size(); i++) {
      Q q = requests.get(i);
      if (q instanceof WeaverRequest w && w.getSeq() == 0) {
        q = (Q) w.toBuilder().setSeq(i + 1).build();
      } else if (q instanceof TriggerRequest t && t.getSeq() == 0) {
        q = (Q) t.toBuilder().setSeq(i + 1).build();
      }
      out.add(q);
    }
    return out;
  }

  static SessionOpen.Builder open() {
    return SessionOpen.newBuilder().setSessionId("t").setBaseFingerprint(fx.fingerprint).setHiddenSize(hidden);
  }

  static WeaverRequest wOpen(SessionOpen.Builder o) {
    return WeaverRequest.newBuilder().setOpen(o).build();
  }

  static WeaverRequest wTokens(int position, int... ids) {
    TokenSpan.Builder t = TokenSpan.newBuilder();
    Arrays.stream(ids).forEach(t::addTokenIds);
    return WeaverRequest.newBuilder().setAppend(SessionAppend.newBuilder().setPosition(position).setTokens(t)).build();
  }

  static WeaverRequest wLatents(int position, LatentSpan.Builder l) {
    return WeaverRequest.newBuilder().setAppend(SessionAppend.newBuilder().setPosition(position).setLatents(l)).build();
  }

  static WeaverRequest wWeave(LatentKind kind, int position) {
    return WeaverRequest.newBuilder().setWeave(Weave.newBuilder().setKind(kind).setPosition(position)).build();
  }

  static WeaverRequest wClose() {
    return WeaverRequest.newBuilder().setClose(SessionClose.getDefaultInstance()).build();
  }

  static TriggerRequest tOpen() {
    return TriggerRequest.newBuilder().setOpen(SessionOpen.newBuilder().setSessionId("t").setBaseFingerprint(fx.fingerprint)).build();
  }

  static TriggerRequest tTokens(int position, int... ids) {
    TokenSpan.Builder t = TokenSpan.newBuilder();
    Arrays.stream(ids).forEach(t::addTokenIds);
    return TriggerRequest.newBuilder().setAppend(SessionAppend.newBuilder().setPosition(position).setTokens(t)).build();
  }

  static TriggerRequest tDecide(int position) {
    return TriggerRequest.newBuilder().setDecide(Decide.newBuilder().setPosition(position)).build();
  }

  static void assertRefused(Outcome<?> o, Status.Code code, String messagePart) throws Exception {
    assertEquals(code, o.status().getCode(), o.status().toString());
    assertTrue(o.status().getDescription() != null && o.status().getDescription().contains(messagePart),
        "'" + o.status().getDescription() + "' should say '" + messagePart + "'");
    assertStillServing();
  }

  /** A good weaver session and a good trigger session, start to finish. */
  static void assertStillServing() throws Exception {
    Outcome<WeaverReply> w = weaver(wOpen(open()), wTokens(0, 1, 2, 3), wWeave(LatentKind.PROMPT, 3),
        wLatents(3, LatentSpan.newBuilder().setKind(LatentKind.PROMPT).setK(Fixture.PROMPT_K).setWeaveSeq(3)),
        wTokens(3 + Fixture.PROMPT_K, 4), wWeave(LatentKind.INFERENCE, 4 + Fixture.PROMPT_K), wClose());
    assertEquals(Status.Code.OK, w.status().getCode(), w.status().toString());
    assertEquals(3, w.replies().size());
    assertEquals(List.of((long) Fixture.INFERENCE_K, (long) hidden), w.replies().get(2).getLatents().getRows().getShapeList());
    Outcome<TriggerReply> t = trigger(tOpen(), tTokens(0, 5, 6), tDecide(1));
    assertEquals(Status.Code.OK, t.status().getCode(), t.status().toString());
    float p = t.replies().get(1).getDecision().getProbability();
    assertTrue(p > 0 && p < 1, "a probability: " + p);
    RemoteMemoryTest.waitFor(() -> served.weaver().openSessions() == 0 && served.trigger().openSessions() == 0);
  }

  @Test
  void aGoodSessionIsServed() throws Exception {
    assertStillServing();
  }

  @Test
  void openIsCheckedAgainstTheServersModel() throws Exception {
    assertRefused(weaver(wOpen(open().setHiddenSize(hidden + 1))), Status.Code.FAILED_PRECONDITION,
        "open.hidden_size " + (hidden + 1) + " does not match");
    assertRefused(weaver(wOpen(open().setBaseFingerprint("sha256:other"))), Status.Code.FAILED_PRECONDITION,
        "open.base_fingerprint 'sha256:other' is not this weaver's base model");
    assertRefused(weaver(wOpen(open().setDtype(DType.F16))), Status.Code.INVALID_ARGUMENT, "open.dtype F16");
    assertRefused(weaver(wOpen(open().setRowSource(RowSource.LAST_HIDDEN_STATES))), Status.Code.FAILED_PRECONDITION,
        "open.row_source LAST_HIDDEN_STATES");
    assertRefused(weaver(wOpen(open().setSessionId(""))), Status.Code.INVALID_ARGUMENT, "open.session_id is empty");
    assertRefused(weaver(wOpen(open().setAdapterName("fleet-b"))), Status.Code.NOT_FOUND, "open.adapter_name 'fleet-b' is unknown");
    assertRefused(trigger(TriggerRequest.newBuilder().setOpen(SessionOpen.newBuilder().setSessionId("t")
        .setBaseFingerprint(fx.fingerprint).setRowSource(RowSource.INPUT_EMBEDDINGS)).build()),
        Status.Code.FAILED_PRECONDITION, "the trigger reads token ids only");
  }

  @Test
  void theProtocolIsEnforced() throws Exception {
    assertRefused(weaver(wTokens(0, 1)), Status.Code.FAILED_PRECONDITION, "the first message must be 'open'");
    assertRefused(weaver(wOpen(open()), wOpen(open())), Status.Code.FAILED_PRECONDITION, "a second 'open'");
    assertRefused(weaver(wOpen(open()), wTokens(0, 1).toBuilder().setSeq(1).build()), Status.Code.FAILED_PRECONDITION,
        "seq 1 after seq 1: seq must strictly increase");
    assertRefused(weaver(wOpen(open()), wTokens(0, 1, 2), wTokens(5, 3)), Status.Code.FAILED_PRECONDITION,
        "append.position 5, but the session holds 2 rows");
    assertRefused(weaver(wOpen(open()), wWeave(LatentKind.PROMPT, 0)), Status.Code.FAILED_PRECONDITION,
        "weave before any append");
    assertRefused(weaver(wOpen(open()), wTokens(0, 1), wWeave(LatentKind.PROMPT, 4)), Status.Code.FAILED_PRECONDITION,
        "weave.position 4, but the session holds 1 rows");
    assertRefused(weaver(wOpen(open()), wClose(), wTokens(0, 1)), Status.Code.FAILED_PRECONDITION, "after SessionClose");
    assertRefused(weaver(wOpen(open()), WeaverRequest.newBuilder().build()), Status.Code.INVALID_ARGUMENT, "has no body");
    assertRefused(trigger(tOpen(), tTokens(0, 1, 2), tDecide(0)), Status.Code.FAILED_PRECONDITION,
        "decide.position 0 is not the session's last token");
  }

  @Test
  void malformedContentIsRefusedByName() throws Exception {
    assertRefused(weaver(wOpen(open()), wTokens(0, 1, vocab)), Status.Code.INVALID_ARGUMENT,
        "append.tokens.token_ids[1] = " + vocab + " is outside the vocabulary");
    assertRefused(weaver(wOpen(open()), wTokens(0, -3)), Status.Code.INVALID_ARGUMENT, "token_ids[0] = -3");
    assertRefused(weaver(wOpen(open()), wTokens(0)), Status.Code.INVALID_ARGUMENT, "append.tokens is empty");
    float[] nan = new float[2 * hidden];
    nan[hidden + 3] = Float.NaN;
    assertRefused(weaver(wOpen(open()), wTokens(0, 1),
        wLatents(1, LatentSpan.newBuilder().setK(2).setRows(Tensors.f32(nan, 2, hidden)))),
        Status.Code.INVALID_ARGUMENT, "append.latents.rows: value NaN at flat index " + (hidden + 3));
    assertRefused(weaver(wOpen(open()), wTokens(0, 1),
        wLatents(1, LatentSpan.newBuilder().setK(2).setRows(Tensors.f32(new float[2 * hidden], 2, hidden + 1 - 1, 1)))),
        Status.Code.INVALID_ARGUMENT, "append.latents.rows: shape [2, " + hidden + ", 1], expected [2, " + hidden + "]");
    assertRefused(weaver(wOpen(open()), wTokens(0, 1), wLatents(1, LatentSpan.newBuilder().setK(2).setRows(
        Tensors.f32(new float[2 * hidden], 2, hidden).toBuilder().setData(ByteString.copyFrom(new byte[7]))))),
        Status.Code.INVALID_ARGUMENT, "7 bytes of data");
    assertRefused(weaver(wOpen(open()), wTokens(0, 1), wLatents(1, LatentSpan.newBuilder().setK(2).setWeaveSeq(9))),
        Status.Code.INVALID_ARGUMENT, "weave_seq 9 (k 2) does not name this session's latest unappended Weave");
    assertRefused(weaver(wOpen(open()), wTokens(0, 1), wWeave(LatentKind.LATENT_KIND_UNSPECIFIED, 1)),
        Status.Code.INVALID_ARGUMENT, "weave.kind LATENT_KIND_UNSPECIFIED");
    assertRefused(trigger(tOpen(), TriggerRequest.newBuilder().setAppend(SessionAppend.newBuilder().setPosition(0)
        .setTokens(TokenSpan.newBuilder().addTokenIds(1).setRows(Tensors.f32(new float[hidden], 1, hidden)))).build()),
        Status.Code.INVALID_ARGUMENT, "the trigger reads token ids only; send no rows");
  }

  @Test
  void oversizeIsRefused() throws Exception {
    int[] many = new int[33];
    assertRefused(weaver(wOpen(open()), wTokens(0, many)), Status.Code.INVALID_ARGUMENT,
        "append.tokens carries 33 rows; one append may carry at most 32");
    int[] thirty = new int[30];
    assertRefused(weaver(wOpen(open()), wTokens(0, thirty), wTokens(30, thirty), wTokens(60, 1, 2, 3, 4, 5)),
        Status.Code.INVALID_ARGUMENT, "append.tokens: 5 more rows after 60 would pass this weaver's limit of " + SESSION_LIMIT + " rows per session");
    // Past the transport's message limit gRPC itself refuses the stream before any of our code runs: the server
    // answers RESOURCE_EXHAUSTED, which a client still sending sees as the stream's reset (CANCELLED).
    float[] huge = new float[Fixture.MAX_INBOUND_BYTES / 4 + 1];
    Outcome<WeaverReply> o = weaver(wOpen(open()), wTokens(0, 1),
        wLatents(1, LatentSpan.newBuilder().setK(1).setRows(Tensors.f32(huge, 1, huge.length))));
    assertTrue(o.status().getCode() == Status.Code.RESOURCE_EXHAUSTED || o.status().getCode() == Status.Code.CANCELLED,
        o.status().toString());
    assertStillServing();
  }

  @Test
  void sessionsAreBoundedAndFreed() throws Exception {
    List<StreamObserver<WeaverRequest>> open = new ArrayList<>();
    try {
      Status fifth = null;
      for (int i = 0; i < 5; i++) { // one at a time, so the fifth is the one past the limit
        CompletableFuture<Object> answer = new CompletableFuture<>();
        StreamObserver<WeaverRequest> s = WeaverGrpc.newStub(channel).session(new StreamObserver<>() {
          @Override public void onNext(WeaverReply r) {
            answer.complete(r);
          }
          @Override public void onError(Throwable t) {
            answer.complete(Status.fromThrowable(t));
          }
          @Override public void onCompleted() {}
        });
        s.onNext(wOpen(open()).toBuilder().setSeq(1).build());
        open.add(s);
        Object a = answer.get(30, TimeUnit.SECONDS);
        if (i < 4) {
          assertTrue(a instanceof WeaverReply r && r.hasOpened(), "session " + i + " opened: " + a);
        } else {
          fifth = (Status) a;
        }
      }
      assertEquals(Status.Code.RESOURCE_EXHAUSTED, fifth.getCode(), fifth.toString());
      assertTrue(fifth.getDescription().contains("too many open sessions (4, the server's limit is 4)"), fifth.toString());
    } finally {
      for (StreamObserver<WeaverRequest> s : open) {
        s.onError(Status.CANCELLED.asRuntimeException()); // the client goes away without closing
      }
    }
    RemoteMemoryTest.waitFor(() -> served.weaver().openSessions() == 0);
    assertStillServing();
  }
}
