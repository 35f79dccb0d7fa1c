package dev.memgen.trigger;

import dev.memgen.rpc.ServedMemory;
import dev.memgen.rpc.ServiceLimits;
import dev.memgen.rpc.TriggerService;
import io.quarkus.runtime.Startup;
import jakarta.annotation.PreDestroy;
import jakarta.enterprise.context.ApplicationScoped;
import java.time.Duration;
import org.eclipse.microprofile.config.inject.ConfigProperty;
import org.jboss.logging.Logger;

/**
 * The base checkpoint and the memory this service decides with, loaded once at startup on the main thread (a bad
 * directory stops the start, naming it). {@link ApplicationScoped} so the gRPC endpoint, built on an event-loop
 * thread, gets a proxy and never loads a checkpoint there.
 */
@Startup
@ApplicationScoped
public class TriggerModel {
  private static final Logger LOG = Logger.getLogger(TriggerModel.class);

  private final ServedMemory served;
  private final TriggerService service;

  TriggerModel(@ConfigProperty(name = "memgen.model.dir") String modelDir,
      @ConfigProperty(name = "memgen.memory.dir") String memoryDir,
      @ConfigProperty(name = "memgen.memory.adapter-name", defaultValue = "default") String adapterName,
      @ConfigProperty(name = "memgen.trigger.threshold", defaultValue = "0.5") double threshold,
      @ConfigProperty(name = "memgen.sessions.max", defaultValue = "64") int maxSessions,
      @ConfigProperty(name = "memgen.sessions.max-length", defaultValue = "0") int maxLength,
      @ConfigProperty(name = "memgen.sessions.max-append-rows", defaultValue = "8192") int maxAppendRows,
      @ConfigProperty(name = "memgen.warm-up.budget", defaultValue = "10s") Duration warmUpBudget,
      @ConfigProperty(name = "memgen.warm-up.calls", defaultValue = "600") int warmUpCalls, TriggerReady ready) {
    served = ServedMemory.forService(modelDir, memoryDir);
    service = new TriggerService(served.base(), served.memory(), served.fingerprint(), adapterName, threshold,
        new ServiceLimits(maxSessions, maxLength, maxAppendRows));
    LOG.infof("deciding with %s (version %d, threshold %.2f) on %s", memoryDir, served.memory().manifest().version(),
        threshold, modelDir);
    service.warmUp(warmUpBudget, warmUpCalls);
    ready.set(service); // from now on the endpoint hands calls to it
  }

  public TriggerService service() {
    return service;
  }

  @PreDestroy
  void close() {
    service.close();
    served.close();
  }
}
