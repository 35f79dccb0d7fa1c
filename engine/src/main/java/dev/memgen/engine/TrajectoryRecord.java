package dev.memgen.engine;

import com.google.protobuf.util.Timestamps;
import dev.memgen.model.Weaver;
import dev.memgen.model.generate.Generator;
import dev.memgen.model.generate.MemGenInterleaver;
import dev.memgen.proto.v1.FinishReason;
import dev.memgen.proto.v1.InsertionPoint;
import dev.memgen.proto.v1.LatentKind;
import dev.memgen.proto.v1.SamplingParams;
import dev.memgen.proto.v1.Trajectory;
import dev.memgen.proto.v1.TriggerDecision;
import java.util.Arrays;

/** The experience log's record of one finished generation: what the trainer needs to replay and learn from it. */
public final class TrajectoryRecord {
  private TrajectoryRecord() {}

  /**
   * Tokens, where latents went, the trigger's decisions, the versions that served, sampling and latency; no
   * trajectory id yet (the recorder sets it).
   *
   * @param trace what memory did, or null for a generation without memory
   * @param memoryRequested whether the client asked for memory (false: the bare base, on purpose)
   */
  public static Trajectory.Builder of(String sessionId, String adapterName, String baseFingerprint, Generator.Request req,
      Generator.Result result, MemGenInterleaver.Trace trace, boolean memoryRequested, long latencyMs) {
    Trajectory.Builder t = Trajectory.newBuilder()
        .setSessionId(sessionId)
        .setAdapterName(adapterName)
        .setBaseFingerprint(baseFingerprint)
        .addAllPromptTokenIds(Arrays.stream(req.prompt()).boxed().toList())
        .addAllCompletionTokenIds(Arrays.stream(result.tokens()).boxed().toList())
        .setSampling(SamplingParams.newBuilder()
            .setTemperature((float) req.sampling().temperature()).setTopK(req.sampling().topK())
            .setTopP((float) req.sampling().topP()).setSeed(req.sampling().seed()))
        .setLatencyMs(latencyMs)
        .setCreatedAt(Timestamps.fromMillis(System.currentTimeMillis()))
        .setFinishReason(finishReason(result))
        .setSchemaVersion(1)
        .setMemoryEnabled(memoryRequested);
    if (trace != null) {
      for (MemGenInterleaver.Insertion i : trace.insertions()) {
        InsertionPoint.Builder p = InsertionPoint.newBuilder().setPosition(i.position()).setTokenIndex(i.tokenIndex())
            .setKind(i.kind() == Weaver.Kind.PROMPT ? LatentKind.PROMPT : LatentKind.INFERENCE).setK(i.k());
        if (!Float.isNaN(i.probability())) {
          p.setTriggerProbability(i.probability());
        }
        t.addInsertions(p);
        t.setWeaverVersion(i.weaverVersion());
      }
      if (!trace.decisions().isEmpty()) { // an active trigger decided (0 stays for inactive or disabled)
        t.setTriggerVersion(trace.triggerVersion());
      }
      for (MemGenInterleaver.Decision d : trace.decisions()) {
        t.addTriggerDecisions(TriggerDecision.newBuilder().setPosition(d.position()).setTokenIndex(d.tokenIndex())
            .setProbability(d.probability()).setInvoke(d.invoke()));
      }
    }
    return t;
  }

  public static FinishReason finishReason(Generator.Result result) {
    return result.reason() == Generator.FinishReason.LENGTH ? FinishReason.LENGTH : FinishReason.STOP_TOKEN;
  }
}
