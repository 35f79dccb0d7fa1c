package dev.memgen.reasoner;

import dev.memgen.engine.TrajectoryRecord;
import dev.memgen.engine.core.EngineCore;
import dev.memgen.engine.core.EngineOverloadedException;
import dev.memgen.model.Weaver;
import dev.memgen.model.generate.Generator;
import dev.memgen.model.generate.MemGenInterleaver;
import dev.memgen.model.text.TextTokenizer;
import dev.memgen.proto.v1.Finished;
import dev.memgen.proto.v1.GenerateEvent;
import dev.memgen.proto.v1.GenerateRequest;
import dev.memgen.proto.v1.LatentKind;
import dev.memgen.proto.v1.MemoryEvent;
import dev.memgen.proto.v1.MemorySkip;
import dev.memgen.proto.v1.ReasonerGrpc;
import dev.memgen.proto.v1.SkipReason;
import dev.memgen.proto.v1.TokenDelta;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import io.grpc.stub.ServerCallStreamObserver;
import io.grpc.stub.StreamObserver;
import io.quarkus.grpc.GrpcService;
import io.smallrye.common.annotation.Blocking;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CancellationException;
import org.jboss.logging.Logger;

/**
 * {@code memgen.v1.Reasoner/Generate}: decodes with the frozen base and streams each token as it is chosen.
 *
 * <p>The call joins the model's {@link EngineCore}: its tokens are streamed from the engine thread as the continuous
 * batch produces them, and the Finished event follows the trajectory's recording. The method is {@link Blocking}
 * (tokenizing a long prompt and opening remote memory sessions stay off the gRPC event loop); it returns as soon as
 * the request is queued. A full engine answers UNAVAILABLE with the limit that was hit.
 */
@GrpcService
public class ReasonerGrpcService extends ReasonerGrpc.ReasonerImplBase {
  private static final Logger LOG = Logger.getLogger(ReasonerGrpcService.class);

  private final Generations generations;

  ReasonerGrpcService(Generations generations) {
    this.generations = generations;
  }

  @Override
  @Blocking
  public void generate(GenerateRequest request, StreamObserver<GenerateEvent> out) {
    ServerCallStreamObserver<GenerateEvent> call =
        out instanceof ServerCallStreamObserver<GenerateEvent> s ? s : null;
    GenerateRequestMapper.Plan plan;
    try {
      generations.checkAdapter(request);
      plan = generations.map(request);
    } catch (StatusRuntimeException e) {
      out.onError(e);
      return;
    }
    Generator.Request req = plan.request();
    TextTokenizer tokenizer = generations.model().tokenizer();
    IncrementalText text = new IncrementalText(tokenizer == null ? null : ids -> tokenizer.decode(ids, true));
    boolean wantTrace = request.getWantTrace();
    int[] produced = {0};
    int[] reported = {0}; // insertions already sent as MemoryEvents
    Generations.Listener listener = new Generations.Listener() {
      @Override
      public boolean onToken(int token, MemGenInterleaver memory) { // on the engine thread
        if (wantTrace && memory != null) {
          reportInsertions(memory.trace(0), reported, out);
        }
        produced[0]++;
        // The engine ends the row on exactly these two conditions, right after this call.
        boolean last = req.stopTokens().contains(token) || produced[0] >= req.maxNewTokens();
        out.onNext(GenerateEvent.newBuilder()
            .setToken(TokenDelta.newBuilder().addTokenIds(token).setText(text.add(token, last)))
            .build());
        return true;
      }

      @Override
      public void onFinished(Generations.Completion c) {
        try {
          if (wantTrace && c.trace() != null) {
            reportInsertions(c.trace(), reported, out);
          }
          out.onNext(GenerateEvent.newBuilder().setFinished(finished(c)).build());
          out.onCompleted();
        } catch (StatusRuntimeException e) { // the client left just as we finished
          LOG.debugf("Generate finished after the client left: %s", e.getStatus());
        }
      }

      @Override
      public void onFailed(Throwable cause) {
        if (cause instanceof CancellationException || (call != null && call.isCancelled())) {
          return; // nobody is listening; the engine has freed the row
        }
        LOG.errorf(cause, "Generate failed (session %s)", plan.sessionId());
        out.onError(Status.INTERNAL.withDescription("decode failure: " + cause).withCause(cause).asRuntimeException());
      }
    };
    EngineCore.Submission submission;
    try {
      submission = generations.start(plan, listener);
    } catch (EngineOverloadedException e) {
      out.onError(Status.UNAVAILABLE.withDescription(e.getMessage()).asRuntimeException());
      return;
    } catch (IllegalArgumentException e) { // the model's own input checks, should the mapper have missed one
      out.onError(Status.INVALID_ARGUMENT.withDescription(e.getMessage()).asRuntimeException());
      return;
    }
    if (call != null) {
      call.setOnCancelHandler(submission::cancel); // a client that leaves frees its row at the next step
    }
  }

  /** The Finished event of a recorded generation. */
  private static Finished finished(Generations.Completion c) {
    Generator.Request req = c.plan().request();
    MemGenInterleaver.Trace trace = c.trace();
    Finished.Builder finished = Finished.newBuilder()
        .setReason(TrajectoryRecord.finishReason(c.result()))
        .setPromptTokens(req.prompt().length)
        .setCompletionTokens(c.result().tokens().length)
        .setLatencyMs(c.latencyMs())
        .setTrajectoryId(c.trajectoryId())
        .setSessionId(c.plan().sessionId());
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
          .setReason(c.plan().memoryRequested() ? SkipReason.WEAVER_UNAVAILABLE : SkipReason.MEMORY_DISABLED)
          .setCount(1));
    }
    return finished.build();
  }

  /** Sends a MemoryEvent for each insertion made since the last call, so they interleave with the tokens in order. */
  private static void reportInsertions(MemGenInterleaver.Trace trace, int[] reported, StreamObserver<GenerateEvent> out) {
    List<MemGenInterleaver.Insertion> all = trace.insertions();
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
