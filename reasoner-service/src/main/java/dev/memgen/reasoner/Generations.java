package dev.memgen.reasoner;

import dev.memgen.engine.TrajectoryRecord;
import dev.memgen.engine.core.EngineCore;
import dev.memgen.model.generate.Generator;
import dev.memgen.model.generate.MemGenInterleaver;
import dev.memgen.proto.v1.GenerateRequest;
import dev.memgen.rpc.ApiKeys;
import io.grpc.Status;
import io.opentelemetry.api.OpenTelemetry;
import io.opentelemetry.context.Context;
import jakarta.enterprise.context.ApplicationScoped;
import java.util.HashMap;
import java.util.Map;
import org.eclipse.microprofile.config.inject.ConfigProperty;
import org.jboss.logging.Logger;
import org.jboss.logging.MDC;

/**
 * One generation from a mapped request to its recorded trajectory, shared by the gRPC Generate and the OpenAI API:
 * open the request's memory session, submit it to the model's {@link EngineCore}, and when it ends record its
 * Trajectory and hand the caller everything it reports. The protocols differ only in how they write what they get.
 */
@ApplicationScoped
public class Generations {
  private static final Logger LOG = Logger.getLogger(Generations.class);
  private final ReasonerModel model; // proxies: the checkpoint loads at startup, not on the event loop
  private final ReasonerMemoryConfig memory;
  private final ExperienceRecorder experience;
  private final ReasonerMetrics metrics;
  private final OpenTelemetry telemetry;
  private final int defaultMaxNewTokens;
  private volatile GenerateRequestMapper mapper;

  Generations(ReasonerModel model, ReasonerMemoryConfig memory, ExperienceRecorder experience, ReasonerMetrics metrics,
      OpenTelemetry telemetry,
      @ConfigProperty(name = "memgen.generate.default-max-new-tokens", defaultValue = "256") int defaultMaxNewTokens) {
    if (defaultMaxNewTokens < 1) {
      throw new IllegalStateException("memgen.generate.default-max-new-tokens must be >= 1, got " + defaultMaxNewTokens);
    }
    this.model = model;
    this.memory = memory;
    this.experience = experience;
    this.metrics = metrics;
    this.telemetry = telemetry;
    this.defaultMaxNewTokens = defaultMaxNewTokens;
  }

  /** A finished generation, recorded under {@code trajectoryId} ("" without an experience log). */
  public record Completion(GenerateRequestMapper.Plan plan, Generator.Result result, MemGenInterleaver.Trace trace,
      String trajectoryId, long latencyMs) {}

  /** Hears a generation on the engine thread: return quickly, never block. */
  public interface Listener {
    /** A token was chosen; {@code memory} (null without) has the insertions made so far. Return false to end it. */
    boolean onToken(int token, MemGenInterleaver memory);

    void onFinished(Completion completion);

    /** Cancelled (a CancellationException) or failed. */
    void onFailed(Throwable cause);
  }

  /** @throws io.grpc.StatusRuntimeException with the status the request's fault maps to */
  public GenerateRequestMapper.Plan map(GenerateRequest request) {
    return mapper().map(request);
  }

  public ReasonerModel model() {
    return model;
  }

  /**
   * The request's adapter ("" is this reasoner's) must be the one served here and, when it will have memory, allowed
   * to the gRPC caller's API key.
   *
   * @throws io.grpc.StatusRuntimeException NOT_FOUND or PERMISSION_DENIED
   */
  public void checkAdapter(GenerateRequest request) {
    String asked = request.getAdapterName();
    if (!asked.isEmpty() && memory.configured() && !asked.equals(memory.adapterName())) {
      throw Status.NOT_FOUND.withDescription("adapter_name '" + asked + "' is not served here (this reasoner's memory "
          + "is '" + memory.adapterName() + "', memgen.memory.adapter-name)").asRuntimeException();
    }
    if (memory.configured() && (!request.hasMemoryEnabled() || request.getMemoryEnabled())) {
      ApiKeys.require(memory.adapterName(), "adapter_name");
    }
  }

  public String adapterName() {
    return memory.adapterName();
  }

  /** Whether this reasoner has a memory to serve (else every request runs on the base alone). */
  public boolean memoryConfigured() {
    return memory.configured();
  }

  /**
   * Runs {@code log} with the generation's session and trajectory ids in the logging context (MDC keys
   * {@code session_id}, {@code trajectory_id}): with JSON logs on, every record carries them under {@code "mdc"}.
   */
  private static void withIds(String sessionId, String trajectoryId, Runnable log) {
    MDC.put("session_id", sessionId);
    if (!trajectoryId.isEmpty()) {
      MDC.put("trajectory_id", trajectoryId);
    }
    try {
      log.run();
    } finally {
      MDC.remove("session_id");
      MDC.remove("trajectory_id");
    }
  }

  /**
   * Starts a mapped request.
   *
   * @throws dev.memgen.engine.core.EngineOverloadedException when the engine is full
   */
  public EngineCore.Submission start(GenerateRequestMapper.Plan plan, Listener listener) {
    long start = System.nanoTime();
    // The request's trace (the caller's traceparent, continued by this server's span): the memory sessions opened
    // here carry it to the weaver and trigger, and the trajectory record carries it into Kafka.
    Context traceContext = Context.current();
    Generator.Request req = plan.request();
    MemGenInterleaver loop = plan.memoryRequested() ? memory.open(plan.sessionId(), req.sampling().seed()) : null;
    EngineCore.Output output = new EngineCore.Output() {
      private boolean first = true;

      @Override
      public boolean onToken(int token) {
        if (first) {
          first = false;
          metrics.firstToken(System.nanoTime() - start);
        }
        return listener.onToken(token, loop);
      }

      @Override
      public void onFinished(Generator.Result result) {
        MemGenInterleaver.Trace trace = null;
        if (loop != null) {
          trace = loop.trace(0);
          loop.close();
        }
        metrics.finished(result, trace, System.nanoTime() - start);
        long latencyMs = (System.nanoTime() - start) / 1_000_000;
        Map<String, String> headers = new HashMap<>();
        telemetry.getPropagators().getTextMapPropagator().inject(traceContext, headers, Map::put);
        String id = experience.recordTrajectory(TrajectoryRecord.of(plan.sessionId(), memory.adapterName(),
            model.fingerprint(), req, result, trace, plan.memoryRequested(), latencyMs), headers);
        if (LOG.isDebugEnabled()) {
          int insertions = trace == null ? 0 : trace.insertions().size();
          withIds(plan.sessionId(), id, () -> LOG.debugf("finished: %d tokens in %d ms (%s), %d latent insertions",
              result.tokens().length, latencyMs, result.reason(), insertions));
        }
        listener.onFinished(new Completion(plan, result, trace, id, latencyMs));
      }

      @Override
      public void onFailed(Throwable cause) {
        metrics.failed();
        if (!(cause instanceof java.util.concurrent.CancellationException)) {
          withIds(plan.sessionId(), "", () -> LOG.warnf("failed: %s", cause.toString()));
        }
        if (loop != null) {
          loop.close();
        }
        listener.onFailed(cause);
      }
    };
    try {
      return model.engine().submit(req, loop, output);
    } catch (RuntimeException e) {
      if (loop != null) {
        loop.close();
      }
      throw e;
    }
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
}
