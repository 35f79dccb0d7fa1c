package dev.memgen.weaver;

import dev.memgen.proto.v1.AdapterComponent;
import dev.memgen.rpc.AdapterFollower;
import dev.memgen.rpc.ServedMemory;
import dev.memgen.rpc.ServiceLimits;
import dev.memgen.rpc.WeaverService;
import io.quarkus.runtime.Startup;
import jakarta.annotation.PreDestroy;
import jakarta.enterprise.context.ApplicationScoped;
import java.nio.file.Path;
import java.time.Duration;
import java.util.Optional;
import org.eclipse.microprofile.config.inject.ConfigProperty;
import org.jboss.logging.Logger;

/**
 * The base checkpoint and the memory this service weaves with, loaded once at startup on the main thread (a bad
 * directory stops the start, naming it), and, when an experience log and an adapter store are configured, the
 * {@link AdapterFollower} that swaps in the weaver versions the trainer announces. {@link ApplicationScoped} so the gRPC
 * endpoint, built on an event-loop thread, gets a proxy and never loads a checkpoint there.
 */
@Startup
@ApplicationScoped
public class WeaverModel {
  private static final Logger LOG = Logger.getLogger(WeaverModel.class);

  private final ServedMemory served;
  private final WeaverService service;
  private final AdapterFollower follower; // null when announcements are not followed

  WeaverModel(@ConfigProperty(name = "memgen.model.dir") String modelDir,
      @ConfigProperty(name = "memgen.memory.dir") String memoryDir,
      @ConfigProperty(name = "memgen.memory.adapter-name", defaultValue = "default") String adapterName,
      @ConfigProperty(name = "memgen.sessions.max", defaultValue = "64") int maxSessions,
      @ConfigProperty(name = "memgen.sessions.max-length", defaultValue = "0") int maxLength,
      @ConfigProperty(name = "memgen.sessions.max-append-rows", defaultValue = "8192") int maxAppendRows,
      @ConfigProperty(name = "memgen.adapters.max-resident", defaultValue = "4") int maxResident,
      @ConfigProperty(name = "memgen.log.bootstrap") Optional<String> bootstrap,
      @ConfigProperty(name = "memgen.adapters.store") Optional<String> storeDir,
      @ConfigProperty(name = "memgen.adapters.cache-dir") Optional<String> cacheDir,
      @ConfigProperty(name = "memgen.adapters.catch-up-timeout", defaultValue = "30s") Duration catchUpTimeout,
      @ConfigProperty(name = "memgen.warm-up.budget", defaultValue = "10s") Duration warmUpBudget,
      @ConfigProperty(name = "memgen.warm-up.calls", defaultValue = "600") int warmUpCalls, WeaverReady ready)
      throws InterruptedException {
    if (maxResident < 1) {
      throw new IllegalStateException("memgen.adapters.max-resident=" + maxResident + ": at least one adapter must fit");
    }
    ServiceLimits limits = new ServiceLimits(maxSessions, maxLength, maxAppendRows);
    served = ServedMemory.forService(modelDir, memoryDir);
    // The service owns the starting memory, so it can free it once a newer version has replaced it.
    service = new WeaverService(served.base(), served.fingerprint(), limits, maxResident, adapterName,
        served.handOverMemory(), Path.of(memoryDir));
    LOG.infof("weaving with %s as '%s' (version %d, K %d/%d) on %s", memoryDir, adapterName,
        served.memory().manifest().version(), served.memory().manifest().promptK(),
        served.memory().manifest().inferenceK(), modelDir);

    try {
      follower = AdapterFollower.fromConfig(bootstrap, storeDir, cacheDir, service, AdapterComponent.WEAVER, catchUpTimeout)
          .orElse(null);
    } catch (RuntimeException e) {
      close(); // what is loaded so far
      throw e;
    }
    service.warmUp(warmUpBudget, warmUpCalls); // with the version it will serve first
    ready.set(service); // from now on the endpoint hands calls to it
  }

  public WeaverService service() {
    return service;
  }

  /** The follower of adapter announcements, or empty when memgen.log.bootstrap or memgen.adapters.store is unset. */
  public Optional<AdapterFollower> follower() {
    return Optional.ofNullable(follower);
  }

  @PreDestroy
  void close() {
    if (follower != null) {
      follower.close();
    }
    service.close();
    served.close();
  }
}
