package dev.memgen.reasoner;

import dev.memgen.model.checkpoint.DType;
import dev.memgen.model.checkpoint.TinyCheckpoint;
import dev.memgen.rpc.ServedMemory;
import dev.memgen.rpc.ServiceLimits;
import dev.memgen.rpc.TinyMemory;
import dev.memgen.rpc.TriggerService;
import dev.memgen.rpc.WeaverService;
import io.grpc.Grpc;
import io.grpc.InsecureServerCredentials;
import io.grpc.Metadata;
import io.grpc.Server;
import io.grpc.ServerCall;
import io.grpc.ServerCallHandler;
import io.grpc.ServerInterceptor;
import io.grpc.ServerInterceptors;
import io.quarkus.test.common.QuarkusTestResourceLifecycleManager;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CopyOnWriteArrayList;

/**
 * A real weaver and trigger (the memory services' own code on a tiny model, over gRPC on loopback) for a reasoner
 * whose memory is remote; every call's {@code traceparent} metadata is recorded as "SERVICE/METHOD TRACEPARENT" (or
 * "... none") in {@link #CALLS}. Sets memgen.model.dir, memgen.weaver.target and memgen.trigger.target.
 */
public class RemoteMemoryResource implements QuarkusTestResourceLifecycleManager {
  static final List<String> CALLS = new CopyOnWriteArrayList<>();
  private static final Metadata.Key<String> TRACEPARENT = Metadata.Key.of("traceparent", Metadata.ASCII_STRING_MARSHALLER);
  private ServedMemory served;
  private WeaverService weaver;
  private TriggerService trigger;
  private Server server;

  @Override
  public Map<String, String> start() {
    try {
      Path dir = Files.createTempDirectory("memgen-remote-memory");
      Path model = dir.resolve("model");
      TinyCheckpoint.write(model, TinyCheckpoint.tiny("qwen2"), DType.F32, 1, 0);
      TinyMemory.write(model, dir.resolve("memory"), TinyMemory.everyCharacter());
      served = ServedMemory.load(model, dir.resolve("memory"));
      weaver = new WeaverService(served.base(), served.memory(), served.fingerprint(), "default", ServiceLimits.DEFAULT);
      trigger = new TriggerService(served.base(), served.memory(), served.fingerprint(), "default", 0.0, ServiceLimits.DEFAULT);
      ServerInterceptor record = new ServerInterceptor() {
        @Override
        public <Q, R> ServerCall.Listener<Q> interceptCall(ServerCall<Q, R> call, Metadata headers, ServerCallHandler<Q, R> next) {
          String tp = headers.get(TRACEPARENT);
          CALLS.add(call.getMethodDescriptor().getFullMethodName() + " " + (tp == null ? "none" : tp));
          return next.startCall(call, headers);
        }
      };
      server = Grpc.newServerBuilderForPort(0, InsecureServerCredentials.create())
          .addService(ServerInterceptors.intercept(weaver, record))
          .addService(ServerInterceptors.intercept(trigger, record))
          .build().start();
      String target = "127.0.0.1:" + server.getPort();
      return Map.of("memgen.model.dir", model.toString(), "memgen.weaver.target", target, "memgen.trigger.target", target);
    } catch (Exception e) {
      throw new IllegalStateException("could not start the memory services", e);
    }
  }

  @Override
  public void stop() {
    if (server != null) {
      server.shutdownNow();
    }
    if (weaver != null) {
      weaver.close();
      trigger.close();
      served.close();
    }
  }
}
