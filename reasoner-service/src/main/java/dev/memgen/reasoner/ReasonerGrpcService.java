package dev.memgen.reasoner;

import dev.memgen.engine.TrajectoryRecord;
import dev.memgen.model.Weaver;
import dev.memgen.model.generate.Generator;
import dev.memgen.model.generate.MemGenInterleaver;
import dev.memgen.model.text.TextTokenizer;
import dev.memgen.proto.v1.FinishReason;
import dev.memgen.proto.v1.Finished;
import dev.memgen.proto.v1.GenerateEvent;
import dev.memgen.proto.v1.GenerateRequest;
import dev.memgen.proto.v1.LatentKind;
import dev.memgen.proto.v1.MemoryEvent;
import dev.memgen.proto.v1.MemorySkip;
import dev.memgen.proto.v1.ReasonerGrpc;
import dev.memgen.proto.v1.SkipReason;
import dev.memgen.proto.v1.TokenDelta;
import io.grpc.Context;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import io.grpc.stub.ServerCallStreamObserver;
import io.grpc.stub.StreamObserver;
import io.quarkus.grpc.GrpcService;
import io.smallrye.common.annotation.Blocking;
import java.util.List;
import java.util.Map;
import org.eclipse.microprofile.config.inject.ConfigProperty;
import org.jboss.logging.Logger;

/**
 * {@code memgen.v1.Reasoner/Generate}: decodes with the frozen base and streams each token as it is chosen.
 *
 * <p>Decoding is CPU-bound native work, so the method is {@link Blocking}: it runs on a Quarkus worker thread,
 * never on the gRPC event loop. Calls run concurrently; that is safe because {@link Generator#generate} gives each
 * call its own KV cache over the shared, read-only weights.
 */
@GrpcService
public class ReasonerGrpcService extends ReasonerGrpc.ReasonerImplBase {
  private static final Logger LOG = Logger.getLogger(ReasonerGrpcService.class);

  private final ReasonerModel model; // a proxy: not touched here, so the checkpoint loads at startup, not now
  private final ReasonerMemoryConfig memory; // a proxy too
  private final ExperienceRecorder experience;
  private final int defaultMaxNewTokens;
  private volatile GenerateRequestMapper mapper;

  ReasonerGrpcService(ReasonerModel model, ReasonerMemoryConfig memory, ExperienceRecorder experience,
      @ConfigProperty(name = "memgen.generate.default-max-new-tokens", defaultValue = "256") int defaultMaxNewTokens) {
    if (defaultMaxNewTokens < 1) {
      throw new IllegalStateException("memgen.generate.default-max-new-tokens must be >= 1, got " + defaultMaxNewTokens);
    }
    this.model = model;
    this.memory = memory;
    this.experience = experience;
    this.defaultMaxNewTokens = defaultMaxNewTokens;
  }

  private GenerateRequestMapper mapper() {
    GenerateRequestMapper m = mapper;
    if (m == null) { // a benign race: two threads may build equal mappers
      m = new GenerateRequestMapper(model.config().vocabSize(), model.config().maxPositions(), model.tokenizer(),
          model.baseStopTokens(), defaultMaxNewTokens);
      mapper = m;
    }
    return m;
  }

  /** Thrown from the token listener to stop decoding when the client has gone away. */
  private static final class CallCancelled extends RuntimeException {
    CallCancelled() {
      super("call cancelled by the client", null, false, false);
    }
  }

  @Override
  @Blocking
  public void generate(GenerateRequest request, StreamObserver<GenerateEvent> out) {
    long start = System.nanoTime();
    Context context = Context.current();
    ServerCallStreamObserver<GenerateEvent> call =
        out instanceof ServerCallStreamObserver<GenerateEvent> s ? s : null;
    if (call != null) {
      call.setOnCancelHandler(() -> LOG.debugf("Generate cancelled by the client"));
    }
    GenerateRequestMapper.Plan plan;
    try {
      plan = mapper().map(request);
    } catch (StatusRuntimeException e) {
      out.onError(e);
      return;
    }
    Generator.Request req = plan.request();
    TextTokenizer tokenizer = model.tokenizer();
    IncrementalText text = new IncrementalText(tokenizer == null ? null : ids -> tokenizer.decode(ids, true));
    MemGenInterleaver loop = plan.memoryRequested() ? memory.open(plan.sessionId(), req.sampling().seed()) : null;
    boolean wantTrace = request.getWantTrace() && loop != null;
    int[] produced = {0};
    int[] reported = {0}; // insertions already sent as MemoryEvents
    Generator.Listener listener = (row, token, hidden) -> {
      if (context.isCancelled() || (call != null && call.isCancelled())) {
        throw new CallCancelled();
      }
      if (wantTrace) {
        reportInsertions(loop, reported, out);
      }
      produced[0]++;
      // The generator ends the row on exactly these two conditions, right after this call.
      boolean last = req.stopTokens().contains(token) || produced[0] >= req.maxNewTokens();
      out.onNext(GenerateEvent.newBuilder()
          .setToken(TokenDelta.newBuilder().addTokenIds(token).setText(text.add(token, last)))
          .build());
    };

    Generator.Result result;
    MemGenInterleaver.Trace trace = null;
    try {
      result = model.generator().generate(List.of(req), listener, loop == null ? Generator.Interleaver.NONE : loop).get(0);
      if (loop != null) {
        trace = loop.trace(0);
        if (wantTrace) {
          reportInsertions(loop, reported, out);
        }
      }
    } catch (CallCancelled e) {
      return; // nobody is listening; the decode loop has freed its cache
    } catch (IllegalArgumentException e) { // the model's own input checks, should the mapper have missed one
      out.onError(Status.INVALID_ARGUMENT.withDescription(e.getMessage()).asRuntimeException());
      return;
    } catch (RuntimeException e) {
      if (context.isCancelled() || (call != null && call.isCancelled())) {
        return;
      }
      LOG.errorf(e, "Generate failed (session %s)", plan.sessionId());
      out.onError(Status.INTERNAL.withDescription("decode failure: " + e).withCause(e).asRuntimeException());
      return;
    } finally {
      if (loop != null) {
        loop.close();
      }
    }

    long latencyMs = (System.nanoTime() - start) / 1_000_000;
    FinishReason reason = TrajectoryRecord.finishReason(result);
    String trajectoryId = experience.recordTrajectory(TrajectoryRecord.of(plan.sessionId(), memory.adapterName(),
        model.fingerprint(), req, result, trace, plan.memoryRequested(), latencyMs));
    Finished.Builder finished = Finished.newBuilder()
        .setReason(reason)
        .setPromptTokens(req.prompt().length)
        .setCompletionTokens(result.tokens().length)
        .setLatencyMs(latencyMs)
        .setTrajectoryId(trajectoryId)
        .setSessionId(plan.sessionId());
    if (trace != null) {
      finished.setLatentRows(trace.insertions().stream().mapToInt(MemGenInterleaver.Insertion::k).sum());
      trace.skips().entrySet().stream().sorted(Map.Entry.comparingByKey()).forEach(skip -> finished.addMemorySkipped(
          MemorySkip.newBuilder().setReason(SkipReason.valueOf(skip.getKey().name())).setCount(skip.getValue())));
    } else {
      // No memory for this generation. The one insertion point every generation has, the prompt latents at the
      // answer start, is reported as skipped: MEMORY_DISABLED when the client turned memory off, its documented
      // meaning; WEAVER_UNAVAILABLE when memory was asked for but this server has none configured (it "went on
      // without memory"). MEMORY_DISABLED there would make the server's missing weaver look like the client's choice.
      finished.setLatentRows(0).addMemorySkipped(MemorySkip.newBuilder()
          .setReason(plan.memoryRequested() ? SkipReason.WEAVER_UNAVAILABLE : SkipReason.MEMORY_DISABLED)
          .setCount(1));
    }
    try {
      out.onNext(GenerateEvent.newBuilder().setFinished(finished).build());
      out.onCompleted();
    } catch (StatusRuntimeException e) { // the client left just as we finished
      LOG.debugf("Generate finished after the client left: %s", e.getStatus());
    }
  }

  /** Sends a MemoryEvent for each insertion made since the last call, so they interleave with the tokens in order. */
  private static void reportInsertions(MemGenInterleaver loop, int[] reported, StreamObserver<GenerateEvent> out) {
    List<MemGenInterleaver.Insertion> all = loop.trace(0).insertions();
    for (; reported[0] < all.size(); reported[0]++) {
      MemGenInterleaver.Insertion i = all.get(reported[0]);
      MemoryEvent.Builder e = MemoryEvent.newBuilder()
          .setPosition(i.position())
          .setKind(i.kind() == Weaver.Kind.PROMPT ? LatentKind.PROMPT : LatentKind.INFERENCE)
          .setK(i.k())
          .setTokenIndex(i.tokenIndex())
          .setWeaverVersion(i.weaverVersion());
      if (!Float.isNaN(i.probability())) {
        e.setTriggerProbability(i.probability());
      }
      out.onNext(GenerateEvent.newBuilder().setMemory(e).build());
    }
  }
}
