package dev.memgen.reasoner;

import dev.memgen.engine.core.EngineCore;
import dev.memgen.log.SpooledPublisher;
import dev.memgen.model.Weaver;
import dev.memgen.model.generate.Generator;
import dev.memgen.model.generate.MemGenInterleaver;
import dev.memgen.proto.v1.AdapterComponent;
import dev.memgen.rpc.AdapterFollower;
import dev.memgen.rpc.AdapterHost;
import dev.memgen.rpc.ServiceMetrics;
import io.micrometer.core.instrument.Counter;
import io.micrometer.core.instrument.FunctionCounter;
import io.micrometer.core.instrument.Gauge;
import io.micrometer.core.instrument.MeterRegistry;
import io.micrometer.core.instrument.Timer;
import io.micrometer.core.instrument.config.MeterFilter;
import io.quarkus.runtime.Startup;
import jakarta.annotation.PreDestroy;
import jakarta.enterprise.context.ApplicationScoped;
import jakarta.enterprise.inject.Produces;
import jakarta.inject.Singleton;
import java.time.Duration;
import java.util.EnumMap;
import java.util.Map;
import java.util.Optional;
import java.util.function.ToDoubleFunction;

/**
 * The reasoner's metrics, exposed in Prometheus format at {@code /q/metrics}: the engine (rows running and waiting,
 * tokens decoded and prefilled, prefix reuse), every generation (time to first token, duration, tokens, how it
 * ended), its memory (trigger consultations, insertions by kind, skipped insertion points by reason), the experience
 * log's spool (depth, delivered, refused) and the adapter versions being served. Gauges and function counters read the
 * engine's and the spool's own counters when scraped; generations are recorded as they finish (on the engine thread:
 * a few counter increments).
 */
@Startup
@ApplicationScoped
public class ReasonerMetrics {
  private final MeterRegistry registry;
  private final Timer ttft;
  private final Timer duration;
  private final Counter completionTokens;
  private final Counter consultations;
  private final Map<Weaver.Kind, Counter> insertions = new EnumMap<>(Weaver.Kind.class);
  private final Map<MemGenInterleaver.Skip, Counter> skips = new EnumMap<>(MemGenInterleaver.Skip.class);
  private final Map<Generator.FinishReason, Counter> finished = new EnumMap<>(Generator.FinishReason.class);
  private final Counter failed;
  private final ServiceMetrics.Registered meters;

  ReasonerMetrics(MeterRegistry registry, ReasonerModel model, ReasonerMemoryConfig memory, ExperienceRecorder experience) {
    this.registry = registry;
    this.meters = new ServiceMetrics.Registered(registry);
    EngineCore engine = model.engine();
    gauge("memgen.engine.running", "sequences decoding in the batch", engine, e -> e.stats().running());
    gauge("memgen.engine.prefilling", "sequences whose prompt is being prefilled", engine, e -> e.stats().prefilling());
    gauge("memgen.engine.waiting", "requests queued for a row (admission queue depth)", engine, e -> e.stats().waiting());
    gauge("memgen.engine.batch.rows", "rows of the batch's KV cache (running and free)", engine, e -> e.stats().rows());
    counter("memgen.engine.steps", "engine steps (one batched decode each)", engine, e -> e.stats().steps());
    counter("memgen.engine.tokens", "tokens decoded (the rate is the engine's tokens/s)", engine, e -> e.stats().tokens());
    counter("memgen.engine.prefill.tokens", "prompt tokens prefilled", engine, e -> e.stats().prefillTokens());
    counter("memgen.engine.prefix.reused.tokens", "prompt tokens whose keys and values came from the prefix cache",
        engine, e -> e.stats().reusedPrefixTokens());
    counter("memgen.engine.repacks", "times the batch's cache was repacked", engine, e -> e.stats().repacks());

    ttft = meters.add(Timer.builder("memgen.generation.time.to.first.token").description("from submission to the first token")
        .publishPercentileHistogram().minimumExpectedValue(Duration.ofMillis(1)).maximumExpectedValue(Duration.ofMinutes(2))
        .register(registry));
    duration = meters.add(Timer.builder("memgen.generation.duration").description("from submission to the last token")
        .publishPercentileHistogram().minimumExpectedValue(Duration.ofMillis(1)).maximumExpectedValue(Duration.ofMinutes(10))
        .register(registry));
    completionTokens = meters.add(Counter.builder("memgen.generation.completion.tokens")
        .description("tokens generated, per request").register(registry));
    for (Generator.FinishReason r : Generator.FinishReason.values()) {
      finished.put(r, meters.add(Counter.builder("memgen.generation.finished").tag("reason", r.name().toLowerCase())
          .description("generations that ended, by why").register(registry)));
    }
    failed = meters.add(Counter.builder("memgen.generation.failed").description("generations cancelled or failed")
        .register(registry));
    consultations = meters.add(Counter.builder("memgen.memory.trigger.consultations")
        .description("delimiters the trigger was asked about (inference insertions / consultations = invocation rate)")
        .register(registry));
    for (Weaver.Kind k : Weaver.Kind.values()) {
      insertions.put(k, meters.add(Counter.builder("memgen.memory.insertions").tag("kind", k.name().toLowerCase())
          .description("latent insertions, by kind").register(registry)));
    }
    for (MemGenInterleaver.Skip s : MemGenInterleaver.Skip.values()) {
      skips.put(s, meters.add(Counter.builder("memgen.memory.skips").tag("reason", s.name().toLowerCase())
          .description("insertion points skipped, by reason").register(registry)));
    }

    Optional<SpooledPublisher.Stats> spool = experience.stats();
    if (spool.isPresent()) {
      gauge("memgen.log.spool.depth", "records accepted and not yet acknowledged by the broker", experience,
          x -> x.stats().map(SpooledPublisher.Stats::pending).orElse(0L));
      counter("memgen.log.records.accepted", "records accepted into the spool", experience,
          x -> x.stats().map(SpooledPublisher.Stats::accepted).orElse(0L));
      counter("memgen.log.records.delivered", "records the broker acknowledged", experience,
          x -> x.stats().map(SpooledPublisher.Stats::delivered).orElse(0L));
      counter("memgen.log.records.refused", "records refused because the spool was full", experience,
          x -> x.stats().map(SpooledPublisher.Stats::overflowed).orElse(0L));
      counter("memgen.log.delivery.failures", "failed delivery attempts (retried)", experience,
          x -> x.stats().map(SpooledPublisher.Stats::failedAttempts).orElse(0L));
    }
    for (Map.Entry<AdapterComponent, AdapterHost> e : memory.hosts().entrySet()) {
      meters.add(ServiceMetrics.adapterVersion(registry, e.getKey().name().toLowerCase(), memory.adapterName(),
          e.getValue()));
    }
    for (AdapterFollower f : memory.followers()) {
      meters.addAll(ServiceMetrics.bindFollower(registry, f.component().name().toLowerCase(), f));
    }
  }

  /** Every meter as Prometheus's linter wants it (see {@link ServiceMetrics#prometheusLint}). */
  @Produces
  @Singleton
  static MeterFilter prometheusLint() {
    return ServiceMetrics.prometheusLint();
  }

  private <T> void gauge(String name, String help, T source, ToDoubleFunction<T> value) {
    meters.add(Gauge.builder(name, source, value).description(help).register(registry));
  }

  private <T> void counter(String name, String help, T source, ToDoubleFunction<T> value) {
    meters.add(FunctionCounter.builder(name, source, value).description(help).register(registry));
  }

  /** A generation's first token, {@code nanos} after it was submitted. */
  void firstToken(long nanos) {
    ttft.record(Duration.ofNanos(nanos));
  }

  /** A generation that ended, {@code nanos} after submission, with what its memory did (null: no memory). */
  void finished(Generator.Result result, MemGenInterleaver.Trace trace, long nanos) {
    duration.record(Duration.ofNanos(nanos));
    completionTokens.increment(result.tokens().length);
    finished.get(result.reason()).increment();
    if (trace != null) {
      int inference = 0;
      for (MemGenInterleaver.Insertion i : trace.insertions()) {
        insertions.get(i.kind()).increment();
        inference += i.kind() == Weaver.Kind.INFERENCE ? 1 : 0;
      }
      consultations.increment(inference + trace.skips().getOrDefault(MemGenInterleaver.Skip.TRIGGER_DECLINED, 0));
      trace.skips().forEach((reason, n) -> skips.get(reason).increment(n));
    }
  }

  void failed() {
    failed.increment();
  }

  @PreDestroy
  void close() {
    meters.close();
  }
}
