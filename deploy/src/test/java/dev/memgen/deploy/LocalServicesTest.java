package dev.memgen.deploy;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.memgen.model.Decoder;
import dev.memgen.model.checkpoint.DType;
import dev.memgen.model.checkpoint.TinyCheckpoint;
import dev.memgen.model.generate.Generator;
import dev.memgen.model.generate.SamplingParams;
import dev.memgen.proto.v1.FinishReason;
import dev.memgen.proto.v1.GenerateEvent;
import dev.memgen.proto.v1.GenerateRequest;
import dev.memgen.proto.v1.ReasonerGrpc;
import dev.memgen.proto.v1.TokenIds;
import io.grpc.ManagedChannel;
import io.grpc.ManagedChannelBuilder;
import io.grpc.health.v1.HealthCheckRequest;
import io.grpc.health.v1.HealthCheckResponse;
import io.grpc.health.v1.HealthGrpc;
import java.io.IOException;
import java.net.ServerSocket;
import java.net.Socket;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Iterator;
import java.util.List;
import java.util.Random;
import java.util.Set;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The "several local processes" deployment for real: {@code local/services.sh} starts the four services as their
 * own JVMs, the reasoner answers Generate over gRPC on loopback with exactly the tokens the library computes,
 * the others report SERVING, and {@code stop} takes them all down.
 */
class LocalServicesTest {
  @TempDir Path tmp;

  @Test
  void servicesRunAsProcessesAndAnswerOverGrpc() throws Exception {
    Path model = tmp.resolve("model");
    TinyCheckpoint.write(model, TinyCheckpoint.tiny("qwen2"), DType.F32, 1, 7);
    grpcBase = freePortBlock(4, 0);
    httpBase = freePortBlock(4, grpcBase);
    try {
      String started = script("start", "--model", model.toString());
      for (String s : List.of("reasoner-service", "trigger-service", "weaver-service", "trainer-service")) {
        assertTrue(started.contains(s + " pid"), started);
      }
      int[] prompt = {257, 72, 105, 258, 10};
      List<Integer> streamed = new ArrayList<>();
      GenerateEvent last = null;
      ManagedChannel reasoner = ManagedChannelBuilder.forAddress("127.0.0.1", grpcBase).usePlaintext().build();
      try {
        Iterator<GenerateEvent> events = ReasonerGrpc.newBlockingStub(reasoner).withDeadlineAfter(60, TimeUnit.SECONDS)
            .generate(GenerateRequest.newBuilder().setTokenIds(tokenIds(prompt)).setMaxNewTokens(6).build());
        while (events.hasNext()) {
          last = events.next();
          if (last.hasToken()) {
            streamed.addAll(last.getToken().getTokenIdsList());
          }
        }
      } finally {
        reasoner.shutdownNow();
      }
      assertTrue(last != null && last.hasFinished());
      try (Decoder decoder = Decoder.load(model)) {
        Generator.Result expected = new Generator(decoder).generate(List.of(new Generator.Request(prompt, 6,
            SamplingParams.GREEDY, Set.copyOf(decoder.config().eosTokenIds())))).get(0);
        assertArrayEquals(expected.tokens(), streamed.stream().mapToInt(Integer::intValue).toArray());
        assertEquals(expected.tokens().length, last.getFinished().getCompletionTokens());
      }
      assertTrue(last.getFinished().getReason() == FinishReason.LENGTH || last.getFinished().getReason() == FinishReason.STOP_TOKEN);

      for (int i = 1; i < 4; i++) {
        ManagedChannel ch = ManagedChannelBuilder.forAddress("127.0.0.1", grpcBase + i).usePlaintext().build();
        try {
          HealthCheckResponse health = HealthGrpc.newBlockingStub(ch).withDeadlineAfter(10, TimeUnit.SECONDS)
              .check(HealthCheckRequest.getDefaultInstance());
          assertEquals(HealthCheckResponse.ServingStatus.SERVING, health.getStatus(), "service on port " + (grpcBase + i));
        } finally {
          ch.shutdownNow();
        }
      }
      assertTrue(script("status").contains("reasoner-service running"));
    } finally {
      script("stop");
    }
    assertTrue(script("status").contains("reasoner-service stopped"));
    for (int i = 0; i < 4; i++) {
      assertFalse(listening(grpcBase + i), "port " + (grpcBase + i) + " closed after stop");
    }
  }

  private static TokenIds tokenIds(int[] ids) {
    TokenIds.Builder b = TokenIds.newBuilder();
    for (int id : ids) {
      b.addIds(id);
    }
    return b.build();
  }

  private String script(String... args) throws IOException, InterruptedException {
    List<String> cmd = new ArrayList<>(List.of("bash", "local/services.sh"));
    cmd.addAll(List.of(args));
    ProcessBuilder pb = new ProcessBuilder(cmd).redirectErrorStream(true);
    pb.environment().put("MEMGEN_RUN_DIR", tmp.resolve("run").toString());
    pb.environment().put("MEMGEN_GRPC_PORT_BASE", String.valueOf(grpcBase));
    pb.environment().put("MEMGEN_HTTP_PORT_BASE", String.valueOf(httpBase));
    Process p = pb.start();
    String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
    assertTrue(p.waitFor(180, TimeUnit.SECONDS), "services.sh " + args[0] + " timed out");
    assertEquals(0, p.exitValue(), "services.sh " + String.join(" ", args) + ":\n" + out);
    return out;
  }

  private int grpcBase;
  private int httpBase;

  /** A run of {@code n} consecutive free loopback ports not overlapping [avoid, avoid + n). */
  private static int freePortBlock(int n, int avoid) throws IOException {
    Random random = new Random();
    for (int attempt = 0; attempt < 200; attempt++) {
      int base = 20000 + random.nextInt(20000);
      if (Math.abs(base - avoid) < n) {
        continue;
      }
      boolean free = true;
      for (int i = 0; i < n && free; i++) {
        try (ServerSocket s = new ServerSocket(base + i)) {
          s.setReuseAddress(true);
        } catch (IOException e) {
          free = false;
        }
      }
      if (free) {
        return base;
      }
    }
    throw new IOException("no block of " + n + " free ports");
  }

  private static boolean listening(int port) {
    try (Socket s = new Socket("127.0.0.1", port)) {
      return true;
    } catch (IOException e) {
      return false;
    }
  }
}
