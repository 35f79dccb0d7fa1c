package dev.memgen.rpc;

import dev.memgen.model.Decoder;
import dev.memgen.model.generate.MemGenInterleaver;
import dev.memgen.model.memory.MemoryManifest;
import dev.memgen.model.memory.TriggerLink;
import dev.memgen.model.memory.WeaverLink;
import dev.memgen.model.text.DelimiterTable;
import dev.memgen.proto.v1.AdapterComponent;
import dev.memgen.proto.v1.DescribeRequest;
import dev.memgen.proto.v1.MemoryDescription;
import dev.memgen.proto.v1.RowSource;
import dev.memgen.proto.v1.WeaverGrpc;
import io.grpc.ClientInterceptor;
import io.grpc.ManagedChannel;
import io.grpc.StatusRuntimeException;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.OptionalInt;
import java.util.concurrent.TimeUnit;
import java.util.function.Function;
import java.util.function.Supplier;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * How a reasoner reaches its memory, one interface whatever the transport: embedded (the weaver and trigger run
 * on the reasoner's own copy of the base weights) or remote (weaver-service and trigger-service over gRPC). The
 * generate loop gets the same {@link MemGenInterleaver} either way, and for a fixed seed the same tokens.
 */
public final class ReasonerMemory implements AutoCloseable {
  private static final Logger LOG = LoggerFactory.getLogger(ReasonerMemory.class);

  /**
   * The memory's insertion rule (where inference latents may go, how many times per sequence) and what its weaver
   * reads (the reasoner's hidden states, or its input embeddings).
   */
  public record Rule(DelimiterTable delimiters, int maxInferenceAug, boolean readsHidden) {}

  private final WeaverLink weaver;
  private final TriggerLink trigger; // null: no trigger, every delimiter invokes the weaver (up to the cap)
  private final Supplier<Rule> rule;
  private final String description;
  private final Map<AdapterComponent, AdapterHost> hosts;
  private final Map<String, ManagedChannel> services; // remote: "weaver-service at HOST:PORT" -> its channel
  private final AutoCloseable resources;

  private ReasonerMemory(WeaverLink weaver, TriggerLink trigger, Supplier<Rule> rule, String description,
      Map<AdapterComponent, AdapterHost> hosts, Map<String, ManagedChannel> services, AutoCloseable resources) {
    this.weaver = weaver;
    this.trigger = trigger;
    this.rule = rule;
    this.description = description;
    this.hosts = hosts;
    this.services = services;
    this.resources = resources;
  }

  /**
   * The memory services this memory calls (none when embedded), each with what the standard gRPC health check answers
   * now ({@code SERVING}, {@code NOT_SERVING}, or the status of a call that failed, e.g. {@code UNAVAILABLE}), asked
   * with a deadline of {@code timeout}.
   */
  public Map<String, String> services(Duration timeout) {
    Map<String, String> out = new java.util.LinkedHashMap<>();
    services.forEach((name, channel) -> {
      try {
        out.put(name, io.grpc.health.v1.HealthGrpc.newBlockingStub(channel)
            .withDeadlineAfter(timeout.toMillis(), TimeUnit.MILLISECONDS)
            .check(io.grpc.health.v1.HealthCheckRequest.getDefaultInstance()).getStatus().name());
      } catch (StatusRuntimeException e) {
        out.put(name, e.getStatus().getCode().name());
      }
    });
    return out;
  }

  /**
   * Where announced versions are installed, by component: the embedded memory's weaver and trigger; none for a
   * remote memory (weaver-service and trigger-service follow the announcements themselves).
   */
  public Map<AdapterComponent, AdapterHost> hosts() {
    return hosts;
  }

  /**
   * The memory in {@code memoryDir}, on {@code base} (one copy of the weights for reasoner, weaver and trigger), as
   * adapter {@code adapterName}. Its weaver and trigger versions can be swapped while it serves ({@link #hosts}); the
   * insertion rule is the current weaver version's.
   *
   * @param delimiters builds the base vocabulary's delimiter table from the manifest's delimiter strings
   */
  public static ReasonerMemory embedded(Decoder base, String baseFingerprint, Path memoryDir, String adapterName,
      Function<List<String>, DelimiterTable> delimiters) {
    EmbeddedMemory memory = new EmbeddedMemory(base, baseFingerprint, adapterName, memoryDir);
    return new ReasonerMemory(memory.weaverLink(), memory.triggerLink(), new ManifestRule(memory, delimiters),
        "embedded memory " + memoryDir + " (version " + memory.manifest().version() + ")",
        Map.of(AdapterComponent.WEAVER, memory.weaver, AdapterComponent.TRIGGER, memory.trigger), Map.of(), memory);
  }

  /** {@link #embedded(Decoder, String, Path, String, Function)} as adapter "default". */
  public static ReasonerMemory embedded(Decoder base, String baseFingerprint, Path memoryDir,
      Function<List<String>, DelimiterTable> delimiters) {
    return embedded(base, baseFingerprint, memoryDir, "default", delimiters);
  }

  /** The insertion rule of the embedded weaver's current version; the delimiter table is built again only when it changes. */
  private static final class ManifestRule implements Supplier<Rule> {
    private final EmbeddedMemory memory;
    private final Function<List<String>, DelimiterTable> delimiters;
    private List<String> tableOf; // the delimiter strings the table was built from
    private DelimiterTable table;

    ManifestRule(EmbeddedMemory memory, Function<List<String>, DelimiterTable> delimiters) {
      this.memory = memory;
      this.delimiters = delimiters;
    }

    @Override
    public synchronized Rule get() {
      MemoryManifest m = memory.manifest();
      if (!m.delimiters().equals(tableOf)) {
        table = delimiters.apply(m.delimiters());
        tableOf = m.delimiters();
      }
      return new Rule(table, m.maxInferenceAug(), m.weaverInput().equals("hidden"));
    }
  }

  /**
   * A weaver-service at {@code weaverTarget} and, unless null, a trigger-service at {@code triggerTarget}
   * ({@code host:port} or any gRPC target), reached as {@code security} says, every call through
   * {@code interceptors} (tracing: {@link #tracing}). The insertion rule is the memory's own, asked of the weaver
   * (Describe) when first needed and again after a failure; until it answers, sequences get prompt latents only.
   *
   * @param delimiters builds the base vocabulary's delimiter table from the memory's delimiter strings
   */
  public static ReasonerMemory remote(String weaverTarget, String triggerTarget, String baseFingerprint, int hiddenSize,
      String adapterName, CallDeadline deadline, ClientSecurity security, List<ClientInterceptor> interceptors,
      Function<List<String>, DelimiterTable> delimiters) {
    ManagedChannel weaverChannel = security.channel(weaverTarget, interceptors);
    ManagedChannel triggerChannel = triggerTarget == null ? null
        : triggerTarget.equals(weaverTarget) ? weaverChannel : security.channel(triggerTarget, interceptors);
    return new ReasonerMemory(
        new RemoteWeaver(weaverChannel, baseFingerprint, hiddenSize, adapterName, deadline),
        triggerChannel == null ? null : new RemoteTrigger(triggerChannel, baseFingerprint, adapterName, deadline),
        new DescribedRule(weaverChannel, adapterName, deadline.fixed(), delimiters),
        "weaver-service at " + weaverTarget + (triggerTarget == null ? ", no trigger" : ", trigger-service at " + triggerTarget),
        Map.of(), triggerChannel == null ? Map.of("weaver-service at " + weaverTarget, weaverChannel)
            : Map.of("weaver-service at " + weaverTarget, weaverChannel, "trigger-service at " + triggerTarget, triggerChannel),
        () -> {
          for (ManagedChannel c : triggerChannel == null || triggerChannel == weaverChannel
              ? List.of(weaverChannel) : List.of(weaverChannel, triggerChannel)) {
            c.shutdownNow().awaitTermination(5, TimeUnit.SECONDS);
          }
        });
  }

  /**
   * A plaintext channel to a memory service. Replies are handled on the transport's own thread (direct executor, as
   * in every {@link ClientSecurity#channel}): the client only completes a future there, and skipping the hand-off to
   * a callback pool saves a thread wake-up per call, which on a small loaded machine is a large share of a memory
   * round trip.
   */
  public static ManagedChannel channel(String target) {
    return ClientSecurity.PLAINTEXT.channel(target);
  }

  /**
   * The interceptor that makes every memory call a client span of the trace of the request it serves (sessions carry
   * the request's context, see RemoteSession) and sends that context to the service in the call's metadata
   * ({@code traceparent}), where the service's own tracing continues it.
   */
  public static ClientInterceptor tracing(io.opentelemetry.api.OpenTelemetry telemetry) {
    return io.opentelemetry.instrumentation.grpc.v1_6.GrpcTelemetry.create(telemetry).newClientInterceptor();
  }

  /** The rule a remote weaver describes, fetched once and kept; asked again (at most every few seconds) until it answers. */
  private static final class DescribedRule implements Supplier<Rule> {
    private static final Rule PROMPT_ONLY = new Rule(null, 0, false);
    private final WeaverGrpc.WeaverBlockingStub stub;
    private final String adapterName;
    private final Duration deadline;
    private final Function<List<String>, DelimiterTable> delimiters;
    private final Backoff backoff = new Backoff(Duration.ofMillis(500), Duration.ofSeconds(5));
    private volatile Rule rule;

    DescribedRule(ManagedChannel channel, String adapterName, Duration deadline, Function<List<String>, DelimiterTable> delimiters) {
      this.stub = WeaverGrpc.newBlockingStub(channel);
      this.adapterName = adapterName;
      this.deadline = deadline;
      this.delimiters = delimiters;
    }

    @Override
    public synchronized Rule get() {
      if (rule != null) {
        return rule;
      }
      if (backoff.waitMillis() > 0) {
        return PROMPT_ONLY;
      }
      try {
        MemoryDescription d = stub.withDeadlineAfter(deadline.toMillis(), TimeUnit.MILLISECONDS)
            .describe(DescribeRequest.newBuilder().setAdapterName(adapterName).build());
        rule = new Rule(delimiters.apply(d.getDelimitersList()), d.getMaxInferenceAug(),
            d.getRowSource() == RowSource.LAST_HIDDEN_STATES);
        backoff.succeeded();
        LOG.info("memory '{}' version {}: K {}/{}, delimiters {}, max_inference_aug {}", d.getAdapterName(),
            d.getAdapterVersion(), d.getPromptK(), d.getInferenceK(), d.getDelimitersList(), d.getMaxInferenceAug());
        return rule;
      } catch (StatusRuntimeException e) {
        backoff.failed();
        LOG.warn("the weaver did not describe its memory ({}); prompt latents only until it does",
            ClientStream.describe(e));
        return PROMPT_ONLY;
      }
    }
  }

  public boolean hasTrigger() {
    return trigger != null;
  }

  /**
   * One session per sequence of a batch, and the memory's rule to drive them.
   *
   * @param maxInferenceAug a cap overriding the memory's own, or empty
   * @param mode how to use the trigger; without a trigger, INACTIVE (every delimiter invokes, up to the cap)
   * @param seed drives a sampling trigger
   */
  public MemGenInterleaver open(List<String> sessionIds, MemGenInterleaver.TriggerMode mode, double threshold, long seed,
      OptionalInt maxInferenceAug) {
    Rule r = rule.get();
    List<WeaverLink.Session> weavers = new ArrayList<>();
    List<TriggerLink.Session> triggers = new ArrayList<>();
    boolean useTrigger = trigger != null && mode != MemGenInterleaver.TriggerMode.INACTIVE;
    for (String id : sessionIds) {
      weavers.add(weaver instanceof RemoteWeaver remote ? remote.open(id, r.readsHidden()) : weaver.open(id));
      triggers.add(useTrigger ? trigger.open(id) : null);
    }
    int cap = r.delimiters() == null ? 0 : maxInferenceAug.orElse(r.maxInferenceAug());
    DelimiterTable table = r.delimiters() != null ? r.delimiters() : NO_DELIMITERS;
    return new MemGenInterleaver(weavers, triggers, table, new MemGenInterleaver.Options(true, cap,
        useTrigger ? mode : MemGenInterleaver.TriggerMode.INACTIVE, threshold, seed));
  }

  private static final DelimiterTable NO_DELIMITERS = DelimiterTable.ofTokenIds(0, id -> false);

  @Override
  public String toString() {
    return description;
  }

  @Override
  public void close() {
    try {
      resources.close();
    } catch (Exception e) {
      if (e instanceof InterruptedException) {
        Thread.currentThread().interrupt();
      }
    }
  }
}
