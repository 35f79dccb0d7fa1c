package dev.memgen.deploy;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.memgen.cli.LoopBench;
import dev.memgen.model.Decoder;
import dev.memgen.model.checkpoint.Checkpoint;
import dev.memgen.model.checkpoint.DType;
import dev.memgen.model.checkpoint.TinyCheckpoint;
import dev.memgen.model.generate.Generator;
import dev.memgen.model.generate.MemGenInterleaver;
import dev.memgen.model.generate.SamplingParams;
import dev.memgen.model.text.ChatTemplate;
import dev.memgen.model.text.DelimiterTable;
import dev.memgen.model.text.TextTokenizer;
import dev.memgen.proto.v1.Finished;
import dev.memgen.proto.v1.GenerateEvent;
import dev.memgen.proto.v1.GenerateRequest;
import dev.memgen.proto.v1.ReasonerGrpc;
import dev.memgen.proto.v1.SkipReason;
import dev.memgen.proto.v1.TokenIds;
import dev.memgen.rpc.ReasonerMemory;
import dev.memgen.rpc.TinyMemory;
import io.grpc.ManagedChannel;
import io.grpc.ManagedChannelBuilder;
import io.grpc.health.v1.HealthCheckRequest;
import io.grpc.health.v1.HealthCheckResponse;
import io.grpc.health.v1.HealthGrpc;
import java.io.IOException;
import java.net.Socket;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.Iterator;
import java.util.List;
import java.util.OptionalInt;
import java.util.Set;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The "several local processes" deployment for real: {@code local/services.sh} starts the four services as their
 * own JVMs; the reasoner, reaching the trigger and weaver over gRPC on loopback, generates exactly the tokens the
 * library computes with the same memory embedded; the others report SERVING; killing the weaver (SIGKILL) in the
 * middle of a generation still completes it, and memory comes back with the weaver; {@code stop} takes all down.
 */
class LocalServicesTest {
  @TempDir Path tmp;

  @Test
  void servicesRunAsProcessesAndAnswerOverGrpc() throws Exception {
    Path model = tmp.resolve("model");
    Path memory = tmp.resolve("memory");
    prepare(model, memory);
    try {
      String started = script("start", "--model", model.toString(), "--memory", memory.toString());
      for (String s : List.of("reasoner-service", "trigger-service", "weaver-service", "trainer-service")) {
        assertTrue(started.contains(s + " pid"), started);
      }
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

      // Memory over three processes generates what the library's loop generates with the memory embedded.
      int[] prompt = {257, 72, 105, 258, 10, 257, 97, 10};
      Streamed remote = generate(prompt, 24, null);
      try (Decoder decoder = Decoder.load(model); TextTokenizer tokenizer = TextTokenizer.load(model);
          ReasonerMemory embedded = ReasonerMemory.embedded(decoder, Checkpoint.open(model).fingerprint(), memory,
              names -> DelimiterTable.build(tokenizer, decoder.config().vocabSize(), names));
          MemGenInterleaver loop = embedded.open(List.of("x"), MemGenInterleaver.TriggerMode.THRESHOLD, 0.5, 0,
              OptionalInt.empty())) {
        Set<Integer> stops = new HashSet<>(decoder.config().eosTokenIds());
        stops.add(tokenizer.tokenId(ChatTemplate.IM_END));
        stops.add(tokenizer.tokenId(ChatTemplate.END_OF_TEXT));
        Generator.Result expected = new Generator(decoder).generate(List.of(new Generator.Request(prompt, 24,
            SamplingParams.GREEDY, stops)), (row, token, hidden) -> {}, loop).get(0);
        assertArrayEquals(expected.tokens(), remote.tokens());
        MemGenInterleaver.Trace trace = loop.trace(0);
        assertEquals(trace.insertions().stream().mapToInt(MemGenInterleaver.Insertion::k).sum(), remote.finished().getLatentRows());
        assertTrue(trace.insertions().size() >= 2 && !trace.decisions().isEmpty(), "prompt and inference latents: " + trace);
        assertEquals(0, skipped(remote.finished(), SkipReason.WEAVER_UNAVAILABLE) + skipped(remote.finished(), SkipReason.TRIGGER_UNAVAILABLE));
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

  @Test
  void killingTheWeaverProcessMidGenerationStillCompletesTheRequest() throws Exception {
    Path model = tmp.resolve("model");
    Path memory = tmp.resolve("memory");
    prepare(model, memory);
    // Every delimiter invokes the weaver, with no cap: memory is consulted at nearly every token.
    javaOpts = "-Dmemgen.trigger.mode=inactive -Dmemgen.memory.max-inference-aug=100000";
    try {
      script("start", "--model", model.toString(), "--memory", memory.toString());
      long weaverPid = Long.parseLong(Files.readString(tmp.resolve("run/weaver-service.pid")).trim());
      String ready = readiness();
      assertTrue(ready.startsWith("{\"status\":\"UP\"") && ready.contains("\"weaver-service at 127.0.0.1:" + (grpcBase + 2) + "\":\"SERVING\""),
          "the reasoner is ready and names the weaver it reaches: " + ready);
      int[] prompt = {257, 72, 105, 258, 10};
      Streamed killed = generate(prompt, 120, () -> ProcessHandle.of(weaverPid).ifPresent(ProcessHandle::destroyForcibly));
      assertEquals(120, killed.tokens().length, "the request completed");
      assertTrue(killed.finished().getLatentRows() > 0, "memory worked before the kill");
      assertTrue(skipped(killed.finished(), SkipReason.WEAVER_UNAVAILABLE) > 0, "and was skipped after: " + killed.finished());
      ready = readiness();
      assertTrue(ready.startsWith("{\"status\":\"DOWN\"") && ready.contains(":\"UNAVAILABLE\""),
          "without its weaver the reasoner is not ready: " + ready);

      script("start", "--model", model.toString(), "--memory", memory.toString()); // restarts the weaver only
      Thread.sleep(5500); // past the reasoner's longest backoff
      Streamed back = generate(prompt, 40, null);
      assertEquals(0, skipped(back.finished(), SkipReason.WEAVER_UNAVAILABLE), "reconnected: " + back.finished());
      assertTrue(back.finished().getLatentRows() > 0);
      ready = readiness();
      assertTrue(ready.startsWith("{\"status\":\"UP\""), "ready again: " + ready);
    } finally {
      script("stop");
    }
  }

  /** A tiny checkpoint and a memory whose delimiters a random model meets at once; free ports for the services. */
  private void prepare(Path model, Path memory) throws IOException {
    TinyCheckpoint.write(model, TinyCheckpoint.tiny("qwen2"), DType.F32, 1, 7);
    TinyMemory.write(model, memory, TinyMemory.everyCharacter());
    grpcBase = LoopBench.freePortBlock(8); // the four gRPC ports, then the four HTTP ports
    httpBase = grpcBase + 4;
  }

  record Streamed(int[] tokens, Finished finished) {}

  /** A token-id Generate with memory; {@code afterFirstToken} runs when the first token arrives. */
  private Streamed generate(int[] prompt, int maxNew, Runnable afterFirstToken) {
    ManagedChannel reasoner = ManagedChannelBuilder.forAddress("127.0.0.1", grpcBase).usePlaintext().build();
    try {
      List<Integer> streamed = new ArrayList<>();
      Finished finished = null;
      Iterator<GenerateEvent> events = ReasonerGrpc.newBlockingStub(reasoner).withDeadlineAfter(120, TimeUnit.SECONDS)
          .generate(GenerateRequest.newBuilder().setTokenIds(tokenIds(prompt)).setMaxNewTokens(maxNew).build());
      while (events.hasNext()) {
        GenerateEvent e = events.next();
        if (e.hasToken()) {
          if (streamed.isEmpty() && afterFirstToken != null) {
            afterFirstToken.run();
          }
          streamed.addAll(e.getToken().getTokenIdsList());
        } else if (e.hasFinished()) {
          finished = e.getFinished();
        }
      }
      assertTrue(finished != null, "the stream ends with Finished");
      return new Streamed(streamed.stream().mapToInt(Integer::intValue).toArray(), finished);
    } catch (io.grpc.StatusRuntimeException e) { // say why: the services' logs
      throw new AssertionError("Generate failed: " + e.getStatus() + "\n" + logTails(), e);
    } finally {
      reasoner.shutdownNow();
    }
  }

  /** The reasoner's {@code /q/health/ready} body (HTTP 200 when UP, 503 when DOWN), whitespace removed. */
  private String readiness() throws Exception {
    java.net.http.HttpResponse<String> r = java.net.http.HttpClient.newHttpClient().send(java.net.http.HttpRequest
        .newBuilder(java.net.URI.create("http://127.0.0.1:" + httpBase + "/q/health/ready")).build(),
        java.net.http.HttpResponse.BodyHandlers.ofString());
    String body = r.body().replaceAll("\\s*([:,{}\\[\\]])\\s*", "$1");
    assertEquals(body.startsWith("{\"status\":\"UP\"") ? 200 : 503, r.statusCode(), body);
    return body;
  }

  private static int skipped(Finished f, SkipReason reason) {
    return f.getMemorySkippedList().stream().filter(s -> s.getReason() == reason).mapToInt(s -> s.getCount()).sum();
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
    pb.environment().put("MEMGEN_JAVA_OPTS", javaOpts);
    Process p = pb.start();
    String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
    assertTrue(p.waitFor(180, TimeUnit.SECONDS), "services.sh " + args[0] + " timed out");
    assertEquals(0, p.exitValue(), "services.sh " + String.join(" ", args) + ":\n" + out);
    return out;
  }

  private int grpcBase;
  private int httpBase;
  private String javaOpts = "";

  /** The last lines of every service's log, for a failure message. */
  private String logTails() {
    StringBuilder b = new StringBuilder();
    for (String service : List.of("reasoner-service", "trigger-service", "weaver-service", "trainer-service")) {
      try {
        List<String> lines = Files.readAllLines(tmp.resolve("run/" + service + ".log"));
        b.append("--- ").append(service).append(".log:\n")
            .append(String.join("\n", lines.subList(Math.max(0, lines.size() - 15), lines.size()))).append('\n');
      } catch (IOException e) {
        b.append("--- ").append(service).append(".log: ").append(e).append('\n');
      }
    }
    return b.toString();
  }

  private static boolean listening(int port) {
    try (Socket s = new Socket("127.0.0.1", port)) {
      return true;
    } catch (IOException e) {
      return false;
    }
  }
}
