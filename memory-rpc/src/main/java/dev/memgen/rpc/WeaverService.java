package dev.memgen.rpc;

import dev.memgen.model.Decoder;
import dev.memgen.model.Weaver;
import dev.memgen.model.memory.InProcessMemory;
import dev.memgen.model.memory.Memory;
import dev.memgen.model.memory.MemoryManifest;
import dev.memgen.proto.Tensors;
import dev.memgen.proto.v1.DType;
import dev.memgen.proto.v1.DescribeRequest;
import dev.memgen.proto.v1.LatentSpan;
import dev.memgen.proto.v1.Latents;
import dev.memgen.proto.v1.MemoryDescription;
import dev.memgen.proto.v1.RowSource;
import dev.memgen.proto.v1.SessionAppend;
import dev.memgen.proto.v1.SessionOpen;
import dev.memgen.proto.v1.SessionOpened;
import dev.memgen.proto.v1.TokenSpan;
import dev.memgen.proto.v1.Weave;
import dev.memgen.proto.v1.WeaverGrpc;
import dev.memgen.proto.v1.WeaverReply;
import dev.memgen.proto.v1.WeaverRequest;
import io.grpc.Status;
import io.grpc.stub.StreamObserver;

/**
 * {@code memgen.v1.Weaver/Session}: the memory weaver over gRPC, one session per generation (memory.proto has the
 * protocol). Each session is an {@link InProcessMemory.WeaverSession} — the same code the embedded default runs —
 * so a remote weave computes exactly what an in-process one does. Token rows may be left out: with input
 * embeddings the service embeds the ids itself, with the base it shares with the reasoner.
 */
public class WeaverService extends WeaverGrpc.WeaverImplBase implements AutoCloseable {
  private final Decoder base;
  private final InProcessMemory memory;
  private final String baseFingerprint;
  private final String adapterName;
  private final ServiceLimits limits;
  private final SessionRegistry sessions;
  private final boolean readsHidden; // the memory's weaver reads the reasoner's hidden states, not its embeddings
  private final ModelThread modelThread = new ModelThread("memgen-weaver-model");

  public WeaverService(Decoder base, Memory memory, String baseFingerprint, String adapterName, ServiceLimits limits) {
    this.base = base;
    this.memory = new InProcessMemory(base, memory);
    this.baseFingerprint = baseFingerprint;
    this.adapterName = adapterName;
    this.limits = limits;
    this.sessions = new SessionRegistry(limits.maxSessions());
    this.readsHidden = memory.manifest().weaverInput().equals("hidden");
  }

  /** Sessions open now. */
  public int openSessions() {
    return sessions.size();
  }

  @Override
  public StreamObserver<WeaverRequest> session(StreamObserver<WeaverReply> out) {
    return new Call(out);
  }

  @Override
  public void describe(DescribeRequest request, StreamObserver<MemoryDescription> out) {
    if (!request.getAdapterName().isEmpty() && !request.getAdapterName().equals(adapterName)) {
      out.onError(Status.NOT_FOUND.withDescription("adapter_name '" + request.getAdapterName()
          + "' is unknown to this weaver (it serves '" + adapterName + "')").asRuntimeException());
      return;
    }
    MemoryManifest m = memory.memory().manifest();
    out.onNext(MemoryDescription.newBuilder()
        .setAdapterName(adapterName)
        .setAdapterVersion(m.version())
        .setBaseFingerprint(baseFingerprint)
        .setPromptK(m.promptK())
        .setInferenceK(m.inferenceK())
        .addAllDelimiters(m.delimiters())
        .setMaxInferenceAug(m.maxInferenceAug())
        .setRowSource(readsHidden ? RowSource.LAST_HIDDEN_STATES : RowSource.INPUT_EMBEDDINGS)
        .build());
    out.onCompleted();
  }

  @Override
  public void close() {
    modelThread.close();
  }

  private final class Call extends SessionCall<WeaverRequest, WeaverReply> {
    private InProcessMemory.WeaverSession session;
    private DType dtype;
    private long lastWeaveSeq; // the latest Weave whose latents have not been appended yet, or 0
    private int lastWeaveK;

    Call(StreamObserver<WeaverReply> out) {
      super(out, modelThread.executor(), sessions, limits, base.config().maxPositions(), "weaver");
    }

    @Override
    long seq(WeaverRequest r) {
      return r.getSeq();
    }

    @Override
    String bodyName(WeaverRequest r) {
      return switch (r.getBodyCase()) {
        case OPEN -> "open";
        case APPEND -> "append";
        case WEAVE -> "weave";
        case CLOSE -> "close";
        case BODY_NOT_SET -> null;
      };
    }

    @Override
    void open(WeaverRequest r) {
      SessionOpen o = r.getOpen();
      sessionId = o.getSessionId().isEmpty() ? "?" : o.getSessionId();
      Protocol.check(o, baseFingerprint, adapterName, "weaver");
      int h = base.config().hiddenSize();
      if (o.getHiddenSize() != h) {
        throw precondition("open.hidden_size " + o.getHiddenSize() + " does not match this weaver's reasoner width " + h);
      }
      dtype = switch (o.getDtype()) {
        case DTYPE_UNSPECIFIED, F32 -> DType.F32;
        case BF16 -> DType.BF16;
        default -> throw invalid("open.dtype " + o.getDtype() + ": rows travel as F32 or BF16");
      };
      RowSource source = o.getRowSource() == RowSource.ROW_SOURCE_UNSPECIFIED ? RowSource.INPUT_EMBEDDINGS : o.getRowSource();
      if (source == RowSource.UNRECOGNIZED) {
        throw invalid("open.row_source " + o.getRowSourceValue() + " is not a known row source");
      }
      RowSource mine = readsHidden ? RowSource.LAST_HIDDEN_STATES : RowSource.INPUT_EMBEDDINGS;
      if (source != mine) {
        throw precondition("open.row_source " + source + ": this weaver reads " + (readsHidden
            ? "the reasoner's last-layer hidden states (LAST_HIDDEN_STATES)" : "input embeddings (INPUT_EMBEDDINGS)"));
      }
      session = memory.newWeaverSession();
      reply(WeaverReply.newBuilder().setSeq(r.getSeq()).setOpened(SessionOpened.newBuilder()
          .setAdapterName(adapterName)
          .setAdapterVersion(memory.memory().manifest().version())
          .setPromptK(session.k(Weaver.Kind.PROMPT))
          .setInferenceK(session.k(Weaver.Kind.INFERENCE))).build());
    }

    @Override
    void handle(WeaverRequest r) {
      switch (r.getBodyCase()) {
        case APPEND -> append(r.getAppend());
        case WEAVE -> weave(r.getSeq(), r.getWeave());
        default -> throw new IllegalStateException("unexpected body " + r.getBodyCase());
      }
    }

    private void append(SessionAppend a) {
      int n = checkAppend(a);
      int h = base.config().hiddenSize();
      switch (a.getContentCase()) {
        case TOKENS -> {
          TokenSpan t = a.getTokens();
          int[] ids = Protocol.tokenIds(t, base.config().vocabSize());
          if (t.hasRows() && t.getRows().getShapeCount() > 0) {
            session.appendRows(Tensors.toF32(t.getRows(), "append.tokens.rows", n, h));
          } else if (readsHidden) {
            throw invalid("append.tokens.rows is empty: this weaver reads the reasoner's hidden states of every token");
          } else {
            session.appendTokens(ids);
          }
        }
        default -> { // LATENTS
          LatentSpan l = a.getLatents();
          if (l.hasRows() && l.getRows().getShapeCount() > 0) {
            session.appendRows(Tensors.toF32(l.getRows(), "append.latents.rows", l.getK(), h));
          } else if (readsHidden) {
            throw invalid("append.latents.rows is empty: this weaver reads the reasoner's hidden states at the latents");
          } else if (l.getWeaveSeq() != 0 && l.getWeaveSeq() == lastWeaveSeq && l.getK() == lastWeaveK) {
            session.acceptLatents();
          } else {
            throw invalid("append.latents has no rows, and weave_seq " + l.getWeaveSeq() + " (k " + l.getK()
                + ") does not name this session's latest unappended Weave"
                + (lastWeaveSeq == 0 ? " (there is none)" : " (seq " + lastWeaveSeq + ", k " + lastWeaveK + ")"));
          }
          lastWeaveSeq = 0;
        }
      }
      length += n;
    }

    private void weave(long seq, Weave w) {
      Weaver.Kind kind = switch (w.getKind()) {
        case PROMPT -> Weaver.Kind.PROMPT;
        case INFERENCE -> Weaver.Kind.INFERENCE;
        default -> throw invalid("weave.kind " + w.getKind() + ": must be PROMPT or INFERENCE");
      };
      if (w.getPosition() != length) {
        throw precondition("weave.position " + w.getPosition() + ", but the session holds " + length
            + " rows: latents are woven for the session's current end");
      }
      if (length == 0) {
        throw precondition("weave before any append: the weaver needs at least one prefix row");
      }
      int k = checkGrowth("weave", session.k(kind));
      float[] latents = session.weave(kind);
      lastWeaveSeq = seq;
      lastWeaveK = k;
      reply(WeaverReply.newBuilder().setSeq(seq).setLatents(Latents.newBuilder()
          .setRows(Tensors.of(latents, dtype, k, base.config().hiddenSize()))
          .setKind(w.getKind())
          .setAdapterName(adapterName)
          .setAdapterVersion(memory.memory().manifest().version())).build());
    }

    @Override
    void release() {
      session.close();
    }
  }

}
