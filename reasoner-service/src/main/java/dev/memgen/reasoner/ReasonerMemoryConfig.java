package dev.memgen.reasoner;

import dev.memgen.model.generate.MemGenInterleaver;
import dev.memgen.model.text.DelimiterTable;
import dev.memgen.proto.v1.AdapterComponent;
import dev.memgen.rpc.AdapterFollower;
import dev.memgen.rpc.AdapterHost;
import dev.memgen.rpc.CallDeadline;
import dev.memgen.rpc.ClientSecurity;
import dev.memgen.rpc.ReasonerMemory;
import io.opentelemetry.api.OpenTelemetry;
import io.quarkus.runtime.Startup;
import jakarta.annotation.PreDestroy;
import jakarta.enterprise.context.ApplicationScoped;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.OptionalInt;
import org.eclipse.microprofile.config.inject.ConfigProperty;
import org.jboss.logging.Logger;

/**
 * The reasoner's latent memory, from configuration:
 * <ul>
 *   <li>{@code memgen.memory.dir}: embedded — the weaver and trigger of that memory run in this process, on the
 *       reasoner's own copy of the base weights;
 *   <li>else {@code memgen.weaver.target} (and optionally {@code memgen.trigger.target}): remote — weaver-service
 *       and trigger-service over gRPC, each call bounded by {@code memgen.memory.deadline-ms} plus
 *       {@code memgen.memory.deadline-per-row-ms} for each row the service must run for it;
 *   <li>neither: no memory; every generation reports its prompt-latent point as WEAVER_UNAVAILABLE.
 * </ul>
 * An embedded memory with {@code memgen.log.bootstrap} and {@code memgen.adapters.store} set follows the adapters
 * topic as the services do: the weaver and trigger versions the trainer announces are swapped in while serving, and
 * a generation keeps the versions it started with.
 */
@Startup
@ApplicationScoped
public class ReasonerMemoryConfig {
  private static final Logger LOG = Logger.getLogger(ReasonerMemoryConfig.class);

  private final ReasonerMemory memory; // null: none configured
  private final MemGenInterleaver.TriggerMode triggerMode;
  private final double threshold;
  private final OptionalInt maxInferenceAug;
  private final String adapterName;
  private final List<AdapterFollower> followers = new ArrayList<>();

  ReasonerMemoryConfig(ReasonerModel model, OpenTelemetry telemetry,
      @ConfigProperty(name = "memgen.memory.dir") Optional<String> memoryDir,
      @ConfigProperty(name = "memgen.weaver.target") Optional<String> weaverTarget,
      @ConfigProperty(name = "memgen.trigger.target") Optional<String> triggerTarget,
      @ConfigProperty(name = "memgen.memory.adapter-name") Optional<String> adapterName,
      @ConfigProperty(name = "memgen.memory.deadline-ms", defaultValue = "5000") long deadlineMs,
      @ConfigProperty(name = "memgen.memory.deadline-per-row-ms", defaultValue = "20") double deadlinePerRowMs,
      @ConfigProperty(name = "memgen.memory.max-inference-aug") Optional<Integer> maxInferenceAug,
      @ConfigProperty(name = "memgen.trigger.mode", defaultValue = "threshold") String triggerMode,
      @ConfigProperty(name = "memgen.trigger.threshold", defaultValue = "0.5") double threshold,
      @ConfigProperty(name = "memgen.log.bootstrap") Optional<String> bootstrap,
      @ConfigProperty(name = "memgen.adapters.store") Optional<String> storeDir,
      @ConfigProperty(name = "memgen.adapters.cache-dir") Optional<String> cacheDir,
      @ConfigProperty(name = "memgen.adapters.catch-up-timeout", defaultValue = "30s") Duration catchUpTimeout,
      @ConfigProperty(name = "memgen.memory.tls.enabled") Optional<Boolean> tls,
      @ConfigProperty(name = "memgen.memory.tls.ca") Optional<String> tlsCa,
      @ConfigProperty(name = "memgen.memory.tls.cert") Optional<String> tlsCert,
      @ConfigProperty(name = "memgen.memory.tls.key") Optional<String> tlsKey,
      @ConfigProperty(name = "memgen.memory.api-key") Optional<String> apiKey)
      throws InterruptedException {
    try {
      this.triggerMode = MemGenInterleaver.TriggerMode.parse(triggerMode, "memgen.trigger.mode");
    } catch (IllegalArgumentException e) {
      throw new IllegalStateException(e.getMessage(), e);
    }
    if (deadlineMs < 1 || !(deadlinePerRowMs >= 0) || !(threshold >= 0 && threshold <= 1) || maxInferenceAug.orElse(0) < 0) {
      throw new IllegalStateException("memgen.memory.deadline-ms must be >= 1, memgen.memory.deadline-per-row-ms >= 0, "
          + "memgen.trigger.threshold in [0, 1] and memgen.memory.max-inference-aug >= 0");
    }
    this.threshold = threshold;
    this.adapterName = adapterName.filter(n -> !n.isEmpty()).orElse("default");
    if (memoryDir.isPresent()) {
      try {
        memory = ReasonerMemory.embedded(model.decoder(), model.fingerprint(), Path.of(memoryDir.get()), this.adapterName,
            names -> delimiters(model, names));
      } catch (RuntimeException e) {
        throw new IllegalStateException("memgen.memory.dir=" + memoryDir.get() + " is not a usable memory: " + e.getMessage(), e);
      }
    } else if (weaverTarget.isPresent()) {
      ClientSecurity security;
      try {
        security = ClientSecurity.of("memgen.memory", tls, tlsCa, tlsCert, tlsKey, apiKey);
      } catch (IllegalArgumentException e) {
        throw new IllegalStateException(e.getMessage(), e);
      }
      memory = ReasonerMemory.remote(weaverTarget.get(), triggerTarget.orElse(null), model.fingerprint(),
          model.config().hiddenSize(), adapterName.orElse(""),
          new CallDeadline(Duration.ofMillis(deadlineMs), Duration.ofNanos((long) (deadlinePerRowMs * 1e6))), security,
          List.of(ReasonerMemory.tracing(telemetry)), names -> delimiters(model, names));
    } else {
      memory = null;
    }
    this.maxInferenceAug = maxInferenceAug.map(OptionalInt::of).orElse(OptionalInt.empty());
    if (memory != null && storeDir.isPresent() && memory.hosts().isEmpty()) {
      LOG.warnf("memgen.adapters.store is set but the memory is remote: weaver-service and trigger-service follow the "
          + "announcements themselves");
    }
    // memgen.log.bootstrap alone is normal here (trajectories are recorded there): only the store turns following on.
    if (memory != null && storeDir.isPresent()) {
      try {
        followers.addAll(AdapterFollower.forHosts(memory.hosts(), bootstrap, storeDir, cacheDir, catchUpTimeout));
      } catch (RuntimeException | InterruptedException e) {
        close();
        throw e;
      }
    }
    LOG.infof("memory: %s", memory == null ? "none configured (set memgen.memory.dir or memgen.weaver.target)"
        : memory + ", trigger " + (memory.hasTrigger() ? this.triggerMode.name().toLowerCase() : "none (always invoke)")
        + ", max_inference_aug " + (maxInferenceAug.isPresent() ? maxInferenceAug.get() : "the memory's"));
  }

  /** Delimiters need the tokenizer to find their token ids; without one only prompt latents go in. */
  private static DelimiterTable delimiters(ReasonerModel model, java.util.List<String> names) {
    int vocab = model.config().vocabSize();
    if (model.tokenizer() == null) {
      LOG.warnf("no tokenizer.json: delimiters %s cannot be found, so only prompt latents are inserted", names);
      return DelimiterTable.ofTokenIds(vocab, id -> false);
    }
    return DelimiterTable.build(model.tokenizer(), vocab, names);
  }

  /** The named memory this reasoner uses ("default" unless memgen.memory.adapter-name says otherwise). */
  public String adapterName() {
    return adapterName;
  }

  /** Whether requests can have memory here (an embedded memory or a weaver service is configured). */
  public boolean configured() {
    return memory != null;
  }

  /** The memory services this reasoner calls and their health checks' answers (empty: embedded or no memory). */
  public Map<String, String> services(Duration timeout) {
    return memory == null ? Map.of() : memory.services(timeout);
  }

  /** The adapters an embedded memory serves, by component (empty: remote or no memory). */
  public Map<AdapterComponent, AdapterHost> hosts() {
    return memory == null ? Map.of() : memory.hosts();
  }

  /** The followers of weaver and trigger announcements (an embedded memory with an adapter store), else empty. */
  public List<AdapterFollower> followers() {
    return List.copyOf(followers);
  }

  /** Memory sessions for one generation, or null when no memory is configured (its seed drives a sampling trigger). */
  public MemGenInterleaver open(String sessionId, long seed) {
    return memory == null ? null : memory.open(List.of(sessionId), triggerMode, threshold, seed, maxInferenceAug);
  }

  @PreDestroy
  void close() {
    followers.forEach(AdapterFollower::close);
    if (memory != null) {
      memory.close();
    }
  }
}
