package dev.memgen.engine;

import dev.memgen.engine.core.EngineCore;
import dev.memgen.log.SpooledPublisher;
import dev.memgen.log.Topics;
import dev.memgen.model.Decoder;
import dev.memgen.model.Weaver;
import dev.memgen.model.generate.Generator;
import dev.memgen.model.generate.MemGenInterleaver;
import dev.memgen.model.generate.SamplingParams;
import dev.memgen.model.text.ChatTemplate;
import dev.memgen.model.text.TextTokenizer;
import dev.memgen.proto.v1.Trajectory;
import dev.memgen.rpc.ReasonerMemory;
import java.util.List;
import java.util.OptionalInt;
import java.util.Set;
import java.util.UUID;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.atomic.AtomicLong;

/**
 * The reasoner in the caller's own process: a chat turn through the frozen base with its memory (embedded or
 * remote), greedy, and its Trajectory spooled to the experience log, exactly what reasoner-service records for a
 * Generate. Thread-safe: concurrent calls join one continuously batched {@link EngineCore}, as the service's do.
 */
public final class Reasoner {
  /** One answer: its text, the trajectory id it was recorded under ("" without a log), and what memory did. */
  public record Answer(String text, String trajectoryId, Generator.Result result, MemGenInterleaver.Trace trace,
      long latencyMs) {
    /** The weaver version of the latest insertion (0: none). */
    public long weaverVersion() {
      return trace == null ? 0 : trace.insertions().stream().mapToLong(MemGenInterleaver.Insertion::weaverVersion).max()
          .orElse(0);
    }

    public int inferenceInsertions() {
      return trace == null ? 0
          : (int) trace.insertions().stream().filter(i -> i.kind() == Weaver.Kind.INFERENCE).count();
    }

    /** Delimiters the trigger was asked about (inference insertions plus its refusals). */
    public int consultations() {
      return inferenceInsertions() + (trace == null ? 0
          : trace.skips().getOrDefault(MemGenInterleaver.Skip.TRIGGER_DECLINED, 0));
    }
  }

  private final String fingerprint;
  private final TextTokenizer tokenizer;
  private final ReasonerMemory memory;
  private final String adapterName;
  private final MemGenInterleaver.TriggerMode triggerMode;
  private final double threshold;
  private final SpooledPublisher log;
  private final EngineCore engine;
  private final Set<Integer> stops;
  private final AtomicLong seeds = new AtomicLong();

  /**
   * @param memory the memory generations use (null: the bare base)
   * @param log where trajectories go (null: not recorded); the caller closes it
   */
  public Reasoner(EngineCore engine, String fingerprint, TextTokenizer tokenizer, ReasonerMemory memory, String adapterName,
      MemGenInterleaver.TriggerMode triggerMode, double threshold, SpooledPublisher log) {
    Decoder base = engine.decoder();
    this.fingerprint = fingerprint;
    this.tokenizer = tokenizer;
    this.memory = memory;
    this.adapterName = adapterName;
    this.triggerMode = triggerMode;
    this.threshold = threshold;
    this.log = log;
    this.engine = engine;
    this.stops = ChatTemplate.stopTokens(base.config(), tokenizer);
  }

  /** Answers one user message greedily with at most {@code maxNewTokens} tokens, and records it. */
  public Answer chat(String userMessage, int maxNewTokens) {
    long t0 = System.nanoTime();
    String session = UUID.randomUUID().toString();
    Generator.Request req = new Generator.Request(tokenizer.encode(ChatTemplate.userPrompt(userMessage)), maxNewTokens,
        SamplingParams.GREEDY, stops);
    MemGenInterleaver loop = memory == null ? null
        : memory.open(List.of(session), triggerMode, threshold, seeds.incrementAndGet(), OptionalInt.empty());
    Generator.Result result;
    MemGenInterleaver.Trace trace = null;
    try {
      try {
        result = engine.generate(req, loop).get();
      } catch (InterruptedException e) {
        Thread.currentThread().interrupt();
        throw new IllegalStateException("interrupted while decoding", e);
      } catch (ExecutionException e) {
        throw e.getCause() instanceof RuntimeException r ? r : new IllegalStateException(e.getCause());
      }
      if (loop != null) {
        trace = loop.trace(0);
      }
    } finally {
      if (loop != null) {
        loop.close();
      }
    }
    long latencyMs = (System.nanoTime() - t0) / 1_000_000;
    String id = "";
    if (log != null) {
      id = UUID.randomUUID().toString();
      Trajectory t = TrajectoryRecord.of(session, adapterName, fingerprint, req, result, trace, memory != null, latencyMs)
          .setTrajectoryId(id).build();
      log.offer(Topics.TRAJECTORIES, adapterName, t); // keyed by adapter: one trainer owns its partition
    }
    return new Answer(tokenizer.decode(result.tokens(), true), id, result, trace, latencyMs);
  }
}
