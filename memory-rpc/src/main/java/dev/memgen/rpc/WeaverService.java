package dev.memgen.rpc;

import dev.memgen.model.Decoder;
import dev.memgen.model.Weaver;
import dev.memgen.model.memory.InProcessMemory;
import dev.memgen.model.memory.Memory;
import dev.memgen.model.memory.MemoryManifest;
import dev.memgen.model.memory.WeaverLink;
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
import dev.memgen.proto.v1.LatentKind;
import dev.memgen.proto.v1.WeaverGrpc;
import dev.memgen.proto.v1.WeaverReply;
import dev.memgen.proto.v1.WeaverRequest;
import io.grpc.Status;
import io.grpc.stub.StreamObserver;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.concurrent.RejectedExecutionException;

/**
 * {@code memgen.v1.Weaver/Session}: the memory weaver over gRPC, one session per generation (memory.proto has the
 * protocol). Each session is an {@link InProcessMemory.WeaverSession} — the same code the embedded default runs —
 * so a remote weave computes exactly what an in-process one does. Token rows may be left out: with input
 * embeddings the service embeds the ids itself, with the base it shares with the reasoner.
 *
 * <p>It serves several named adapters and swaps their versions while serving ({@link #install}); a session keeps the
 * version current when it opened to its end. {@link AdapterRegistry} holds the rules (pinning, deferred frees, the
 * least-recently-used bound).
 */
public class WeaverService extends WeaverGrpc.WeaverImplBase implements MemoryService, AutoCloseable {
  /** Named adapters loaded at once unless configured otherwise. */
  public static final int DEFAULT_MAX_RESIDENT = 4;

  private final Decoder base;
  private final String baseFingerprint;
  private final ServiceLimits limits;
  private final SessionRegistry sessions;
  private final ModelThread modelThread = new ModelThread("memgen-weaver-model");
  private final PendingPasses<Call> weaves = new PendingPasses<>(modelThread.executor(), WeaverService::weaveHeld);
  final AdapterRegistry adapters; // package-private: tests watch versions being freed

  /**
   * Serves {@code memory} as adapter {@code adapterName}. The memory is lent: the caller closes it, after this
   * service. Versions {@link #install}ed later are the service's own.
   */
  public WeaverService(Decoder base, Memory memory, String baseFingerprint, String adapterName, ServiceLimits limits) {
    this(base, baseFingerprint, limits, DEFAULT_MAX_RESIDENT, new AdapterRegistry.Source(adapterName,
        memory.manifest().version(), "", null, memory), null);
  }

  /**
   * Serves {@code memory}, loaded from {@code memoryDir}, as the starting version of adapter {@code adapterName}
   * (the default: sessions that name no adapter get it), and whatever {@link #install} adds. The service owns the
   * memory: it frees it once a newer version has replaced it and its last session has closed, and loads it again
   * from {@code memoryDir} if it was unloaded to make room.
   *
   * @param maxResident named adapters loaded at once (least recently used unloaded past it), >= 1
   */
  public WeaverService(Decoder base, String baseFingerprint, ServiceLimits limits, int maxResident, String adapterName,
      Memory memory, Path memoryDir) {
    this(base, baseFingerprint, limits, maxResident, new AdapterRegistry.Source(adapterName, memory.manifest().version(),
        "", memoryDir, null), memory);
  }

  private WeaverService(Decoder base, String baseFingerprint, ServiceLimits limits, int maxResident,
      AdapterRegistry.Source initial, Memory initialMemory) {
    this.base = base;
    this.baseFingerprint = baseFingerprint;
    this.limits = limits;
    this.sessions = new SessionRegistry(limits.maxSessions());
    this.adapters = new AdapterRegistry("weaver", base, baseFingerprint, maxResident, initial, initialMemory);
  }

  @Override
  public int openSessions() {
    return sessions.size();
  }

  @Override
  public String baseFingerprint() {
    return baseFingerprint;
  }

  @Override
  public String defaultAdapterName() {
    return adapters.defaultName();
  }

  @Override
  public List<Adapter> adapters() {
    return adapters.snapshot();
  }

  /**
   * {@inheritDoc} The version is loaded on the model thread. A name no session uses now is loaded once to check it
   * and freed again, then loaded on demand. Blocks until done, so it must not be called on the model thread itself
   * (the adapter follower has its own).
   */
  @Override
  public Installed install(String name, long version, String sha256, Path dir) throws InterruptedException {
    return adapters.installOn(modelThread.executor(), name, version, sha256, dir);
  }

  /**
   * Runs synthetic sessions with the default adapter through this service ({@link WarmUp}) for at most
   * {@code budget} or {@code maxCalls} Weaves, so that its first real sessions do not pay for JIT compilation. Call
   * it before serving.
   */
  public WarmUp.Report warmUp(Duration budget, int maxCalls) {
    int h = base.config().hiddenSize();
    int maxLength = limits.sessionLength(base.config().maxPositions());
    return WarmUp.inProcess("weaver", this, modelThread, channel -> {
      boolean readsHidden = WeaverGrpc.newBlockingStub(channel).describe(DescribeRequest.getDefaultInstance())
          .getRowSource() == RowSource.LAST_HIDDEN_STATES;
      RemoteWeaver client = new RemoteWeaver(channel, baseFingerprint, h, "", WarmUp.DEADLINE);
      return WarmUp.weaver("weaver", id -> client.open(id, readsHidden), base.config().vocabSize(), h, maxLength,
          budget, maxCalls);
    });
  }

  /** The model thread's executor, for tests that hold it to make sessions' work arrive in one batch. */
  java.util.concurrent.Executor modelExecutor() {
    return modelThread.executor();
  }

  @Override
  public int modelQueue() {
    return modelThread.queued();
  }

  @Override
  public StreamObserver<WeaverRequest> session(StreamObserver<WeaverReply> out) {
    return new Call(out);
  }

  /** Answered on the model thread: describing a name that is not loaded loads it, which only that thread may do. */
  @Override
  public void describe(DescribeRequest request, StreamObserver<MemoryDescription> out) {
    try {
      ApiKeys.check(ApiKeys.caller(), adapters.resolve(request.getAdapterName()), "adapter_name");
    } catch (SessionCall.Refusal r) {
      out.onError(r.status.asRuntimeException());
      return;
    }
    try {
      modelThread.executor().execute(() -> describeNow(request, out));
    } catch (RejectedExecutionException e) {
      out.onError(Status.UNAVAILABLE.withDescription("the weaver is shutting down").asRuntimeException());
    }
  }

  private void describeNow(DescribeRequest request, StreamObserver<MemoryDescription> out) {
    AdapterRegistry.Loaded v;
    try {
      v = adapters.describe(request.getAdapterName(), "adapter_name");
    } catch (SessionCall.Refusal r) {
      out.onError(r.status.asRuntimeException());
      return;
    } catch (RuntimeException e) { // on the model thread nobody else would see it: the client would wait for nothing
      out.onError(Status.INTERNAL.withDescription("describing adapter '" + request.getAdapterName() + "' failed: " + e)
          .asRuntimeException());
      return;
    }
    MemoryManifest m = v.memory.manifest();
    out.onNext(MemoryDescription.newBuilder()
        .setAdapterName(v.name())
        .setAdapterVersion(v.version())
        .setBaseFingerprint(baseFingerprint)
        .setPromptK(m.promptK())
        .setInferenceK(m.inferenceK())
        .addAllDelimiters(m.delimiters())
        .setMaxInferenceAug(m.maxInferenceAug())
        .setRowSource(v.readsHidden() ? RowSource.LAST_HIDDEN_STATES : RowSource.INPUT_EMBEDDINGS)
        .build());
    out.onCompleted();
  }

  /** Stops the model thread, then frees every version this service loaded. */
  @Override
  public void close() {
    modelThread.close();
    adapters.close();
  }

  /** The Weaves held for one pass: the sessions' latents in one forward call, each answered on its own stream. */
  private static void weaveHeld(List<Call> held) {
    List<Call> calls = held.stream().filter(Call::live).toList();
    if (calls.isEmpty()) {
      return;
    }
    List<WeaverLink.Woven> woven = InProcessMemory.weaveTogether(calls.stream().map(c -> c.session).toList(),
        calls.stream().map(c -> c.heldKind).toList());
    for (int i = 0; i < calls.size(); i++) {
      calls.get(i).woven(woven.get(i));
    }
  }

  @Override
  public String passKind() {
    return "weave";
  }

  @Override
  public PendingPasses.Passes passes() {
    return weaves.stats();
  }

  private final class Call extends SessionCall<WeaverRequest, WeaverReply> {
    private AdapterRegistry.Loaded adapter; // the version pinned at open, for the whole session
    private InProcessMemory.WeaverSession session;
    private DType dtype;
    private boolean readsHidden; // the pinned version's weaver reads the reasoner's hidden states, not its embeddings
    private long lastWeaveSeq; // the latest Weave whose latents have not been appended yet, or 0
    private int lastWeaveK;
    private Weaver.Kind heldKind; // a Weave held for the next batched pass (see PendingPasses)
    private long heldSeq;
    private int heldK;
    private LatentKind heldWireKind;

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
      Protocol.checkBase(o, baseFingerprint, "weaver");
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
      ApiKeys.check(caller, adapters.resolve(o.getAdapterName()), "open.adapter_name");
      AdapterRegistry.Loaded pinned = adapters.pin(o.getAdapterName(), "open.adapter_name");
      try {
        RowSource mine = pinned.readsHidden() ? RowSource.LAST_HIDDEN_STATES : RowSource.INPUT_EMBEDDINGS;
        if (source != mine) {
          throw precondition("open.row_source " + source + ": this weaver's adapter '" + pinned.name() + "' v"
              + pinned.version() + " reads " + (pinned.readsHidden()
              ? "the reasoner's last-layer hidden states (LAST_HIDDEN_STATES)" : "input embeddings (INPUT_EMBEDDINGS)"));
        }
        session = pinned.weaving.newWeaverSession();
      } catch (RuntimeException e) {
        adapters.unpin(pinned);
        throw e;
      }
      adapter = pinned;
      readsHidden = pinned.readsHidden();
      reply(WeaverReply.newBuilder().setSeq(r.getSeq()).setOpened(SessionOpened.newBuilder()
          .setAdapterName(adapter.name())
          .setAdapterVersion(adapter.version())
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
      heldK = checkGrowth("weave", session.k(kind));
      heldKind = kind;
      heldSeq = seq;
      heldWireKind = w.getKind();
      weaves.add(this); // woven with the other sessions' Weaves in one pass (weaveHeld)
    }

    @Override
    void beforeNext() {
      weaves.flushFor(this);
    }

    private void woven(WeaverLink.Woven w) {
      if (w.error() != null) {
        failed(w.error());
        return;
      }
      lastWeaveSeq = heldSeq;
      lastWeaveK = heldK;
      reply(WeaverReply.newBuilder().setSeq(heldSeq).setLatents(Latents.newBuilder()
          .setRows(Tensors.of(w.latents(), dtype, heldK, base.config().hiddenSize()))
          .setKind(heldWireKind)
          .setAdapterName(adapter.name())
          .setAdapterVersion(adapter.version())).build());
    }

    @Override
    void release() {
      session.close();
      adapters.unpin(adapter);
    }
  }

}
