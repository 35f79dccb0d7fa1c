package dev.memgen.weaver;

import dev.memgen.rpc.ServedMemory;
import dev.memgen.rpc.ServiceLimits;
import dev.memgen.rpc.WeaverService;
import io.quarkus.runtime.Startup;
import jakarta.annotation.PreDestroy;
import jakarta.enterprise.context.ApplicationScoped;
import org.eclipse.microprofile.config.inject.ConfigProperty;
import org.jboss.logging.Logger;

/**
 * The base checkpoint and the memory this service weaves with, loaded once at startup on the main thread (a bad
 * directory stops the start, naming it). {@link ApplicationScoped} so the gRPC endpoint, built on an event-loop
 * thread, gets a proxy and never loads a checkpoint there.
 */
@Startup
@ApplicationScoped
public class WeaverModel {
  private static final Logger LOG = Logger.getLogger(WeaverModel.class);

  private final ServedMemory served;
  private final WeaverService service;

  WeaverModel(@ConfigProperty(name = "memgen.model.dir") String modelDir,
      @ConfigProperty(name = "memgen.memory.dir") String memoryDir,
      @ConfigProperty(name = "memgen.memory.adapter-name", defaultValue = "default") String adapterName,
      @ConfigProperty(name = "memgen.sessions.max", defaultValue = "64") int maxSessions,
      @ConfigProperty(name = "memgen.sessions.max-length", defaultValue = "0") int maxLength,
      @ConfigProperty(name = "memgen.sessions.max-append-rows", defaultValue = "8192") int maxAppendRows) {
    served = ServedMemory.forService(modelDir, memoryDir);
    service = new WeaverService(served.base(), served.memory(), served.fingerprint(), adapterName,
        new ServiceLimits(maxSessions, maxLength, maxAppendRows));
    LOG.infof("weaving with %s (version %d, K %d/%d) on %s", memoryDir, served.memory().manifest().version(),
        served.memory().manifest().promptK(), served.memory().manifest().inferenceK(), modelDir);
  }

  public WeaverService service() {
    return service;
  }

  @PreDestroy
  void close() {
    service.close();
    served.close();
  }
}
