package dev.memgen.rpc;

import dev.memgen.model.Decoder;
import dev.memgen.model.memory.InProcessMemory;
import dev.memgen.model.memory.Memory;
import dev.memgen.model.memory.MemoryManifest;
import dev.memgen.model.memory.TriggerLink;
import dev.memgen.proto.v1.Decide;
import dev.memgen.proto.v1.Decision;
import dev.memgen.proto.v1.LatentSpan;
import dev.memgen.proto.v1.RowSource;
import dev.memgen.proto.v1.SessionAppend;
import dev.memgen.proto.v1.SessionOpen;
import dev.memgen.proto.v1.SessionOpened;
import dev.memgen.proto.v1.TokenSpan;
import dev.memgen.proto.v1.TriggerGrpc;
import dev.memgen.proto.v1.TriggerReply;
import dev.memgen.proto.v1.TriggerRequest;
import io.grpc.stub.StreamObserver;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;

/**
 * {@code memgen.v1.Trigger/Session}: the memory trigger over gRPC, one session per generation (memory.proto has
 * the protocol). Each session is an {@link InProcessMemory.TriggerSession}, the embedded default's own code. The
 * trigger reads token ids only; latent blocks arrive as counts so positions stay the reasoner's. Tokens are read
 * when a Decide comes, in one forward call over everything appended since the last (as in-process).
 *
 * <p>Like the weaver it serves named adapters and swaps their versions while serving ({@link #install}): a session
 * keeps the trigger version current when it opened to its end ({@link AdapterRegistry} holds the rules).
 *
 * <p>{@code Decision.invoke} is this server's advice ({@code probability >= threshold}); the reasoner applies its
 * own rule to the probability (threshold or seeded sampling), the same rule in-process and remote.
 */
public class TriggerService extends TriggerGrpc.TriggerImplBase implements MemoryService, AutoCloseable {
  private final Decoder base;
  private final String baseFingerprint;
  private final double threshold;
  private final ServiceLimits limits;
  private final SessionRegistry sessions;
  private final ModelThread modelThread = new ModelThread("memgen-trigger-model");
  private final PendingPasses<Call> decides = new PendingPasses<>(modelThread.executor(), this::decideHeld);
  private final AdapterRegistry adapters;

  /**
   * Serves {@code memory} as adapter {@code adapterName}. The memory is lent: the caller closes it, after this
   * service. Versions {@link #install}ed later are the service's own.
   */
  public TriggerService(Decoder base, Memory memory, String baseFingerprint, String adapterName, double threshold,
      ServiceLimits limits) {
    this(base, baseFingerprint, threshold, limits, WeaverService.DEFAULT_MAX_RESIDENT,
        new AdapterRegistry.Source(adapterName, memory.manifest().version(), "", null, memory), null);
  }

  /**
   * Serves {@code memory}, loaded from {@code memoryDir}, as the starting version of adapter {@code adapterName}; the
   * service owns it (freed once replaced and unused, loaded again from {@code memoryDir} if it was unloaded).
   */
  public TriggerService(Decoder base, String baseFingerprint, double threshold, ServiceLimits limits, int maxResident,
      String adapterName, Memory memory, Path memoryDir) {
    this(base, baseFingerprint, threshold, limits, maxResident,
        new AdapterRegistry.Source(adapterName, memory.manifest().version(), "", memoryDir, null), memory);
  }

  private TriggerService(Decoder base, String baseFingerprint, double threshold, ServiceLimits limits, int maxResident,
      AdapterRegistry.Source initial, Memory initialMemory) {
    this.base = base;
    this.baseFingerprint = baseFingerprint;
    this.threshold = threshold;
    this.limits = limits;
    this.sessions = new SessionRegistry(limits.maxSessions());
    this.adapters = new AdapterRegistry("trigger", base, baseFingerprint, maxResident, initial, initialMemory);
  }

  @Override
  public String baseFingerprint() {
    return baseFingerprint;
  }

  @Override
  public List<Adapter> adapters() {
    return adapters.snapshot();
  }

  /** {@inheritDoc} Loaded on the model thread; blocks until done. */
  @Override
  public Installed install(String name, long version, String sha256, Path dir) throws InterruptedException {
    return adapters.installOn(modelThread.executor(), name, version, sha256, dir);
  }

  @Override
  public String defaultAdapterName() {
    return adapters.defaultName();
  }

  @Override
  public int openSessions() {
    return sessions.size();
  }

  /**
   * Runs synthetic sessions through this service ({@link WarmUp}) for at most {@code budget} or {@code maxCalls}
   * Decides, so that its first real sessions do not pay for JIT compilation. Call it before serving.
   */
  public WarmUp.Report warmUp(Duration budget, int maxCalls) {
    MemoryManifest m = adapters.describe("", "adapter_name").memory.manifest();
    int maxLength = limits.sessionLength(base.config().maxPositions());
    return WarmUp.inProcess("trigger", this, modelThread, channel -> {
      RemoteTrigger client = new RemoteTrigger(channel, baseFingerprint, "", WarmUp.DEADLINE);
      return WarmUp.trigger("trigger", client::open, base.config().vocabSize(), m.promptK(), m.inferenceK(), maxLength,
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
  public StreamObserver<TriggerRequest> session(StreamObserver<TriggerReply> out) {
    return new Call(out);
  }

  @Override
  public void close() {
    modelThread.close();
    adapters.close();
  }

  /** The Decides held for one pass: the sessions' new tokens through their triggers in one forward call. */
  private void decideHeld(List<Call> held) {
    List<Call> calls = held.stream().filter(Call::live).toList();
    if (calls.isEmpty()) {
      return;
    }
    List<TriggerLink.Read> reads = InProcessMemory.probabilities(calls.stream().map(c -> c.session).toList());
    for (int i = 0; i < calls.size(); i++) {
      Call c = calls.get(i);
      TriggerLink.Read r = reads.get(i);
      if (r.error() != null) {
        c.failed(r.error());
      } else {
        c.reply(TriggerReply.newBuilder().setSeq(c.heldSeq)
            .setDecision(Decision.newBuilder().setProbability(r.probability()).setInvoke(r.probability() >= threshold)).build());
      }
    }
  }

  @Override
  public String passKind() {
    return "decide";
  }

  @Override
  public PendingPasses.Passes passes() {
    return decides.stats();
  }

  private final class Call extends SessionCall<TriggerRequest, TriggerReply> {
    private AdapterRegistry.Loaded adapter; // the version pinned at open, for the whole session
    private InProcessMemory.TriggerSession session;
    private int tokens; //        tokens among the rows appended
    private boolean lastIsToken; // whether the latest append was tokens
    private long heldSeq; // a Decide held for the next batched pass (see PendingPasses)

    Call(StreamObserver<TriggerReply> out) {
      super(out, modelThread.executor(), sessions, limits, base.config().maxPositions(), "trigger");
    }

    @Override
    long seq(TriggerRequest r) {
      return r.getSeq();
    }

    @Override
    String bodyName(TriggerRequest r) {
      return switch (r.getBodyCase()) {
        case OPEN -> "open";
        case APPEND -> "append";
        case DECIDE -> "decide";
        case CLOSE -> "close";
        case BODY_NOT_SET -> null;
      };
    }

    @Override
    void open(TriggerRequest r) {
      SessionOpen o = r.getOpen();
      sessionId = o.getSessionId().isEmpty() ? "?" : o.getSessionId();
      Protocol.checkBase(o, baseFingerprint, "trigger");
      if (o.getRowSource() != RowSource.NO_ROWS && o.getRowSource() != RowSource.ROW_SOURCE_UNSPECIFIED) {
        throw precondition("open.row_source " + o.getRowSource() + ": the trigger reads token ids only (NO_ROWS)");
      }
      ApiKeys.check(caller, adapters.resolve(o.getAdapterName()), "open.adapter_name");
      AdapterRegistry.Loaded pinned = adapters.pin(o.getAdapterName(), "open.adapter_name");
      try {
        session = pinned.weaving.newTriggerSession();
      } catch (RuntimeException e) {
        adapters.unpin(pinned);
        throw e;
      }
      adapter = pinned;
      reply(TriggerReply.newBuilder().setSeq(r.getSeq()).setOpened(SessionOpened.newBuilder()
          .setAdapterName(adapter.name())
          .setAdapterVersion(adapter.version())).build());
    }

    @Override
    void handle(TriggerRequest r) {
      switch (r.getBodyCase()) {
        case APPEND -> append(r.getAppend());
        case DECIDE -> decide(r.getSeq(), r.getDecide());
        default -> throw new IllegalStateException("unexpected body " + r.getBodyCase());
      }
    }

    private void append(SessionAppend a) {
      int n = checkAppend(a);
      switch (a.getContentCase()) {
        case TOKENS -> {
          TokenSpan t = a.getTokens();
          if (t.hasRows() && t.getRows().getShapeCount() + t.getRows().getData().size() > 0) {
            throw invalid("append.tokens.rows: the trigger reads token ids only; send no rows");
          }
          session.appendTokens(Protocol.tokenIds(t, base.config().vocabSize())); // queued until the next Decide
          tokens += n;
          lastIsToken = true;
        }
        default -> { // LATENTS
          LatentSpan l = a.getLatents();
          if (l.hasRows() && l.getRows().getShapeCount() + l.getRows().getData().size() > 0) {
            throw invalid("append.latents.rows: the trigger never reads latents; send the count k only");
          }
          lastIsToken = false;
        }
      }
      length += n;
    }

    private void decide(long seq, Decide d) {
      if (tokens == 0 || !lastIsToken || d.getPosition() != length - 1) {
        throw precondition("decide.position " + d.getPosition() + " is not the session's last token (the session holds "
            + length + " rows" + (length > 0 && !lastIsToken ? ", ending with latents" : "") + ")");
      }
      heldSeq = seq;
      decides.add(this); // read with the other sessions' Decides in one pass (decideHeld)
    }

    @Override
    void beforeNext() {
      decides.flushFor(this);
    }

    @Override
    void release() {
      session.close();
      adapters.unpin(adapter);
    }
  }
}
