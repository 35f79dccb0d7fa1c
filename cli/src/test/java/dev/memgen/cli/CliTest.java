package dev.memgen.cli;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.List;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** The commands as a user runs them: results on stdout, messages on stderr, exit codes that scripts can test. */
class CliTest {
  static final ObjectMapper JSON = new ObjectMapper();
  @TempDir Path tmp;

  record Run(int exit, String out, String err) {
    String lastLine() {
      String[] lines = out.strip().split("\n");
      return lines[lines.length - 1];
    }
  }

  static synchronized Run memgen(String... args) {
    PrintStream oldOut = System.out;
    PrintStream oldErr = System.err;
    ByteArrayOutputStream out = new ByteArrayOutputStream();
    ByteArrayOutputStream err = new ByteArrayOutputStream();
    try {
      System.setOut(new PrintStream(out, true, StandardCharsets.UTF_8));
      System.setErr(new PrintStream(err, true, StandardCharsets.UTF_8));
      int exit = Main.run(args);
      return new Run(exit, out.toString(StandardCharsets.UTF_8), err.toString(StandardCharsets.UTF_8));
    } finally {
      System.setOut(oldOut);
      System.setErr(oldErr);
    }
  }

  /** A checkpoint written by the independent numpy reference: it has no tokenizer.json. */
  Path referenceCheckpoint() throws Exception {
    Path dir = tmp.resolve("ref");
    Process p = new ProcessBuilder("python3", "../model/src/test/resources/reference/hf_reference.py", "make-checkpoint",
        "--out", dir.toString(), "--arch", "llama", "--dtype", "bf16", "--shards", "2", "--seed", "3")
        .redirectErrorStream(true).start();
    String log = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
    assertTrue(p.waitFor(60, TimeUnit.SECONDS) && p.exitValue() == 0, log);
    return dir;
  }

  static float[] floats(JsonNode a) {
    float[] f = new float[a.size()];
    for (int i = 0; i < f.length; i++) {
      f[i] = (float) a.get(i).asDouble();
    }
    return f;
  }

  @Test
  void forwardPrintsLogitsAndHiddenAsOneJsonLineWithoutATokenizer() throws Exception {
    Path dir = referenceCheckpoint();
    assertFalse(Files.exists(dir.resolve("tokenizer.json")));
    Run run = memgen("forward", "--model", dir.toString(), "--ids", "3,5,7");
    assertEquals(0, run.exit(), run.err());
    JsonNode ours = JSON.readTree(run.lastLine());

    Process p = new ProcessBuilder("python3", "../model/src/test/resources/reference/hf_reference.py", "forward",
        "--model", dir.toString(), "--ids", "3,5,7").start();
    JsonNode golden = JSON.readTree(p.getInputStream().readAllBytes());
    assertTrue(p.waitFor(60, TimeUnit.SECONDS) && p.exitValue() == 0);
    for (String key : new String[] {"logits", "hidden"}) {
      float[] a = floats(ours.get(key));
      float[] b = floats(golden.get(key));
      assertEquals(b.length, a.length, key);
      double maxDiff = 0;
      double maxRef = 0;
      for (int i = 0; i < a.length; i++) {
        maxDiff = Math.max(maxDiff, Math.abs(a[i] - b[i]));
        maxRef = Math.max(maxRef, Math.abs(b[i]));
      }
      assertTrue(maxDiff / maxRef < 1e-4, key + " relative error " + maxDiff / maxRef);
    }
  }

  @Test
  void makeTinyThenGenerateTextAndIds() {
    Path dir = tmp.resolve("tiny");
    Run made = memgen("make-tiny", "--out", dir.toString(), "--arch", "llama", "--dtype", "bf16", "--shards", "2");
    assertEquals(0, made.exit(), made.err());
    assertTrue(Files.exists(dir.resolve("tokenizer.json")) && Files.exists(dir.resolve("model.safetensors.index.json")));

    Run text = memgen("generate", "--model", dir.toString(), "--prompt", "hello", "--max-new-tokens", "5");
    assertEquals(0, text.exit(), text.err());
    assertTrue(text.err().contains("prompt tokens"), "timings go to stderr");

    Run a = memgen("generate", "--model", dir.toString(), "--ids", "1,2,3", "--max-new-tokens", "8", "--temperature", "0.9",
        "--top-p", "0.9", "--seed", "4");
    Run b = memgen("generate", "--model", dir.toString(), "--ids", "1,2,3", "--max-new-tokens", "8", "--temperature", "0.9",
        "--top-p", "0.9", "--seed", "4");
    assertEquals(0, a.exit(), a.err());
    assertEquals(a.out(), b.out(), "same seed, same tokens");
    int[] ids = Ids.parse(a.out().strip());
    assertTrue(ids.length >= 1 && ids.length <= 8);
    Run greedy = memgen("generate", "--model", dir.toString(), "--ids", "1,2,3", "--max-new-tokens", "8");
    assertArrayEquals(Ids.parse(greedy.out().strip()), Ids.parse(memgen("generate", "--model", dir.toString(), "--ids",
        "1,2,3", "--max-new-tokens", "8", "--temperature", "0").out().strip()));
  }

  @Test
  void initMemoryWritesAMemoryBoundToItsBase() throws IOException {
    Path base = tmp.resolve("tiny");
    assertEquals(0, memgen("make-tiny", "--out", base.toString()).exit());
    Path mem = tmp.resolve("mem");
    Run init = memgen("init-memory", "--model", base.toString(), "--out", mem.toString(), "--prompt-k", "4", "--lora-r", "8");
    assertEquals(0, init.exit(), init.err());
    JsonNode manifest = JSON.readTree(mem.resolve("manifest.json").toFile());
    assertEquals(4, manifest.get("weaver").get("prompt_k").asInt());
    assertEquals(8, manifest.get("weaver").get("lora").get("r").asInt());
    assertEquals(dev.memgen.model.checkpoint.Checkpoint.open(base).fingerprint(), manifest.get("base_fingerprint").asText());
    assertTrue(Files.size(mem.resolve("memory.safetensors")) > 0);
    Run bad = memgen("init-memory", "--model", base.toString(), "--out", tmp.resolve("m2").toString(), "--lora-targets", "w_proj");
    assertEquals(2, bad.exit());
    assertTrue(bad.err().contains("w_proj"), bad.err());
  }

  @Test
  void generateWithMemoryTracesItsInsertions() throws IOException {
    Path base = tmp.resolve("tiny");
    assertEquals(0, memgen("make-tiny", "--out", base.toString()).exit());
    Path mem = tmp.resolve("mem");
    assertEquals(0, memgen("init-memory", "--model", base.toString(), "--out", mem.toString(), "--prompt-k", "3").exit());
    Run run = memgen("generate", "--model", base.toString(), "--memory", mem.toString(), "--ids", "257,104,105,258,10,257",
        "--max-new-tokens", "6", "--trace", "--trigger", "inactive");
    assertEquals(0, run.exit(), run.err());
    assertTrue(run.err().contains("latents: PROMPT    k=3 at stream position 6"), run.err());
    assertEquals(6, Ids.parse(run.out().strip()).length);

    Path other = tmp.resolve("other");
    assertEquals(0, memgen("make-tiny", "--out", other.toString(), "--seed", "1").exit());
    Run wrongBase = memgen("generate", "--model", other.toString(), "--memory", mem.toString(), "--ids", "1,2");
    assertEquals(2, wrongBase.exit());
    assertTrue(wrongBase.err().contains("another base model"), wrongBase.err());
  }

  @Test
  void memoryServedInSeparateProcessesGivesTheSameTokensAndItsAbsenceIsSkipped() throws Exception {
    Path base = tmp.resolve("tiny");
    assertEquals(0, memgen("make-tiny", "--out", base.toString()).exit());
    Path mem = tmp.resolve("mem");
    // Delimiters a random model meets at once: every printable ASCII character but '|', and U+FFFD (a lone byte >= 0x80).
    StringBuilder every = new StringBuilder("\uFFFD");
    for (char c = 32; c < 127; c++) {
      if (c != '|') {
        every.append('|').append(c);
      }
    }
    assertEquals(0, memgen("init-memory", "--model", base.toString(), "--out", mem.toString(), "--prompt-k", "3",
        "--inference-k", "2", "--delimiters", every.toString()).exit());
    String[] prompt = {"--prompt", "Tell me a story", "--max-new-tokens", "24", "--trace", "--trigger", "sample", "--seed", "5"};
    Run embedded = memgen(concat(new String[] {"generate", "--model", base.toString(), "--memory", mem.toString()}, prompt));
    assertEquals(0, embedded.exit(), embedded.err());
    try (ChildServices services = new ChildServices()) {
      int weaver = services.serve("weaver", "--model", base.toString(), "--memory", mem.toString());
      int trigger = services.serve("trigger", "--model", base.toString(), "--memory", mem.toString());
      Run remote = memgen(concat(new String[] {"generate", "--model", base.toString(), "--weaver-at", "127.0.0.1:" + weaver,
          "--trigger-at", "127.0.0.1:" + trigger}, prompt));
      assertEquals(0, remote.exit(), remote.err());
      assertEquals(embedded.out(), remote.out(), "the same text");
      assertEquals(traceLines(embedded.err()), traceLines(remote.err()), "the same insertions and decisions");
      assertTrue(traceLines(remote.err()).contains("latents: INFERENCE"), remote.err());
    }
    Run gone = memgen("generate", "--model", base.toString(), "--weaver-at", "127.0.0.1:1", "--ids", "1,2,3",
        "--max-new-tokens", "5", "--trace");
    assertEquals(0, gone.exit(), "no weaver: the generation still completes");
    assertTrue(gone.err().contains("WEAVER_UNAVAILABLE"), gone.err());
    Run orphan = memgen("generate", "--model", base.toString(), "--trigger-at", "127.0.0.1:1", "--ids", "1");
    assertEquals(2, orphan.exit());
    assertTrue(orphan.err().contains("--trigger-at needs --weaver-at"), orphan.err());
  }

  @Test
  void benchMemgenReportsEveryVariant() throws Exception {
    Path base = tmp.resolve("tiny");
    assertEquals(0, memgen("make-tiny", "--out", base.toString()).exit());
    Run run = memgen("bench", "memgen", "--model", base.toString(), "--new-tokens", "16", "--insertions", "2", "--k", "2",
        "--runs", "1", "--warmup", "0", "--grpc-warm-up-calls", "20");
    assertEquals(0, run.exit(), run.err());
    JsonNode json = new ObjectMapper().readTree(run.lastLine());
    for (String key : List.of("vanilla_tps", "memgen_inprocess_tps", "memgen_grpc_tps", "reprefill_tps",
        "reprefill_cached_tail_tps", "inprocess_trigger_ms", "inprocess_weave_ms", "grpc_trigger_ms", "grpc_weave_ms")) {
      assertTrue(json.get(key).asDouble() > 0, key + " in " + run.lastLine());
    }
    assertEquals(2, json.get("insertions").asInt());
    assertEquals(20, json.get("grpc_warm_up_weaves").asInt(), "--grpc-warm-up-calls: " + run.lastLine());
    assertEquals(20, json.get("grpc_warm_up_trigger_calls").asInt(), "--grpc-warm-up-calls: " + run.lastLine());
    assertTrue(json.get("same_tokens").asBoolean(), "every strategy made the same insertions and tokens: " + run.lastLine());
  }

  static String[] concat(String[] a, String[] b) {
    String[] all = Arrays.copyOf(a, a.length + b.length);
    System.arraycopy(b, 0, all, a.length, b.length);
    return all;
  }

  /** The --trace lines (latents, trigger decisions, skips), without timings. */
  static String traceLines(String err) {
    return err.lines().filter(l -> l.startsWith("latents:") || l.startsWith("trigger:") || l.startsWith("skipped:"))
        .collect(java.util.stream.Collectors.joining("\n"));
  }

  /** The demo itself runs in deploy/DemoSmokeTest (it needs the services); here: what it refuses, before it starts any. */
  @Test
  void demoRefusesACorruptCachedBaseAndBadFlagsByName() throws IOException {
    Path cache = tmp.resolve("demo-cache");
    Files.createDirectories(cache.resolve("base"));
    Files.writeString(cache.resolve("base").resolve("config.json"), "{");
    Run corrupt = memgen("demo", "--dir", cache.toString());
    assertEquals(2, corrupt.exit(), corrupt.err());
    assertTrue(corrupt.err().contains("the cached base " + cache.resolve("base")) && corrupt.err().contains("config.json")
        && corrupt.err().contains("delete " + cache.resolve("base") + " and run again"), corrupt.err());
    assertEquals(1, corrupt.err().strip().lines().count(), "one line: " + corrupt.err());
    Run flag = memgen("demo", "--no-such-flag");
    assertEquals(2, flag.exit());
    assertTrue(flag.err().contains("Unknown option: '--no-such-flag'"), flag.err());
    Run zero = memgen("demo", "--dir", cache.toString(), "--requests", "0");
    assertEquals(2, zero.exit());
    assertTrue(zero.err().contains("--requests"), zero.err());
  }

  /** The loop (bench loop and the demo) when its broker cannot start: one line naming it and the fix, nothing left running. */
  @Test
  void theLoopReportsABrokerThatDoesNotStartInOneLine() throws IOException {
    Path base = tmp.resolve("tiny");
    assertEquals(0, memgen("make-tiny", "--out", base.toString()).exit());
    Path work = tmp.resolve("loop");
    Files.createDirectories(work);
    Files.writeString(work.resolve("kafka"), "not a directory"); // where the broker keeps its data
    Run r = memgen("bench", "loop", "--model", base.toString(), "--work", work.toString(), "--requests", "2");
    assertEquals(3, r.exit(), r.err());
    String line = r.err().strip().lines().filter(l -> l.startsWith("memgen: ")).findFirst().orElse("");
    assertTrue(line.contains("the Kafka broker did not start in " + work.resolve("kafka")) && line.contains("fix:"), r.err());
    assertFalse(r.err().contains("\tat "), "no stack trace: " + r.err());
    assertEquals("", r.out(), "no result on stdout");
    assertFalse(ProcessHandle.current().children().findAny().isPresent(), "nothing left running");
  }

  @Test
  void operatorCommandsNameAnUnreachableService() throws IOException {
    int port;
    try (java.net.ServerSocket s = new java.net.ServerSocket(0)) {
      port = s.getLocalPort(); // closed again: nothing listens there
    }
    Run status = memgen("trainer", "status", "--trainer", "127.0.0.1:" + port);
    assertEquals(1, status.exit());
    assertTrue(status.err().contains("127.0.0.1:" + port + ": UNAVAILABLE"), status.err());
    Run feedback = memgen("feedback", "some-trajectory", "1", "--reasoner", "127.0.0.1:" + port);
    assertEquals(1, feedback.exit());
    assertTrue(feedback.err().contains("UNAVAILABLE"), feedback.err());
    assertEquals(2, memgen("feedback", "some-trajectory", "1", "--reasoner", "nowhere").exit(), "HOST:PORT required");
  }

  @Test
  void tasksWritesJsonlThatTheBoxedScorerAccepts() throws IOException {
    Path file = tmp.resolve("b.jsonl");
    Run run = memgen("tasks", "--domain", "B", "--n", "50", "--seed", "3", "--out", file.toString());
    assertEquals(0, run.exit(), run.err());
    assertEquals(50, new ObjectMapper().readTree(run.lastLine()).get("examples").asInt());
    List<String> lines = Files.readAllLines(file);
    assertEquals(50, lines.size());
    for (String line : lines) {
      JsonNode e = new ObjectMapper().readTree(line);
      assertTrue(e.get("prompt").asText().startsWith("Q%:"), line);
      assertTrue(dev.memgen.model.data.BoxedAnswer.matches(e.get("answer").asText(), e.get("boxed").asText()), line);
    }
    Run toStdout = memgen("tasks", "--domain", "B", "--n", "50", "--seed", "3");
    assertEquals(String.join("\n", lines), toStdout.out().strip(), "the same problems on stdout");
    Run bad = memgen("tasks", "--domain", "D");
    assertEquals(2, bad.exit());
  }

  @Test
  void evalScoresVanillaAndMemgenSideBySideAndNamesBadRecords() throws IOException {
    Path base = tmp.resolve("tiny");
    assertEquals(0, memgen("make-tiny", "--out", base.toString()).exit());
    Path mem = tmp.resolve("mem");
    assertEquals(0, memgen("init-memory", "--model", base.toString(), "--out", mem.toString(), "--prompt-k", "2").exit());
    Path data = tmp.resolve("a.jsonl");
    assertEquals(0, memgen("tasks", "--domain", "A", "--n", "6", "--out", data.toString()).exit());
    Files.writeString(data, "{oops\n", java.nio.file.StandardOpenOption.APPEND);

    Run run = memgen("eval", "--model", base.toString(), "--memory", mem.toString(), "--data", data.toString(),
        "--on-bad-record", "skip", "--max-new-tokens", "6", "--batch", "4");
    assertEquals(0, run.exit(), run.err());
    assertTrue(run.err().contains("skipped " + data + ":7: not JSON"), run.err());
    JsonNode json = new ObjectMapper().readTree(run.lastLine());
    assertEquals(6, json.get("examples").asInt());
    assertEquals(1, json.get("skipped").asInt());
    for (String variant : List.of("vanilla", "memgen")) {
      JsonNode v = json.get(variant);
      assertEquals(6, v.get("examples").asInt(), variant);
      assertTrue(v.get("accuracy").asDouble() >= 0 && v.get("tokens_per_example").asDouble() > 0, variant);
    }
    assertTrue(json.get("memgen").has("invocation_rate") && !json.get("vanilla").has("invocation_rate"));

    Run strict = memgen("eval", "--model", base.toString(), "--data", data.toString());
    assertEquals(2, strict.exit());
    assertTrue(strict.err().contains(data + ":7: not JSON"), strict.err());
  }

  @Test
  void badInputExitsWithTwoAndANamedError() throws IOException {
    Run missing = memgen("forward", "--model", tmp.resolve("nothing").toString(), "--ids", "1");
    assertEquals(2, missing.exit());
    assertTrue(missing.err().contains("nothing") && missing.err().contains("not a checkpoint directory"), missing.err());
    assertEquals("", missing.out());

    Path dir = tmp.resolve("tiny");
    assertEquals(0, memgen("make-tiny", "--out", dir.toString()).exit());
    Run outOfVocab = memgen("forward", "--model", dir.toString(), "--ids", "1,99999");
    assertEquals(2, outOfVocab.exit());
    assertTrue(outOfVocab.err().contains("99999"), outOfVocab.err());
    Run badIds = memgen("generate", "--model", dir.toString(), "--ids", "1,x");
    assertEquals(2, badIds.exit());
    assertTrue(badIds.err().contains("--ids"), badIds.err());
    Run badTopP = memgen("generate", "--model", dir.toString(), "--ids", "1", "--temperature", "1", "--top-p", "1.5");
    assertEquals(2, badTopP.exit());
    assertTrue(badTopP.err().contains("top_p"), badTopP.err());
  }

  /**
   * The training commands chained on a base `pretrain` made: each writes a memory the next one starts from, one
   * version up, and says so in its JSON line; a bad training line is named and skipped.
   */
  @Test
  void pretrainThenSftGrpoAndTriggerRlChain() throws IOException {
    Path base = tmp.resolve("base");
    Run pre = memgen("pretrain", "--out", base.toString(), "--steps", "3", "--batch", "4", "--eval", "0");
    assertEquals(0, pre.exit(), pre.err());
    assertEquals(3, JSON.readTree(pre.lastLine()).get("steps").asInt());
    assertEquals(0, memgen("forward", "--model", base.toString(), "--ids", "1,2,3").exit(), "a loadable HF checkpoint");
    assertTrue(Files.isRegularFile(base.resolve("tokenizer.json")));

    Path mem = tmp.resolve("mem");
    assertEquals(0, memgen("init-memory", "--model", base.toString(), "--out", mem.toString(), "--prompt-k", "2",
        "--inference-k", "2", "--lora-r", "4").exit());
    Path data = tmp.resolve("train.jsonl");
    assertEquals(0, memgen("tasks", "--domain", "B", "--n", "8", "--out", data.toString()).exit());
    Files.writeString(data, "{\"messages\": [{\"role\": \"user\", \"content\": \"Q%:1+2=?\"}, "
        + "{\"role\": \"assistant\", \"content\": \"1+2=3.\\\\boxed{3}\"}]}\n[]\n", java.nio.file.StandardOpenOption.APPEND);

    Path sft = tmp.resolve("sft");
    Run sftRun = memgen("train", "sft", "--model", base.toString(), "--memory", mem.toString(), "--data", data.toString(),
        "--out", sft.toString(), "--steps", "3", "--batch", "4", "--checkpoint-every", "2", "--on-bad-record", "skip");
    assertEquals(0, sftRun.exit(), sftRun.err());
    assertTrue(sftRun.err().contains("skipped " + data + ":10: "), sftRun.err());
    JsonNode sftJson = JSON.readTree(sftRun.lastLine());
    assertEquals(9, sftJson.get("examples").asInt());
    assertEquals(2, sftJson.get("version").asInt());
    assertFalse(Files.exists(sft.resolve("checkpoint")));

    Path grpo = tmp.resolve("grpo");
    Run grpoRun = memgen("train", "grpo", "--model", base.toString(), "--memory", sft.toString(), "--data", data.toString(),
        "--out", grpo.toString(), "--steps", "2", "--problems", "2", "--group", "2", "--max-new-tokens", "4",
        "--on-bad-record", "skip");
    assertEquals(0, grpoRun.exit(), grpoRun.err());
    assertEquals(3, JSON.readTree(grpoRun.lastLine()).get("version").asInt());

    Path trigger = tmp.resolve("trigger");
    Run triggerRun = memgen("train", "trigger", "--model", base.toString(), "--memory", grpo.toString(), "--data",
        data.toString(), "--out", trigger.toString(), "--steps", "2", "--problems", "2", "--group", "2",
        "--max-new-tokens", "4", "--on-bad-record", "skip");
    assertEquals(0, triggerRun.exit(), triggerRun.err());
    JsonNode t = JSON.readTree(triggerRun.lastLine());
    assertEquals(4, t.get("version").asInt());
    assertTrue(t.has("final_invocation_rate"));

    Run eval = memgen("eval", "--model", base.toString(), "--memory", trigger.toString(), "--data", data.toString(),
        "--on-bad-record", "skip", "--max-new-tokens", "4");
    assertEquals(0, eval.exit(), eval.err());

    Run noData = memgen("train", "sft", "--model", base.toString(), "--memory", mem.toString(), "--data",
        tmp.resolve("none.jsonl").toString(), "--out", tmp.resolve("x").toString());
    assertEquals(2, noData.exit());
    assertTrue(noData.err().contains("none.jsonl"), noData.err());
  }

  /** `log stats|tail|replay` against a real broker: counts, decoded JSON lines, and dead letters replayed. */
  @Test
  void logCommandsInspectAndReplayTopicsOnARealBroker() throws Exception {
    try (dev.memgen.log.broker.KafkaBroker broker = dev.memgen.log.broker.KafkaBroker.start(tmp.resolve("kafka"), 0);
        dev.memgen.log.ExperienceLog log = new dev.memgen.log.ExperienceLog(broker.bootstrapServers())) {
      log.ensureTopics(1);
      log.publish(dev.memgen.log.Topics.TRAJECTORIES, "s1",
          dev.memgen.proto.v1.Trajectory.newBuilder().setTrajectoryId("t1").setSessionId("s1").addCompletionTokenIds(7).build()).get();
      var bad = new org.apache.kafka.clients.consumer.ConsumerRecord<String, byte[]>(dev.memgen.log.Topics.TRAJECTORIES, 0, 41L, "s2",
          dev.memgen.proto.v1.Trajectory.newBuilder().setTrajectoryId("t2").build().toByteArray());
      log.deadLetters("test", java.time.Duration.ofSeconds(30)).send(List.of(java.util.Map.entry(bad, "rejected for the test")));
      String b = broker.bootstrapServers();

      Run stats = memgen("log", "stats", "--bootstrap", b);
      assertEquals(0, stats.exit(), stats.err());
      JsonNode counts = JSON.readTree(stats.lastLine());
      assertEquals(1, counts.get("memgen.trajectories").get("records").asInt());
      assertEquals(1, counts.get("memgen.trajectories.dlq").get("records").asInt());

      Run tail = memgen("log", "tail", "--bootstrap", b, "--topic", "memgen.trajectories", "-n", "0");
      assertEquals(0, tail.exit(), tail.err());
      JsonNode line = JSON.readTree(tail.lastLine());
      assertEquals("t1", line.get("value").get("trajectoryId").asText());
      assertEquals(7, line.get("value").get("completionTokenIds").get(0).asInt());

      Run dead = memgen("log", "tail", "--bootstrap", b, "--topic", "memgen.trajectories.dlq");
      JsonNode deadLine = JSON.readTree(dead.lastLine());
      assertEquals("rejected for the test", deadLine.get("headers").get("memgen.dlq.reason").asText());
      assertEquals("memgen.trajectories-0@41", deadLine.get("headers").get("memgen.dlq.source").asText());

      Run replay = memgen("log", "replay", "--bootstrap", b, "--from", "memgen.trajectories.dlq", "--to", "memgen.trajectories");
      assertEquals(0, replay.exit(), replay.err());
      assertEquals(1, JSON.readTree(replay.lastLine()).get("records").asInt());
      assertEquals(2, JSON.readTree(memgen("log", "stats", "--bootstrap", b).lastLine()).get("memgen.trajectories").get("records").asInt());

      Run missing = memgen("log", "tail", "--bootstrap", b, "--topic", "nope");
      assertEquals(2, missing.exit());
      assertTrue(missing.err().contains("no topic 'nope'"), missing.err());
    }
  }
}
