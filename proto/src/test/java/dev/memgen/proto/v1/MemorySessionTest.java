package dev.memgen.proto.v1;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.grpc.ManagedChannel;
import io.grpc.Server;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import io.grpc.inprocess.InProcessChannelBuilder;
import io.grpc.inprocess.InProcessServerBuilder;
import io.grpc.stub.StreamObserver;
import java.util.ArrayList;
import java.util.Iterator;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

/** The generated stubs carry a whole Trigger / Weaver session (and a Generate stream) over in-process gRPC. */
class MemorySessionTest {

  private static final int HIDDEN = 4;
  private static final int PROMPT_K = 2;
  private static final int INFERENCE_K = 3;
  private static final int DELIMITER = 11;

  private Server server;
  private ManagedChannel channel;

  @BeforeEach
  void start() throws Exception {
    String name = InProcessServerBuilder.generateName();
    server = InProcessServerBuilder.forName(name).directExecutor()
        .addService(new TestTrigger()).addService(new TestWeaver()).addService(new TestReasoner())
        .build().start();
    channel = InProcessChannelBuilder.forName(name).directExecutor().build();
  }

  @AfterEach
  void stop() throws Exception {
    channel.shutdownNow().awaitTermination(5, TimeUnit.SECONDS);
    server.shutdownNow().awaitTermination(5, TimeUnit.SECONDS);
  }

  @Test
  void weaverSessionReturnsLatentsForTheWholePrefix() throws Exception {
    Collector<WeaverReply> replies = new Collector<>();
    StreamObserver<WeaverRequest> out = WeaverGrpc.newStub(channel).session(replies);
    out.onNext(WeaverRequest.newBuilder().setSeq(1).setOpen(open()).build());
    out.onNext(WeaverRequest.newBuilder().setSeq(2).setAppend(tokens(0, 5, 6, 7)).build());
    out.onNext(WeaverRequest.newBuilder().setSeq(3).setWeave(Weave.newBuilder().setKind(LatentKind.PROMPT).setPosition(3)).build());
    out.onNext(WeaverRequest.newBuilder().setSeq(4).setAppend(SessionAppend.newBuilder().setPosition(3)
        .setLatents(LatentSpan.newBuilder().setKind(LatentKind.PROMPT).setK(PROMPT_K).setWeaveSeq(3))).build());
    out.onNext(WeaverRequest.newBuilder().setSeq(5).setAppend(tokens(5, 8, DELIMITER)).build());
    out.onNext(WeaverRequest.newBuilder().setSeq(6).setWeave(Weave.newBuilder().setKind(LatentKind.INFERENCE).setPosition(7)).build());
    out.onNext(WeaverRequest.newBuilder().setSeq(7).setClose(SessionClose.newBuilder().setReason(FinishReason.STOP_TOKEN)).build());
    out.onCompleted();

    List<WeaverReply> got = replies.done.get(5, TimeUnit.SECONDS);
    assertEquals(3, got.size());
    assertEquals(1, got.get(0).getSeq());
    assertEquals(PROMPT_K, got.get(0).getOpened().getPromptK());
    assertEquals(INFERENCE_K, got.get(0).getOpened().getInferenceK());

    Latents prompt = got.get(1).getLatents();
    assertEquals(3, got.get(1).getSeq());
    assertEquals(List.of((long) PROMPT_K, (long) HIDDEN), prompt.getRows().getShapeList());
    assertEquals("default", prompt.getAdapterName());
    assertEquals(5, prompt.getAdapterVersion());
    // The test weaver fills rows with the prefix length it saw: 3 prompt tokens.
    assertArrayEquals(new float[] {3, 3, 3, 3, 3, 3, 3, 3}, RecordsRoundTripTest.Tensors.toF32(prompt.getRows()));

    Latents inference = got.get(2).getLatents();
    assertEquals(6, got.get(2).getSeq());
    assertEquals(LatentKind.INFERENCE, inference.getKind());
    assertEquals(List.of((long) INFERENCE_K, (long) HIDDEN), inference.getRows().getShapeList());
    // 3 prompt tokens + 2 prompt latents + 2 completion tokens: the earlier latents are in the prefix.
    assertEquals(7f, RecordsRoundTripTest.Tensors.toF32(inference.getRows())[0]);
  }

  @Test
  void triggerSessionDecidesAtDelimiters() throws Exception {
    Collector<TriggerReply> replies = new Collector<>();
    StreamObserver<TriggerRequest> out = TriggerGrpc.newStub(channel).session(replies);
    out.onNext(TriggerRequest.newBuilder().setSeq(1).setOpen(open().toBuilder().setRowSource(RowSource.NO_ROWS).setSeed(42)).build());
    out.onNext(TriggerRequest.newBuilder().setSeq(2).setAppend(SessionAppend.newBuilder().setPosition(0)
        .setTokens(TokenSpan.newBuilder().addTokenIds(5).addTokenIds(DELIMITER))).build());
    out.onNext(TriggerRequest.newBuilder().setSeq(3).setDecide(Decide.newBuilder().setPosition(1)).build());
    out.onNext(TriggerRequest.newBuilder().setSeq(4).setAppend(SessionAppend.newBuilder().setPosition(2)
        .setLatents(LatentSpan.newBuilder().setKind(LatentKind.INFERENCE).setK(INFERENCE_K))).build());
    out.onNext(TriggerRequest.newBuilder().setSeq(5).setAppend(SessionAppend.newBuilder().setPosition(5)
        .setTokens(TokenSpan.newBuilder().addTokenIds(9))).build());
    out.onNext(TriggerRequest.newBuilder().setSeq(6).setDecide(Decide.newBuilder().setPosition(5).setInferenceCount(1)).build());
    out.onNext(TriggerRequest.newBuilder().setSeq(7).setClose(SessionClose.newBuilder().setReason(FinishReason.LENGTH)).build());
    out.onCompleted();

    List<TriggerReply> got = replies.done.get(5, TimeUnit.SECONDS);
    assertEquals(3, got.size());
    assertEquals(TriggerReply.BodyCase.OPENED, got.get(0).getBodyCase());
    assertEquals(3, got.get(1).getSeq());
    assertTrue(got.get(1).getDecision().getInvoke());
    assertEquals(0.75f, got.get(1).getDecision().getProbability());
    assertEquals(6, got.get(2).getSeq());
    assertFalse(got.get(2).getDecision().getInvoke());
  }

  @Test
  void outOfOrderSeqEndsTheSessionWithFailedPrecondition() throws Exception {
    Collector<TriggerReply> replies = new Collector<>();
    StreamObserver<TriggerRequest> out = TriggerGrpc.newStub(channel).session(replies);
    out.onNext(TriggerRequest.newBuilder().setSeq(1).setOpen(open()).build());
    out.onNext(TriggerRequest.newBuilder().setSeq(1).setDecide(Decide.newBuilder()).build());
    Throwable error = replies.done.handle((ok, e) -> e).get(5, TimeUnit.SECONDS);
    StatusRuntimeException sre = assertInstanceOf(StatusRuntimeException.class, error);
    assertEquals(Status.Code.FAILED_PRECONDITION, sre.getStatus().getCode());
  }

  @Test
  void generateStreamsTokensThenFinished() {
    GenerateRequest req = GenerateRequest.newBuilder()
        .setChat(ChatMessages.newBuilder().addMessages(ChatMessage.newBuilder().setRole("user").setContent("Q:1+1=?")))
        .setMaxNewTokens(2).setWantTrace(true).setSessionId("s-1").build();
    Iterator<GenerateEvent> events = ReasonerGrpc.newBlockingStub(channel).generate(req);
    List<GenerateEvent.EventCase> cases = new ArrayList<>();
    GenerateEvent last = null;
    while (events.hasNext()) {
      last = events.next();
      cases.add(last.getEventCase());
    }
    assertEquals(List.of(GenerateEvent.EventCase.MEMORY, GenerateEvent.EventCase.TOKEN, GenerateEvent.EventCase.TOKEN,
        GenerateEvent.EventCase.FINISHED), cases);
    assertEquals(FinishReason.LENGTH, last.getFinished().getReason());
    assertEquals("s-1", last.getFinished().getSessionId());
  }

  private static SessionOpen open() {
    return SessionOpen.newBuilder().setSessionId("sess-1").setBaseFingerprint("sha256:base").setHiddenSize(HIDDEN)
        .setDtype(DType.F32).setRowSource(RowSource.INPUT_EMBEDDINGS).build();
  }

  private static SessionAppend tokens(int position, int... ids) {
    TokenSpan.Builder span = TokenSpan.newBuilder();
    float[] rows = new float[ids.length * HIDDEN];
    for (int id : ids) span.addTokenIds(id);
    span.setRows(RecordsRoundTripTest.Tensors.f32(new long[] {ids.length, HIDDEN}, rows));
    return SessionAppend.newBuilder().setPosition(position).setTokens(span).build();
  }

  /** Collects a reply stream; completes with the replies, or exceptionally with the stream's error. */
  private static final class Collector<T> implements StreamObserver<T> {
    final List<T> items = new ArrayList<>();
    final CompletableFuture<List<T>> done = new CompletableFuture<>();

    @Override public void onNext(T value) { items.add(value); }
    @Override public void onError(Throwable t) { done.completeExceptionally(t); }
    @Override public void onCompleted() { done.complete(items); }
  }

  /** Checks the session protocol common to both services: Open first, increasing seq, contiguous positions. */
  private abstract static class SessionState {
    long lastSeq;
    boolean opened;
    boolean closed;
    int length;
    int lastToken = -1;

    /** Returns an error status for a protocol violation, or null. */
    Status check(long seq, boolean isOpen) {
      if (seq <= lastSeq) return Status.FAILED_PRECONDITION.withDescription("seq " + seq + " after " + lastSeq);
      lastSeq = seq;
      if (closed) return Status.FAILED_PRECONDITION.withDescription("message after close");
      if (isOpen == opened) return Status.FAILED_PRECONDITION.withDescription(isOpen ? "second open" : "not opened");
      opened = true;
      return null;
    }

    Status append(SessionAppend a) {
      if (a.getPosition() != length) return Status.FAILED_PRECONDITION.withDescription("gap at " + a.getPosition());
      switch (a.getContentCase()) {
        case TOKENS -> {
          TokenSpan t = a.getTokens();
          if (t.hasRows() && t.getRows().getShape(0) != t.getTokenIdsCount()) return Status.INVALID_ARGUMENT;
          length += t.getTokenIdsCount();
          lastToken = t.getTokenIds(t.getTokenIdsCount() - 1);
        }
        case LATENTS -> {
          length += a.getLatents().getK();
          lastToken = -1;
        }
        default -> { return Status.INVALID_ARGUMENT.withDescription("empty append"); }
      }
      return null;
    }
  }

  private static final class TestTrigger extends TriggerGrpc.TriggerImplBase {
    @Override
    public StreamObserver<TriggerRequest> session(StreamObserver<TriggerReply> replies) {
      return new StreamObserver<>() {
        final SessionState s = new SessionState() {};

        @Override
        public void onNext(TriggerRequest r) {
          Status bad = s.check(r.getSeq(), r.hasOpen());
          if (bad == null) {
            switch (r.getBodyCase()) {
              case OPEN -> replies.onNext(TriggerReply.newBuilder().setSeq(r.getSeq())
                  .setOpened(SessionOpened.newBuilder().setAdapterName("default").setAdapterVersion(2)).build());
              case APPEND -> bad = s.append(r.getAppend());
              case DECIDE -> {
                float p = s.lastToken == DELIMITER ? 0.75f : 0.1f;
                replies.onNext(TriggerReply.newBuilder().setSeq(r.getSeq())
                    .setDecision(Decision.newBuilder().setProbability(p).setInvoke(p >= 0.5f)).build());
              }
              case CLOSE -> s.closed = true;
              default -> bad = Status.INVALID_ARGUMENT.withDescription("empty request");
            }
          }
          if (bad != null) replies.onError(bad.asRuntimeException());
        }

        @Override public void onError(Throwable t) { }
        @Override public void onCompleted() { replies.onCompleted(); }
      };
    }
  }

  private static final class TestWeaver extends WeaverGrpc.WeaverImplBase {
    @Override
    public StreamObserver<WeaverRequest> session(StreamObserver<WeaverReply> replies) {
      return new StreamObserver<>() {
        final SessionState s = new SessionState() {};

        @Override
        public void onNext(WeaverRequest r) {
          Status bad = s.check(r.getSeq(), r.hasOpen());
          if (bad == null) {
            switch (r.getBodyCase()) {
              case OPEN -> replies.onNext(WeaverReply.newBuilder().setSeq(r.getSeq()).setOpened(SessionOpened.newBuilder()
                  .setAdapterName("default").setAdapterVersion(5).setPromptK(PROMPT_K).setInferenceK(INFERENCE_K)).build());
              case APPEND -> bad = s.append(r.getAppend());
              case WEAVE -> {
                Weave w = r.getWeave();
                if (w.getPosition() != s.length) {
                  bad = Status.FAILED_PRECONDITION.withDescription("weave at " + w.getPosition());
                  break;
                }
                int k = w.getKind() == LatentKind.PROMPT ? PROMPT_K : INFERENCE_K;
                float[] rows = new float[k * HIDDEN];
                java.util.Arrays.fill(rows, s.length);
                replies.onNext(WeaverReply.newBuilder().setSeq(r.getSeq()).setLatents(Latents.newBuilder()
                    .setRows(RecordsRoundTripTest.Tensors.f32(new long[] {k, HIDDEN}, rows)).setKind(w.getKind())
                    .setAdapterName("default").setAdapterVersion(5)).build());
              }
              case CLOSE -> s.closed = true;
              default -> bad = Status.INVALID_ARGUMENT.withDescription("empty request");
            }
          }
          if (bad != null) replies.onError(bad.asRuntimeException());
        }

        @Override public void onError(Throwable t) { }
        @Override public void onCompleted() { replies.onCompleted(); }
      };
    }
  }

  private static final class TestReasoner extends ReasonerGrpc.ReasonerImplBase {
    @Override
    public void generate(GenerateRequest req, StreamObserver<GenerateEvent> out) {
      if (req.getPromptCase() == GenerateRequest.PromptCase.PROMPT_NOT_SET) {
        out.onError(Status.INVALID_ARGUMENT.withDescription("no prompt").asRuntimeException());
        return;
      }
      if (req.getWantTrace()) {
        out.onNext(GenerateEvent.newBuilder().setMemory(MemoryEvent.newBuilder().setPosition(9).setKind(LatentKind.PROMPT)
            .setK(PROMPT_K).setWeaverVersion(5)).build());
      }
      for (int i = 0; i < req.getMaxNewTokens(); i++) {
        out.onNext(GenerateEvent.newBuilder().setToken(TokenDelta.newBuilder().addTokenIds(40 + i).setText("x")).build());
      }
      out.onNext(GenerateEvent.newBuilder().setFinished(Finished.newBuilder().setReason(FinishReason.LENGTH)
          .setPromptTokens(9).setCompletionTokens(req.getMaxNewTokens()).setSessionId(req.getSessionId())
          .setLatentRows(PROMPT_K)).build());
      out.onCompleted();
    }
  }
}
