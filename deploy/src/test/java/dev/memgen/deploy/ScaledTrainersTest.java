package dev.memgen.deploy;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.google.protobuf.Timestamp;
import dev.memgen.log.ExperienceLog;
import dev.memgen.log.Topics;
import dev.memgen.log.broker.KafkaBroker;
import dev.memgen.log.store.AdapterStore;
import dev.memgen.log.store.Ledger;
import dev.memgen.model.checkpoint.Checkpoint;
import dev.memgen.model.checkpoint.DType;
import dev.memgen.model.checkpoint.TinyCheckpoint;
import dev.memgen.model.data.ArithmeticTasks;
import dev.memgen.model.text.ChatTemplate;
import dev.memgen.model.text.DelimiterTable;
import dev.memgen.model.text.TextTokenizer;
import dev.memgen.model.train.TokenizedExample;
import dev.memgen.proto.v1.Feedback;
import dev.memgen.proto.v1.FinishReason;
import dev.memgen.proto.v1.Trajectory;
import dev.memgen.rpc.TinyMemory;
import java.io.IOException;
import java.net.ServerSocket;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.time.Instant;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeSet;
import java.util.UUID;
import java.util.function.BooleanSupplier;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Trainers scaled out, as an operator runs them: two trainer-service processes in one trainer group share three
 * adapters on a real broker (trajectories keyed by adapter, each adapter's stream one partition). One member is
 * SIGKILLed while it trains a window; the other takes its adapters over when its session ends and trains on from the
 * adapter store. Afterwards every trajectory of every adapter is trained exactly once (by id, over the versions'
 * ledgers) and each adapter's versions are a single line of parents; and {@code memgen adapters rebuild}, in a process
 * of its own, trains a version the killed process published again: the same held-out score and tensors within 1e-3
 * (bit-identical in most runs). Its windows do not sample: replayed across processes, a window that rolled out and
 * ran trigger RL came out once bit-identical and once 0.02 apart (README, reproducible versions).
 */
class ScaledTrainersTest {
  private static final Duration SESSION = Duration.ofSeconds(6);
  private static final int PER_ROUND = 6;

  @TempDir Path tmp;
  private final List<Process> members = new ArrayList<>();
  private KafkaBroker broker;

  @AfterEach
  void stop() throws IOException {
    members.forEach(Process::destroyForcibly);
    Path keep = Path.of("target", "scaled-trainers"); // the members' logs, for a failure's post-mortem
    Files.createDirectories(keep);
    for (String m : List.of("a", "b")) {
      Path log = tmp.resolve("trainer-" + m + ".log");
      if (Files.exists(log)) {
        Files.copy(log, keep.resolve(log.getFileName()), java.nio.file.StandardCopyOption.REPLACE_EXISTING);
      }
    }
    Path records = tmp.resolve("store").resolve("adapters");
    if (Files.isDirectory(records)) { // the version records (small), for the same reason
      try (var files = Files.walk(records)) {
        for (Path f : files.filter(Files::isRegularFile).toList()) {
          Path to = keep.resolve("adapters").resolve(records.relativize(f).toString());
          Files.createDirectories(to.getParent());
          Files.copy(f, to, java.nio.file.StandardCopyOption.REPLACE_EXISTING);
        }
      }
    }
    if (broker != null) {
      broker.stop();
    }
  }

  @Test
  void twoTrainersShareThreeAdaptersAndHandThemOverWhenOneIsKilledMidWindow() throws Exception {
    Path model = tmp.resolve("model");
    Path memory = tmp.resolve("memory");
    TinyCheckpoint.write(model, TinyCheckpoint.tiny("qwen2"), DType.F32, 1, 7);
    TinyMemory.write(model, memory, DelimiterTable.DEFAULT);
    String fingerprint = Checkpoint.open(model).fingerprint();
    broker = KafkaBroker.start(tmp.resolve("kafka"), 0);
    try (ExperienceLog log = new ExperienceLog(broker.bootstrapServers())) {
      log.ensureTopics(3);
    }
    List<String> adapters = adaptersOnDistinctPartitions(3);
    Path store = tmp.resolve("store");
    Path logA = start("a", model, memory, store, adapters);
    Path logB = start("b", model, memory, store, adapters);
    await(Duration.ofMinutes(2), () -> owned(logA).size() + owned(logB).size() == 3 && !owned(logA).isEmpty()
        && !owned(logB).isEmpty(), () -> "both members hold adapters: a " + owned(logA) + ", b " + owned(logB));

    Map<String, Set<String>> sent = new HashMap<>();
    adapters.forEach(a -> sent.put(a, new TreeSet<>()));
    try (ExperienceLog log = new ExperienceLog(broker.bootstrapServers());
        TextTokenizer tok = TextTokenizer.load(model)) {
      for (int round = 0; round < 2; round++) {
        for (String a : adapters) {
          sent.get(a).addAll(send(log, tok, a, fingerprint, 100L * round + adapters.indexOf(a)));
        }
      }
      AdapterStore s = AdapterStore.open(store);
      await(Duration.ofMinutes(2), () -> adapters.stream().allMatch(a -> latest(s, a) >= 2),
          () -> "every adapter has a trained version: " + adapters.stream().map(a -> a + " v" + latest(s, a)).toList());

      // Member a is SIGKILLed as it trains a window: more traffic for its adapters makes one due.
      Path killedLog = logA;
      Path survivorLog = logB;
      List<String> victimHeld = owned(killedLog);
      int windowsBefore = windowsStarted(killedLog);
      for (String a : victimHeld) {
        sent.get(a).addAll(send(log, tok, a, fingerprint, 1000L + adapters.indexOf(a)));
      }
      await(Duration.ofMinutes(2), () -> windowsStarted(killedLog) > windowsBefore,
          () -> "member a starts a window: " + tail(killedLog));
      members.get(0).destroyForcibly().waitFor(); // SIGKILL on Linux
      assertFalse(published(killedLog, windowsStarted(killedLog) - 1),
          "killed in the middle of a window (its version not stored); its log:\n" + tail(killedLog));

      await(Duration.ofMinutes(2), () -> owned(survivorLog).containsAll(adapters),
          () -> "the survivor takes every adapter over: " + owned(survivorLog) + "\n" + tail(survivorLog));
      for (String a : adapters) {
        sent.get(a).addAll(send(log, tok, a, fingerprint, 2000L + adapters.indexOf(a)));
      }
      await(Duration.ofMinutes(3), () -> adapters.stream().allMatch(a -> trained(s, a).size() >= sent.get(a).size()),
          () -> "every trajectory trained: " + adapters.stream().map(a -> a + " " + trained(s, a).size() + "/"
              + sent.get(a).size()).toList() + "\n" + tail(survivorLog));

      for (String a : adapters) {
        List<String> ids = trained(s, a);
        assertEquals(sent.get(a), new TreeSet<>(ids), a + ": the trained ids are the ones sent");
        assertEquals(new HashSet<>(ids).size(), ids.size(), a + ": no trajectory trained twice");
        List<AdapterStore.Version> versions = s.versions(a);
        assertTrue(versions.size() >= 3, a + ": trained versions were published: " + versions.size());
        for (AdapterStore.Version v : versions) {
          assertEquals(v.version() - 1, v.parent(), a + " v" + v.version() + ": a single line of parents");
        }
      }
      assertFalse(victimHeld.isEmpty(), "the victim held adapters when it was killed");

      // Audit: a version the killed process trained, rebuilt here from its parent and the log.
      String audited = victimHeld.get(0);
      // In a process of its own, as `./memgen adapters rebuild` runs (with MKL_CBWR=AUTO, as the launcher sets it).
      ProcessBuilder pb = new ProcessBuilder(Path.of(System.getProperty("java.home"), "bin", "java").toString(), "-cp",
          System.getProperty("java.class.path"), "-Dai.djl.offline=true", "dev.memgen.cli.Main", "adapters", "rebuild",
          audited, "2", "--store", store.toString(), "--bootstrap", broker.bootstrapServers(), "--model", model.toString(),
          "--eval-set", "arithmetic:24", "--eval-max-new-tokens", "6", "--work", tmp.resolve("rebuild").toString())
          .redirectError(tmp.resolve("rebuild.err").toFile());
      pb.environment().put("MKL_CBWR", "AUTO");
      pb.environment().put("MKL_DYNAMIC", "FALSE");
      Process p = pb.start();
      String[] lines = new String(p.getInputStream().readAllBytes(), java.nio.charset.StandardCharsets.UTF_8).strip()
          .split("\n");
      int exit = p.waitFor();
      assertEquals(0, exit, String.join("\n", lines) + "\n" + Files.readString(tmp.resolve("rebuild.err")));
      com.fasterxml.jackson.databind.JsonNode rebuilt = new com.fasterxml.jackson.databind.ObjectMapper()
          .readTree(lines[lines.length - 1]);
      // Bitwise here in most runs; in some (a member training two adapters' windows at once) the float sums differed in
      // the last bits. VersionRebuildTest holds the bitwise claim for one process; across processes, close and equal.
      System.err.println("rebuild: " + rebuilt);
      assertTrue(rebuilt.get("max_abs_diff").asDouble() < 1e-3, rebuilt.toString());
      assertEquals(rebuilt.get("stored_accuracy").asDouble(), rebuilt.get("rebuilt_accuracy").asDouble(), rebuilt.toString());
      assertEquals(s.ledger(audited, 2).ids(Ledger.Outcome.TRAINED).size(), rebuilt.get("trajectories").asInt());
    }
  }

  /** Starts a trainer-service member of the group; returns its log file. */
  private Path start(String member, Path model, Path memory, Path store, List<String> adapters) throws IOException {
    Path root = Path.of("").toAbsolutePath().getParent(); // tests run in deploy/
    Path jar = root.resolve("trainer-service/target/quarkus-app/quarkus-run.jar");
    assertTrue(Files.isRegularFile(jar), jar + " (built by the trainer-service module's package phase)");
    Path logFile = tmp.resolve("trainer-" + member + ".log");
    List<String> cmd = new ArrayList<>(List.of(Path.of(System.getProperty("java.home"), "bin", "java").toString(),
        "-Xmx1g",
        "-Dmemgen.log.bootstrap=" + broker.bootstrapServers(),
        "-Dmemgen.model.dir=" + model,
        "-Dmemgen.memory.dir=" + memory,
        "-Dmemgen.adapters.store=" + store,
        "-Dmemgen.trainer.work-dir=" + tmp.resolve("work-" + member),
        "-Dmemgen.trainer.adapters=" + String.join(",", adapters),
        "-Dmemgen.trainer.member=" + member,
        "-Dmemgen.trainer.group-session-timeout=" + SESSION,
        "-Dmemgen.trainer.window=" + PER_ROUND,
        "-Dmemgen.trainer.max-window-wait=PT2S",
        "-Dmemgen.trainer.feedback-grace=PT0S",
        "-Dmemgen.trainer.sft-steps=6",
        "-Dmemgen.trainer.sft-batch=4",
        "-Dmemgen.trainer.eval-set=arithmetic:24",
        "-Dmemgen.trainer.eval-max-new-tokens=6",
        "-Dmemgen.trainer.gate-tolerance=100",

        "-Dquarkus.http.port=" + freePort(),
        "-Dquarkus.grpc.server.port=" + freePort(),
        "-jar", jar.toString()));
    ProcessBuilder pb = new ProcessBuilder(cmd).redirectErrorStream(true).redirectOutput(logFile.toFile());
    pb.environment().put("MKL_CBWR", "AUTO"); // as deploy/local/services.sh starts a trainer
    pb.environment().put("MKL_DYNAMIC", "FALSE");
    members.add(pb.start());
    return logFile;
  }

  /** Trajectories of correct answers for {@code adapter}, keyed as the reasoner keys them, each with a reward of 1. */
  private static List<String> send(ExperienceLog log, TextTokenizer tok, String adapter, String fingerprint, long seed)
      throws Exception {
    List<String> ids = new ArrayList<>();
    for (ArithmeticTasks.Example e : ArithmeticTasks.generate(ArithmeticTasks.Domain.B, PER_ROUND, 2, seed)) {
      TokenizedExample x = TokenizedExample.of(tok, ChatTemplate.userPrompt(e.prompt()), e.answer());
      String id = UUID.randomUUID().toString();
      Trajectory.Builder t = Trajectory.newBuilder().setTrajectoryId(id).setSessionId("s-" + id).setAdapterName(adapter)
          .setWeaverVersion(1).setBaseFingerprint(fingerprint).setFinishReason(FinishReason.STOP_TOKEN).setSchemaVersion(1)
          .setMemoryEnabled(true).setCreatedAt(Timestamp.newBuilder().setSeconds(Instant.now().getEpochSecond()));
      for (int p : x.prompt()) {
        t.addPromptTokenIds(p);
      }
      for (int a : x.answer()) {
        t.addCompletionTokenIds(a);
      }
      log.publish(Topics.TRAJECTORIES, adapter, t.build()).get();
      log.publish(Topics.FEEDBACK, id, Feedback.newBuilder().setTrajectoryId(id).setReward(1.0).setSource("verifier")
          .setFeedbackId(UUID.randomUUID().toString()).setSchemaVersion(1).build()).get();
      ids.add(id);
    }
    return ids;
  }

  /** Three adapter names whose records land on three different partitions, so each member trains one or two. */
  private static List<String> adaptersOnDistinctPartitions(int n) {
    List<String> out = new ArrayList<>();
    Set<Integer> taken = new HashSet<>();
    for (int i = 0; out.size() < n; i++) {
      String name = "fleet-" + i;
      if (taken.add(Topics.partitionOf(name, 3))) {
        out.add(name);
      }
    }
    return out;
  }

  private static long latest(AdapterStore s, String adapter) {
    try {
      return s.latest(adapter).map(AdapterStore.Version::version).orElse(0L);
    } catch (IOException e) {
      throw new IllegalStateException(e);
    }
  }

  /** The trained ids over every version's ledger, in version order (a duplicate shows twice). */
  private static List<String> trained(AdapterStore s, String adapter) {
    try {
      List<String> ids = new ArrayList<>();
      for (AdapterStore.Version v : s.versions(adapter)) {
        ids.addAll(s.ledger(adapter, v.version()).ids(Ledger.Outcome.TRAINED));
      }
      return ids;
    } catch (IOException e) {
      throw new IllegalStateException(e);
    }
  }

  /** The adapters a member holds now, from its log's hand-over lines. */
  private static List<String> owned(Path log) {
    List<String> held = new ArrayList<>();
    for (String line : lines(log)) {
      int at = line.indexOf(" now trains ");
      int gone = line.indexOf(" gives up ");
      if (at >= 0) {
        held.add(line.substring(at + 12).split(" ")[0]);
      } else if (gone >= 0) {
        held.remove(line.substring(gone + 10).split(" ")[0]);
      }
    }
    return held;
  }

  private static int windowsStarted(Path log) {
    return (int) lines(log).stream().filter(l -> l.contains("training window of")).count();
  }

  /** Whether the member published after its {@code n}-th window start (0-based). */
  private static boolean published(Path log, int n) {
    int started = -1;
    for (String line : lines(log)) {
      if (line.contains("training window of")) {
        started++;
      } else if (started >= n && line.contains("published ") && line.contains(" trained on ")) {
        return true;
      }
    }
    return false;
  }

  private static List<String> lines(Path log) {
    try {
      return Files.exists(log) ? Files.readAllLines(log) : List.of();
    } catch (IOException e) {
      return List.of();
    }
  }

  private static String tail(Path log) {
    List<String> l = lines(log);
    return String.join("\n", l.subList(Math.max(0, l.size() - 40), l.size()));
  }

  private static int freePort() throws IOException {
    try (ServerSocket s = new ServerSocket(0)) {
      return s.getLocalPort();
    }
  }

  private interface Message {
    String get();
  }

  private static void await(Duration timeout, BooleanSupplier done, Message what) throws InterruptedException {
    long deadline = System.nanoTime() + timeout.toNanos();
    while (!done.getAsBoolean()) {
      if (System.nanoTime() > deadline) {
        throw new AssertionError("timed out after " + timeout + ": " + what.get());
      }
      Thread.sleep(100);
    }
  }
}
