package dev.memgen.cli;

import dev.memgen.rpc.ServedMemory;
import dev.memgen.rpc.ServiceLimits;
import dev.memgen.rpc.TriggerService;
import dev.memgen.rpc.WarmUp;
import dev.memgen.rpc.WeaverService;
import io.grpc.BindableService;
import io.grpc.Server;
import io.grpc.netty.shaded.io.grpc.netty.NettyServerBuilder;
import java.net.InetSocketAddress;
import java.nio.file.Path;
import java.time.Duration;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;
import picocli.CommandLine.Parameters;

/**
 * A memory service in the foreground, without Quarkus: the same {@link WeaverService} / {@link TriggerService} that
 * weaver-service and trigger-service wrap, on a plain grpc-java (Netty) server. For benchmarks and quick local
 * runs; deployments use the Quarkus services (config, health, metrics).
 */
@Command(name = "serve", mixinStandardHelpOptions = true,
    description = "Serve the weaver or the trigger of a memory over gRPC until interrupted (prints 'listening on PORT').")
final class ServeCommand implements Callable<Integer> {
  @Parameters(index = "0", description = "weaver or trigger") String which;

  @Option(names = "--model", required = true, description = "the base checkpoint the memory was made for") Path model;

  @Option(names = "--memory", required = true, description = "memory directory") Path memory;

  @Option(names = "--port", defaultValue = "0", description = "port on 127.0.0.1 (default: any free one)") int port;

  @Option(names = "--threshold", defaultValue = "0.5", description = "trigger: Decision.invoke threshold (default ${DEFAULT-VALUE})")
  double threshold;

  @Option(names = "--warm-up-seconds", defaultValue = "10",
      description = "synthetic sessions first, for at most this long, so the first real ones find the request path "
          + "JIT-compiled (0: none; default ${DEFAULT-VALUE})")
  double warmUpSeconds;

  @Option(names = "--warm-up-calls", defaultValue = "" + WarmUp.DEFAULT_CALLS,
      description = "the warm-up makes at most this many calls (see --warm-up-seconds; default ${DEFAULT-VALUE})")
  int warmUpCalls;

  @Override
  public Integer call() throws Exception {
    if (!which.equals("weaver") && !which.equals("trigger")) {
      throw new IllegalArgumentException("serve what? 'weaver' or 'trigger', got '" + which + "'");
    }
    try (ServedMemory served = ServedMemory.load(model, memory)) {
      AutoCloseable service;
      WarmUp.Report warmed;
      BindableService bindable;
      if (which.equals("weaver")) {
        WeaverService w = new WeaverService(served.base(), served.memory(), served.fingerprint(), "default", ServiceLimits.DEFAULT);
        warmed = w.warmUp(warmUp(), warmUpCalls);
        service = w;
        bindable = w;
      } else {
        TriggerService t = new TriggerService(served.base(), served.memory(), served.fingerprint(), "default", threshold,
            ServiceLimits.DEFAULT);
        warmed = t.warmUp(warmUp(), warmUpCalls);
        service = t;
        bindable = t;
      }
      // Direct executor: a session call only queues each message for the service's model thread, so it can run on
      // the transport's thread and skip a hand-off to a callback pool (one thread wake-up less per message).
      Server server = NettyServerBuilder.forAddress(new InetSocketAddress("127.0.0.1", port))
          .directExecutor()
          .addService(bindable)
          .maxInboundMessageSize(128 << 20)
          .build()
          .start();
      Runtime.getRuntime().addShutdownHook(new Thread(server::shutdownNow));
      System.out.println("listening on " + server.getPort());
      System.out.flush();
      System.err.printf("%s of %s (version %d) on %s; warmed up with %d calls in %d ms%n", which, memory,
          served.memory().manifest().version(), model, warmed.calls(), warmed.took().toMillis());
      server.awaitTermination();
      service.close();
    }
    return 0;
  }

  private Duration warmUp() {
    return Duration.ofMillis(Math.round(warmUpSeconds * 1000));
  }
}
