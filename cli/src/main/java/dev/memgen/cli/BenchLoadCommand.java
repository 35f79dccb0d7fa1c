package dev.memgen.cli;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.memgen.engine.core.EngineCore;
import dev.memgen.log.ExperienceLog;
import dev.memgen.log.broker.KafkaBroker;
import dev.memgen.model.Decoder;
import dev.memgen.model.checkpoint.Checkpoint;
import dev.memgen.model.checkpoint.Directories;
import dev.memgen.model.generate.Generator;
import dev.memgen.model.generate.MemGenInterleaver;
import dev.memgen.model.generate.SamplingParams;
import dev.memgen.model.memory.LoraConfig;
import dev.memgen.model.memory.Memory;
import dev.memgen.model.memory.MemoryManifest;
import dev.memgen.model.text.ChatTemplate;
import dev.memgen.model.text.DelimiterTable;
import dev.memgen.model.text.TextTokenizer;
import dev.memgen.proto.v1.ChatMessage;
import dev.memgen.proto.v1.ChatMessages;
import dev.memgen.proto.v1.GenerateEvent;
import dev.memgen.proto.v1.GenerateRequest;
import dev.memgen.proto.v1.ReasonerGrpc;
import dev.memgen.rpc.ReasonerMemory;
import io.grpc.ManagedChannel;
import io.grpc.ManagedChannelBuilder;
import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.net.ServerSocket;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Collections;
import java.util.Iterator;
import java.util.List;
import java.util.OptionalInt;
import java.util.SplittableRandom;
import java.util.UUID;
import java.util.concurrent.Callable;
import java.util.concurrent.TimeUnit;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

/**
 * A bounded loopback load on the serving engine: one agent alone first, then {@code --clients} agents at once, each
 * sending chat turns back to back for {@code --seconds}; latency, time to first token and aggregate tokens/s of both
 * phases side by side, measured in one run. {@code --api engine} submits to an in-process {@link EngineCore};
 * {@code grpc} and {@code openai} start reasoner-service as a child process and go through its gRPC Generate or its
 * OpenAI API (streamed, so the first token is seen when it is sent).
 */
@Command(name = "load", mixinStandardHelpOptions = true,
    description = "Concurrent agents against the serving engine: p50/p99 latency and time to first token, tokens/s.")
final class BenchLoadCommand implements Callable<Integer> {
  private static final ObjectMapper JSON = new ObjectMapper();

  @Option(names = "--model", required = true, description = "Hugging Face checkpoint directory (with tokenizer.json)") Path model;

  @Option(names = "--clients", defaultValue = "16", description = "concurrent agents (default ${DEFAULT-VALUE})") int clients;

  @Option(names = "--seconds", defaultValue = "60", description = "length of the concurrent phase (default ${DEFAULT-VALUE})") int seconds;

  @Option(names = "--single-seconds", defaultValue = "20", description = "length of the one-agent phase (default ${DEFAULT-VALUE})") int singleSeconds;

  @Option(names = "--warm-up-seconds", defaultValue = "10", description = "load before the measured phases, all agents at "
      + "once, so that both ends run compiled code (default ${DEFAULT-VALUE})") int warmUpSeconds;

  @Option(names = "--max-tokens", defaultValue = "32", description = "completion tokens per turn (default ${DEFAULT-VALUE})") int maxTokens;

  @Option(names = "--memory", defaultValue = "off", description = "on (a fresh embedded memory) or off (default ${DEFAULT-VALUE})") String memory;

  @Option(names = "--api", defaultValue = "engine", description = "engine, grpc or openai (default ${DEFAULT-VALUE})") String api;

  /** One turn as an agent saw it. */
  record Turn(long startNanos, long firstNanos, long endNanos, int tokens, String error, String trajectoryId) {
    Turn(long startNanos, long firstNanos, long endNanos, int tokens, String error) {
      this(startNanos, firstNanos, endNanos, tokens, error, null);
    }
  }

  /** Sends one chat turn and reports it; thread-safe. */
  interface Client extends AutoCloseable {
    Turn send(String question);

    /** Where trajectories are recorded (a broker's bootstrap servers), or null when they are not. */
    default String log() {
      return null;
    }

    @Override
    default void close() throws Exception {}
  }

  @Override
  public Integer call() throws Exception {
    if (clients < 1 || seconds < 1 || singleSeconds < 1 || maxTokens < 1 || warmUpSeconds < 0) {
      throw new IllegalArgumentException("need --clients, --seconds, --single-seconds and --max-tokens >= 1, "
          + "--warm-up-seconds >= 0");
    }
    if (!List.of("on", "off").contains(memory) || !List.of("engine", "grpc", "openai").contains(api)) {
      throw new IllegalArgumentException("--memory must be on or off and --api engine, grpc or openai");
    }
    Path work = Files.createTempDirectory("memgen-bench-load");
    try {
      Path mem = memory.equals("on") ? freshMemory(work.resolve("memory")) : null;
      try (Client client = api.equals("engine") ? new EngineClient(mem) : new ServiceClient(mem, work)) {
        System.err.println("bench load: warming up");
        List<Turn> all = Collections.synchronizedList(new ArrayList<>());
        all.add(client.send("Q: 1+1=?"));
        if (warmUpSeconds > 0) {
          run(client, clients, warmUpSeconds, "warm-up", all);
        }
        Phase one = run(client, 1, singleSeconds, "1 agent", all);
        Phase many = run(client, clients, seconds, clients + " agents", all);
        System.out.printf("%-10s %8s %7s %9s %9s %9s %9s %7s%n", "agents", "turns", "errors", "tok/s", "p50 (s)",
            "p99 (s)", "ttft p50", "ttft p99");
        for (Phase p : List.of(one, many)) {
          System.out.printf("%-10d %8d %7d %9.1f %9.2f %9.2f %9.3f %7.3f%n", p.agents, p.turns, p.errors, p.tokensPerSecond,
              p.latencyP50, p.latencyP99, p.ttftP50, p.ttftP99);
        }
        System.out.printf("%d agents together get %.1fx the tokens/s of one; their p99 time to first token is %.1fx an idle "
            + "request's (one agent's median: its prefill and first decode step)%n", clients,
            many.tokensPerSecond / one.tokensPerSecond, many.ttftP99 / one.ttftP50);
        ObjectNode json = Json.object();
        json.put("api", api);
        json.put("memory", memory);
        json.put("model", model.toString());
        json.put("clients", clients);
        json.put("max_tokens", maxTokens);
        json.set("single", one.json());
        json.set("concurrent", many.json());
        json.put("speedup", many.tokensPerSecond / one.tokensPerSecond);
        json.put("ttft_p99_vs_idle", many.ttftP99 / one.ttftP50);
        json.put("errors", one.errors + many.errors);
        if (client.log() != null) {
          ObjectNode check = trajectoryCheck(client.log(), all);
          json.set("trajectories", check);
          System.out.printf("trajectories: %d successful requests, %d recorded once, %d missing (%d of them answered "
              + "without a trajectory id), %d recorded twice or more%n", check.get("successful").asLong(),
              check.get("recorded_once").asLong(), check.get("missing").asLong(),
              check.get("missing_without_id").asLong(), check.get("duplicated").asLong());
        }
        json.set("machine", Machine.describe());
        System.out.println(Json.line(json));
        boolean accounted = !json.has("trajectories") || (json.at("/trajectories/missing").asLong() == 0
            && json.at("/trajectories/duplicated").asLong() == 0);
        return one.errors + many.errors == 0 && accounted ? 0 : 1;
      }
    } finally {
      Directories.deleteRecursively(work);
    }
  }

  record Phase(int agents, int turns, int errors, double tokensPerSecond, double latencyP50, double latencyP99,
      double ttftP50, double ttftP99, String firstError) {
    ObjectNode json() {
      ObjectNode o = Json.object();
      o.put("agents", agents);
      o.put("turns", turns);
      o.put("errors", errors);
      o.put("tokens_per_s", tokensPerSecond);
      o.put("latency_p50_s", latencyP50);
      o.put("latency_p99_s", latencyP99);
      o.put("ttft_p50_s", ttftP50);
      o.put("ttft_p99_s", ttftP99);
      if (firstError != null) {
        o.put("first_error", firstError);
      }
      return o;
    }
  }

  /**
   * Every successful turn's trajectory must be on the trajectories topic exactly once. The reasoner's spool sends
   * them asynchronously, so the check keeps consuming (each poll blocks until records come) until every id is there
   * and the topic's end has been read, or a minute has passed.
   */
  private static ObjectNode trajectoryCheck(String bootstrap, List<Turn> turns) {
    List<String> expected;
    synchronized (turns) {
      expected = turns.stream().filter(t -> t.error() == null).map(Turn::trajectoryId).toList();
    }
    java.util.Map<String, Integer> seen = new java.util.HashMap<>();
    long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(60);
    try (org.apache.kafka.clients.consumer.KafkaConsumer<String, byte[]> c =
        ExperienceLog.consumer(bootstrap, "memgen-bench-load-check", null)) {
      List<org.apache.kafka.common.TopicPartition> parts = c.partitionsFor(dev.memgen.log.Topics.TRAJECTORIES).stream()
          .map(p -> new org.apache.kafka.common.TopicPartition(p.topic(), p.partition())).toList();
      c.assign(parts);
      c.seekToBeginning(parts);
      Runnable poll = () -> { // blocks until records come, half a second at most
        for (org.apache.kafka.clients.consumer.ConsumerRecord<String, byte[]> r : c.poll(Duration.ofMillis(500))) {
          dev.memgen.proto.v1.Trajectory t = dev.memgen.log.Records.TRAJECTORY.deserializeOrNull(r.value());
          seen.merge(t == null ? "offset:" + r.partition() + "@" + r.offset() : t.getTrajectoryId(), 1, Integer::sum);
        }
      };
      while (System.nanoTime() < deadline
          && !expected.stream().allMatch(id -> id != null && seen.containsKey(id))) {
        poll.run();
      }
      java.util.Map<org.apache.kafka.common.TopicPartition, Long> end = c.endOffsets(parts, Duration.ofSeconds(30));
      while (parts.stream().anyMatch(tp -> c.position(tp) < end.get(tp))) { // a duplicate may come after the last id
        poll.run();
      }
    }
    ObjectNode o = Json.object();
    o.put("successful", expected.size());
    o.put("recorded_once", expected.stream().filter(id -> id != null && seen.getOrDefault(id, 0) == 1).count());
    o.put("missing", expected.stream().filter(id -> id == null || !seen.containsKey(id)).count());
    // Of those, the turns whose response carried no trajectory id at all (the rest carried one the topic lacks).
    o.put("missing_without_id", expected.stream().filter(java.util.Objects::isNull).count());
    o.put("duplicated", expected.stream().filter(id -> id != null && seen.getOrDefault(id, 0) > 1).count());
    o.put("records", seen.values().stream().mapToInt(Integer::intValue).sum());
    return o;
  }

  private Phase run(Client client, int agents, int phaseSeconds, String label, List<Turn> all) throws InterruptedException {
    long t0 = System.nanoTime();
    long end = t0 + TimeUnit.SECONDS.toNanos(phaseSeconds);
    List<Turn> turns = Collections.synchronizedList(new ArrayList<>());
    List<Thread> threads = new ArrayList<>();
    for (int a = 0; a < agents; a++) {
      SplittableRandom r = new SplittableRandom(a * 7919L + agents);
      Thread t = new Thread(() -> {
        while (System.nanoTime() < end) {
          turns.add(client.send("Q: " + r.nextInt(50) + "+" + r.nextInt(50) + "-" + r.nextInt(20) + "=?"));
        }
      }, "agent-" + a);
      threads.add(t);
      t.start();
    }
    try (Progress p = new Progress("bench load " + label, phaseSeconds)) {
      for (int s = 0; s < phaseSeconds; s++) {
        Thread.sleep(1000); // the progress bar's clock: the agents run on their own threads
        p.step(turns.size() + " turns");
      }
    }
    for (Thread t : threads) {
      t.join();
    }
    long wall = System.nanoTime() - t0;
    all.addAll(turns);
    List<Double> latency = new ArrayList<>();
    List<Double> ttft = new ArrayList<>();
    long tokens = 0;
    int errors = 0;
    String firstError = null;
    synchronized (turns) {
      for (Turn t : turns) {
        if (t.error != null) {
          errors++;
          firstError = firstError == null ? t.error : firstError;
          continue;
        }
        tokens += t.tokens;
        latency.add((t.endNanos - t.startNanos) / 1e9);
        ttft.add((t.firstNanos - t.startNanos) / 1e9);
      }
    }
    return new Phase(agents, turns.size(), errors, tokens / (wall / 1e9), q(latency, 0.5), q(latency, 0.99), q(ttft, 0.5),
        q(ttft, 0.99), firstError);
  }

  private static double q(List<Double> values, double quantile) {
    return values.isEmpty() ? Double.NaN : Stats.quantile(values, quantile);
  }

  private Path freshMemory(Path out) throws Exception {
    Checkpoint ckpt = Checkpoint.open(model);
    LoraConfig lora = new LoraConfig(16, 32, LoraConfig.REFERENCE.targets(), 0.0);
    Memory.init(out, ckpt.config(), new MemoryManifest(1, ckpt.fingerprint(), ckpt.config().hiddenSize(),
        ckpt.config().numLayers(), 8, 8, "embeddings", lora, lora, DelimiterTable.DEFAULT, 3), 0);
    return out;
  }

  /** The engine in this process, with the embedded memory when asked for. */
  private final class EngineClient implements Client {
    private final Decoder decoder;
    private final TextTokenizer tokenizer;
    private final EngineCore engine;
    private final ReasonerMemory mem;

    EngineClient(Path memoryDir) {
      decoder = Decoder.load(model);
      tokenizer = TextTokenizer.load(model);
      engine = new EngineCore(decoder, new EngineCore.Limits(Math.max(clients, 1), 4 * clients, 256, 8192), "bench-engine");
      mem = memoryDir == null ? null : ReasonerMemory.embedded(decoder, Checkpoint.open(model).fingerprint(), memoryDir,
          names -> DelimiterTable.build(tokenizer, decoder.config().vocabSize(), names));
    }

    @Override
    public Turn send(String question) {
      long start = System.nanoTime();
      long[] first = {0};
      int[] count = {0};
      MemGenInterleaver loop = mem == null ? null : mem.open(List.of(UUID.randomUUID().toString()),
          MemGenInterleaver.TriggerMode.THRESHOLD, 0.5, 0, OptionalInt.empty());
      java.util.concurrent.CompletableFuture<Generator.Result> done = new java.util.concurrent.CompletableFuture<>();
      try {
        engine.submit(new Generator.Request(tokenizer.encode(ChatTemplate.userPrompt(question)), maxTokens,
            SamplingParams.GREEDY, ChatTemplate.stopTokens(decoder.config(), tokenizer)), loop, new EngineCore.Output() {
              @Override
              public boolean onToken(int token) {
                if (count[0]++ == 0) {
                  first[0] = System.nanoTime();
                }
                return true;
              }

              @Override
              public void onFinished(Generator.Result result) {
                done.complete(result);
              }

              @Override
              public void onFailed(Throwable cause) {
                done.completeExceptionally(cause);
              }
            });
        Generator.Result r = done.get();
        return new Turn(start, first[0], System.nanoTime(), r.tokens().length, null);
      } catch (Exception e) {
        return new Turn(start, 0, System.nanoTime(), 0, String.valueOf(e));
      } finally {
        if (loop != null) {
          loop.close();
        }
      }
    }

    @Override
    public void close() {
      engine.close();
      if (mem != null) {
        mem.close();
      }
      tokenizer.close();
      decoder.close();
    }
  }

  /** reasoner-service as a child process, over gRPC or its OpenAI API. */
  private final class ServiceClient implements Client {
    private final Process process;
    private final KafkaBroker broker;
    private final int http;
    private final ManagedChannel channel;
    // HTTP/1.1, as agents' OpenAI clients speak it (the JDK's default would upgrade to HTTP/2 without TLS).
    private final HttpClient client = HttpClient.newBuilder().version(HttpClient.Version.HTTP_1_1)
        .connectTimeout(Duration.ofSeconds(10)).build();

    ServiceClient(Path memoryDir, Path work) throws Exception {
      Path jar = Main.home().resolve("reasoner-service/target/quarkus-app/quarkus-run.jar");
      if (!Files.isRegularFile(jar)) {
        throw new StartupException("reasoner-service is not built (" + jar + "): run ./mvnw -B -q -pl reasoner-service -am "
            + "package -DskipTests", null);
      }
      try {
        broker = KafkaBroker.start(work.resolve("kafka"), 0);
      } catch (java.io.IOException e) {
        throw new StartupException("the Kafka broker did not start in " + work.resolve("kafka") + ": " + e.getMessage()
            + " (fix: build with ./mvnw -B install -DskipTests)", e);
      }
      try (ExperienceLog log = new ExperienceLog(broker.bootstrapServers())) {
        log.ensureTopics(2);
      }
      http = freePort();
      int grpc = freePort();
      List<String> cmd = new ArrayList<>(List.of(ProcessHandle.current().info().command().orElse("java"),
          "-Dmemgen.model.dir=" + model.toAbsolutePath(), "-Dquarkus.http.port=" + http, "-Dquarkus.grpc.server.port=" + grpc,
          "-Dmemgen.engine.max-batch=" + clients, "-Dmemgen.engine.max-queue=" + 4 * clients,
          "-Dmemgen.openai.max-concurrent-per-client=" + 4 * clients, "-Dmemgen.log.bootstrap=" + broker.bootstrapServers(),
          "-Dmemgen.log.spool-dir=" + work.resolve("spool")));
      if (memoryDir != null) {
        cmd.add("-Dmemgen.memory.dir=" + memoryDir.toAbsolutePath());
      }
      cmd.addAll(List.of("-jar", jar.toString()));
      Path log = work.resolve("reasoner-service.log");
      process = new ProcessBuilder(cmd).redirectErrorStream(true).redirectOutput(log.toFile()).start();
      Runtime.getRuntime().addShutdownHook(new Thread(process::destroyForcibly));
      long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(120);
      System.err.println("bench load: starting reasoner-service (log: " + log + ")");
      while (true) { // readiness: the OpenAI models list answers once the model is loaded and both servers listen
        if (!process.isAlive() || System.nanoTime() > deadline) {
          process.destroyForcibly();
          throw new StartupException("reasoner-service did not start; its log ends with: "
              + String.join(" | ", tail(log)), null);
        }
        try {
          if (client.send(HttpRequest.newBuilder(URI.create("http://127.0.0.1:" + http + "/v1/models")).build(),
              HttpResponse.BodyHandlers.ofString()).statusCode() == 200) {
            break;
          }
        } catch (java.io.IOException e) {
          // not listening yet
        }
        Thread.sleep(200);
      }
      channel = ManagedChannelBuilder.forAddress("127.0.0.1", grpc).usePlaintext().build();
    }

    @Override
    public Turn send(String question) {
      return api.equals("grpc") ? grpc(question) : openai(question);
    }

    @Override
    public String log() {
      return broker.bootstrapServers();
    }

    private Turn grpc(String question) {
      long start = System.nanoTime();
      long first = 0;
      int tokens = 0;
      String trajectory = null;
      try {
        Iterator<GenerateEvent> events = ReasonerGrpc.newBlockingStub(channel).withDeadlineAfter(300, TimeUnit.SECONDS)
            .generate(GenerateRequest.newBuilder().setChat(ChatMessages.newBuilder().addMessages(
                ChatMessage.newBuilder().setRole("user").setContent(question))).setMaxNewTokens(maxTokens)
                .setMemoryEnabled(memory.equals("on")).build());
        while (events.hasNext()) {
          GenerateEvent e = events.next();
          if (e.hasToken()) {
            first = tokens++ == 0 ? System.nanoTime() : first;
          } else if (e.hasFinished()) {
            trajectory = e.getFinished().getTrajectoryId();
          }
        }
        return new Turn(start, first, System.nanoTime(), tokens, null, trajectory);
      } catch (RuntimeException e) {
        return new Turn(start, 0, System.nanoTime(), 0, String.valueOf(e));
      }
    }

    private Turn openai(String question) {
      long start = System.nanoTime();
      long first = 0;
      int tokens = 0;
      String trajectory = null;
      try {
        ObjectNode body = Json.object();
        body.put("model", memory.equals("on") ? "memgen:default" : "memgen");
        body.putArray("messages").addObject().put("role", "user").put("content", question);
        body.put("max_tokens", maxTokens).put("temperature", 0).put("stream", true);
        body.putObject("stream_options").put("include_usage", true);
        HttpResponse<java.io.InputStream> r = client.send(HttpRequest.newBuilder(
            URI.create("http://127.0.0.1:" + http + "/v1/chat/completions")).header("Content-Type", "application/json")
            .POST(HttpRequest.BodyPublishers.ofString(body.toString())).build(), HttpResponse.BodyHandlers.ofInputStream());
        try (BufferedReader in = new BufferedReader(new InputStreamReader(r.body(), StandardCharsets.UTF_8))) {
          if (r.statusCode() != 200) {
            return new Turn(start, 0, System.nanoTime(), 0, "HTTP " + r.statusCode() + ": " + in.readLine());
          }
          for (String line; (line = in.readLine()) != null;) {
            if (!line.startsWith("data: ") || line.equals("data: [DONE]")) {
              continue;
            }
            JsonNode chunk = JSON.readTree(line.substring(6));
            if (first == 0 && !chunk.at("/choices/0/delta/content").asText("").isEmpty()) {
              first = System.nanoTime();
            }
            if (chunk.hasNonNull("usage")) {
              tokens = chunk.at("/usage/completion_tokens").asInt();
            }
            if (chunk.has("memgen")) {
              trajectory = chunk.at("/memgen/trajectory_id").asText();
            }
          }
        }
        return new Turn(start, first == 0 ? System.nanoTime() : first, System.nanoTime(), tokens, null, trajectory);
      } catch (Exception e) {
        return new Turn(start, 0, System.nanoTime(), 0, String.valueOf(e));
      }
    }

    @Override
    public void close() throws Exception {
      channel.shutdownNow();
      process.destroy();
      if (!process.waitFor(20, TimeUnit.SECONDS)) {
        process.destroyForcibly();
      }
      broker.close();
    }
  }

  private static List<String> tail(Path log) {
    try {
      List<String> lines = Files.readAllLines(log);
      return lines.subList(Math.max(0, lines.size() - 5), lines.size());
    } catch (java.io.IOException e) {
      return List.of("(no log)");
    }
  }

  private static int freePort() throws java.io.IOException {
    try (ServerSocket s = new ServerSocket(0)) {
      return s.getLocalPort();
    }
  }
}
