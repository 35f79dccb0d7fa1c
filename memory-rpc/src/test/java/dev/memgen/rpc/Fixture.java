package dev.memgen.rpc;

import dev.memgen.model.Decoder;
import dev.memgen.model.checkpoint.Checkpoint;
import dev.memgen.model.checkpoint.DType;
import dev.memgen.model.checkpoint.TinyCheckpoint;
import dev.memgen.model.memory.Memory;
import dev.memgen.model.memory.MemoryManifest;
import dev.memgen.model.text.DelimiterTable;
import io.grpc.BindableService;
import io.grpc.ManagedChannel;
import io.grpc.Server;
import io.grpc.netty.shaded.io.grpc.netty.NettyChannelBuilder;
import io.grpc.netty.shaded.io.grpc.netty.NettyServerBuilder;
import java.io.IOException;
import java.net.InetSocketAddress;
import java.nio.file.Files;
import java.nio.file.Path;

/**
 * A tiny random base and memory, and real gRPC servers and channels on loopback (Netty, not the in-process
 * transport: the bytes go through a socket).
 */
final class Fixture implements AutoCloseable {
  static final int PROMPT_K = TinyMemory.PROMPT_K;
  static final int INFERENCE_K = TinyMemory.INFERENCE_K;
  static final int MAX_INBOUND_BYTES = 1 << 20;

  final Path baseDir;
  final Path memoryDir;
  final String fingerprint;
  final Decoder base;
  final Memory memory;
  final Memory hiddenMemory; // the same weights, its weaver reading the reasoner's hidden states

  Fixture(Path tmp) throws IOException {
    baseDir = tmp.resolve("base");
    TinyCheckpoint.write(baseDir, TinyCheckpoint.tiny("qwen2"), DType.F32, 1, 31);
    fingerprint = Checkpoint.open(baseDir).fingerprint();
    memoryDir = tmp.resolve("memory");
    TinyMemory.write(baseDir, memoryDir, DelimiterTable.DEFAULT);
    base = Decoder.load(baseDir);
    memory = Memory.load(memoryDir, base, fingerprint);
    Path hiddenDir = tmp.resolve("memory-hidden");
    Files.createDirectories(hiddenDir);
    Files.copy(memoryDir.resolve(Memory.TENSORS), hiddenDir.resolve(Memory.TENSORS));
    MemoryManifest mf = MemoryManifest.read(memoryDir);
    new MemoryManifest(mf.version(), mf.baseFingerprint(), mf.hiddenSize(), mf.numLayers(), mf.promptK(), mf.inferenceK(),
        "hidden", mf.weaverLora(), mf.triggerLora(), mf.delimiters(), mf.maxInferenceAug()).write(hiddenDir);
    hiddenMemory = Memory.load(hiddenDir, base, fingerprint);
  }

  /** The weaver and trigger services of this fixture's memory behind one gRPC server. */
  record Served(Server server, WeaverService weaver, TriggerService trigger) implements AutoCloseable {
    int port() {
      return server.getPort();
    }

    /** Stops at once, dropping every open stream: what the client sees when the process dies. */
    @Override
    public void close() {
      server.shutdownNow();
      try {
        server.awaitTermination();
      } catch (InterruptedException e) {
        Thread.currentThread().interrupt();
      }
      weaver.close();
      trigger.close();
    }
  }

  /** A server on {@code port} (0: any free port) serving the weaver and trigger of this fixture's memory. */
  Served serve(int port, ServiceLimits limits) throws IOException {
    return serve(port, limits, memory);
  }

  Served serve(int port, ServiceLimits limits, Memory memory) throws IOException {
    WeaverService weaver = new WeaverService(base, memory, fingerprint, "default", limits);
    TriggerService trigger = new TriggerService(base, memory, fingerprint, "default", 0.5, limits);
    return new Served(server(port, weaver, trigger), weaver, trigger);
  }

  /** A started server on {@code port} (0: any free port) with {@code services}, as this fixture's servers are. */
  static Server server(int port, BindableService... services) throws IOException {
    NettyServerBuilder b = NettyServerBuilder.forAddress(new InetSocketAddress("127.0.0.1", port))
        .directExecutor()
        .maxInboundMessageSize(MAX_INBOUND_BYTES);
    for (BindableService s : services) {
      b.addService(s);
    }
    return b.build().start();
  }

  static ManagedChannel channel(int port) {
    return NettyChannelBuilder.forAddress("127.0.0.1", port).usePlaintext().directExecutor().build();
  }

  @Override
  public void close() {
    memory.close();
    hiddenMemory.close();
    base.close();
  }
}
