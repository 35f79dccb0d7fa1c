package dev.memgen.cli;

import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.memgen.log.store.AdapterStore;
import dev.memgen.model.Decoder;
import dev.memgen.model.Engines;
import dev.memgen.model.checkpoint.Checkpoint;
import dev.memgen.model.checkpoint.Directories;
import dev.memgen.model.data.ArithmeticTasks;
import dev.memgen.model.data.BoxedAnswer;
import dev.memgen.model.eval.Evaluator;
import dev.memgen.model.generate.MemGenInterleaver;
import dev.memgen.model.memory.LoraConfig;
import dev.memgen.model.memory.Memory;
import dev.memgen.model.memory.MemoryManifest;
import dev.memgen.model.text.ChatTemplate;
import dev.memgen.model.text.DelimiterTable;
import dev.memgen.model.text.TextTokenizer;
import dev.memgen.model.train.Pretrain;
import dev.memgen.model.train.RejectionSampling;
import dev.memgen.model.train.Reward;
import dev.memgen.model.train.TokenizedExample;
import dev.memgen.proto.v1.AdapterPublished;
import dev.memgen.rpc.ReasonerMemory;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.OptionalInt;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

/**
 * The main job: an agent fleet whose answers get better from verifier rewards alone while the base never changes.
 * A real Kafka broker, the project's base (trained on the first run, cached under {@code --dir}), the reasoner,
 * trigger, weaver and trainer; a fleet of simulated agents sends tasks of domain A (what the base knows) and domain C
 * (longer chains, which it partly solves) and never a reference answer: the trainer's verifier scores the traffic and
 * its re-rollouts, trains the weaver and then the trigger (weaver frozen) on each window, gates each candidate and
 * publishes; serving swaps the weaver and trigger versions in. At the end the
 * frozen base, every published version and a parametric baseline (every base weight trained on the same traffic and
 * rewards) are evaluated greedily on held-out items, and {@code report.html} shows it.
 */
@Command(name = "demo", mixinStandardHelpOptions = true,
    description = "The self-improving fleet, end to end: base (trained once, cached), broker, services, simulated agents "
        + "rewarded by a verifier, weaver and trigger versions trained and swapped in; then base vs every version vs a "
        + "parametric baseline on held-out A and C (accuracy and invocation rate), report.html with charts. Last line: JSON.")
final class DemoCommand implements Callable<Integer> {
  @Option(names = "--dir", defaultValue = ".memgen", description = "cache for the base and the runs (default ${DEFAULT-VALUE})")
  Path dir;

  @Option(names = "--quick", description = "fewer requests (the cached base is reused; at most ~5 minutes once it is cached)")
  boolean quick;

  @Option(names = "--smoke", description = "a tiny random model and a few requests: the whole path in about a minute "
      + "(CI); a random model never earns the verifier's reward, so every answer is rewarded 1 instead; its accuracies "
      + "mean nothing") boolean smoke;

  @Option(names = "--distributed", description = "the reasoner, trigger, weaver and trainer as four processes over gRPC "
      + "(deploy/local/services.sh) instead of all in this JVM") boolean distributed;

  @Option(names = "--requests", description = "requests the fleet sends (default 256; --quick 128; --smoke 12)") Integer requests;

  @Option(names = "--clients", defaultValue = "4", description = "agents sending at once (default ${DEFAULT-VALUE})") int clients;

  @Option(names = "--window", description = "rewarded trajectories per training window, and the most one trains (default 64; --smoke 4)") Integer window;

  @Option(names = "--rollouts", defaultValue = "4", description = "re-rollouts per window prompt with the serving memory "
      + "(default ${DEFAULT-VALUE})") int rollouts;

  @Option(names = "--base-rollouts", defaultValue = "4", description = "re-rollouts per window prompt with the frozen base "
      + "alone, memory off (default ${DEFAULT-VALUE})") int baseRollouts;

  @Option(names = "--sft-steps", description = "weaver SFT updates per window (default 100; --smoke 4)") Integer sftSteps;

  @Option(names = "--trigger-steps", description = "trigger RL updates per window, the weaver frozen (MemGen's second "
      + "stage): the trigger decides where to recall, in serving and in the evaluation; 0 leaves it inactive (every "
      + "delimiter recalls, up to the cap) (default 16; --smoke 2)") Integer triggerSteps;

  @Option(names = "--eval", description = "held-out items per domain for the final evaluation (default 1000; --quick 500; "
      + "--smoke 16)") Integer eval;

  @Option(names = "--out", description = "the run's directory (default DIR/demo)") Path out;

  static final List<ArithmeticTasks.Domain> TRAFFIC = List.of(ArithmeticTasks.Domain.A, ArithmeticTasks.Domain.C);
  private static final long EVAL_SEED = 7_000_001L; // no traffic, gate or training pool uses it

  @Override
  public Integer call() throws Exception {
    long t0 = System.nanoTime();
    int nRequests = requests != null ? requests : smoke ? 12 : quick ? 128 : 256;
    int nWindow = window != null ? window : smoke ? 4 : 64;
    int nSft = sftSteps != null ? sftSteps : smoke ? 4 : 100;
    int nEval = eval != null ? eval : smoke ? 16 : quick ? 500 : 1000;
    int nTrigger = triggerSteps != null ? triggerSteps : smoke ? 2 : 16;
    if (nRequests < 1 || nWindow < 1 || nSft < 1 || nEval < 1 || clients < 1 || rollouts < 0 || baseRollouts < 0
        || nTrigger < 0) {
      throw new IllegalArgumentException("need --requests, --window, --sft-steps, --eval and --clients >= 1, --rollouts, "
          + "--base-rollouts and --trigger-steps >= 0");
    }
    boolean trigger = nTrigger > 0;
    MemGenInterleaver.TriggerMode mode = trigger ? MemGenInterleaver.TriggerMode.THRESHOLD : MemGenInterleaver.TriggerMode.INACTIVE;
    Path run = (out != null ? out : dir.resolve(smoke ? "demo-smoke" : "demo")).toAbsolutePath();
    Path base = smoke ? CachedBase.tiny(dir.resolve("tiny")) : CachedBase.trained(dir.resolve("base"));
    double baseSeconds = (System.nanoTime() - t0) / 1e9; // training the base on a first run; ~0 once cached
    Directories.deleteRecursively(run);
    Files.createDirectories(run);
    Path memory = run.resolve("memory");
    Checkpoint ckpt = Checkpoint.open(base);
    LoraConfig lora = new LoraConfig(16, 32, LoraConfig.REFERENCE.targets(), 0.0);
    Memory.init(memory, ckpt.config(), new MemoryManifest(1, ckpt.fingerprint(), ckpt.config().hiddenSize(),
        ckpt.config().numLayers(), 8, 8, "embeddings", lora, lora, DelimiterTable.DEFAULT, 3), 0);

    System.err.printf("demo: %d agents send %d requests (domains %s in turn), %s; windows of %d, %d + %d re-rollouts per "
        + "prompt (serving memory + base alone), %d SFT updates per window, %s%n", clients, nRequests, TRAFFIC,
        smoke ? "every answer rewarded 1 (smoke)" : "rewarded by the trainer's verifier only", nWindow, rollouts, baseRollouts,
        nSft, trigger ? nTrigger + " trigger RL updates per window (the trigger decides where to recall)"
            : "the trigger inactive (every delimiter recalls)");
    LoopBench.Result loop = new LoopBench(new LoopBench.Settings(Main.home(), base, memory, run.resolve("loop"), nRequests,
        nWindow, nSft, 48, smoke ? "accept" : "verifier", false, Duration.ofMinutes(10), TRAFFIC, rollouts, baseRollouts,
        clients, smoke ? 4 : 64, smoke ? 100 : 2, nWindow, nTrigger, mode.name().toLowerCase(), !distributed),
        line -> System.err.println("demo: " + line)).run();

    System.err.println("demo: evaluating the frozen base, every published version and the parametric baseline on " + nEval
        + " held-out items per domain");
    AdapterStore store = AdapterStore.open(run.resolve("loop").resolve("store"));
    List<DemoReport.Row> versions = new ArrayList<>();
    DemoReport.Row baseRow;
    DemoReport.Row parametric;
    Path finalMemory = memory;
    try (Decoder decoder = Decoder.load(base); TextTokenizer tokenizer = TextTokenizer.load(base)) {
      Map<String, List<Evaluator.Problem>> heldOut = heldOut(nEval);
      List<Variant> variants = new ArrayList<>(List.of(new Variant("frozen base", 0, null)));
      for (AdapterStore.Version v : store.versions(LoopBench.NAME)) {
        Path at = store.materialize(LoopBench.NAME, v.version(), run.resolve("versions").resolve(String.valueOf(v.version())));
        variants.add(new Variant("MemGen v" + v.version() + (v.version() == 1 ? " (fresh memory)" : ""), v.version(), at));
        finalMemory = at;
      }
      List<DemoReport.Row> rows = evaluateAll(variants, decoder, tokenizer, ckpt.fingerprint(), heldOut, mode);
      rows.forEach(r -> System.err.printf("demo: %s: accuracy %s%s%n", r.variant(), r.accuracy(),
          r.invocation().isEmpty() ? "" : ", invocation rate " + r.invocation()));
      baseRow = rows.get(0);
      versions.addAll(rows.subList(1, rows.size()));
      int windows = (int) loop.announced().stream().filter(a -> a.getVersion() > 1).count();
      parametric = parametric(base, run.resolve("parametric"), decoder, tokenizer, heldOut, baseRow,
          Math.max(1, windows) * nSft, nRequests);
    }

    DemoReport.Row last = versions.isEmpty() ? baseRow : versions.get(versions.size() - 1);
    Map<String, String> facts = new LinkedHashMap<>();
    facts.put("requests", String.valueOf(loop.served().size()));
    facts.put("agents", String.valueOf(clients));
    long triggerVersions = loop.announced().stream().filter(a -> a.containsEvalMetrics("trigger_rl_steps")).count();
    facts.put("adapter versions published (with a trained trigger)", loop.adapterVersions() + " (" + triggerVersions + ")");
    facts.put("trajectories published / trained / judged / pending / lost / trained twice",
        loop.trajectoriesPublished() + " / " + loop.trajectoriesTrained() + " / " + loop.trajectoriesJudged() + " / "
            + loop.trajectoriesPending() + " / " + loop.trajectoriesLost() + " / " + loop.trajectoriesDuplicated());
    facts.put("trajectory -> serving, median / p90 (s)", String.format("%.1f / %.1f", loop.trajectoryToServingMedianS(),
        loop.trajectoryToServingP90S()));
    facts.put("base model", base.toString());
    facts.put("final memory", finalMemory.toString());
    facts.put("machine", Machine.describe().toString());
    facts.put("wall time (s)", String.format("%.0f", (System.nanoTime() - t0) / 1e9));
    Path report = DemoReport.write(run, new DemoReport.Data("MemGen demo: an agent fleet learning from verifier rewards"
        + (smoke ? " (smoke run: a tiny random model)" : ""), TRAFFIC.stream().map(Enum::name).toList(), baseRow, versions,
        parametric, nEval, loop.trajectoryToServingS(), facts));

    System.out.printf("%-28s %6s %6s %8s %8s%n", "variant", "A (%)", "C (%)", "inv. A", "inv. C");
    List<DemoReport.Row> all = new ArrayList<>(List.of(baseRow));
    all.addAll(versions);
    all.add(parametric);
    for (DemoReport.Row r : all) {
      System.out.printf("%-28s %6.1f %6.1f %8s %8s%n", r.variant(), r.accuracy().get("A"), r.accuracy().get("C"),
          rate(r, "A"), rate(r, "C"));
    }
    ObjectNode json = Json.object();
    json.put("requests", loop.served().size());
    json.put("adapter_versions", loop.adapterVersions());
    json.put("trigger_versions", triggerVersions);
    json.put("trigger_mode", mode.name().toLowerCase());
    json.put("memgen_invocation_A", last.invocation().getOrDefault("A", -1.0));
    json.put("memgen_invocation_new", last.invocation().getOrDefault("C", -1.0));
    json.put("base_A", baseRow.accuracy().get("A"));
    json.put("base_new", baseRow.accuracy().get("C"));
    json.put("memgen_A", last.accuracy().get("A"));
    json.put("memgen_new", last.accuracy().get("C"));
    json.put("parametric_A", parametric.accuracy().get("A"));
    json.put("parametric_new", parametric.accuracy().get("C"));
    json.put("new_domain", "C");
    json.put("eval_items_per_domain", nEval);
    json.put("trajectories_published", loop.trajectoriesPublished());
    json.put("trajectories_trained", loop.trajectoriesTrained());
    json.put("trajectories_judged", loop.trajectoriesJudged());
    json.put("trajectories_pending", loop.trajectoriesPending());
    json.put("trajectories_lost", loop.trajectoriesLost());
    json.put("trajectories_duplicated", loop.trajectoriesDuplicated());
    json.put("trajectory_to_serving_s", loop.trajectoryToServingMedianS());
    json.put("report", report.toString());
    json.put("base_model", base.toString());
    json.put("final_memory", finalMemory.toString());
    double seconds = (System.nanoTime() - t0) / 1e9;
    json.put("seconds", seconds);
    json.put("base_seconds", baseSeconds);
    json.put("loop_seconds", loop.seconds()); // broker and components up, traffic, every window trained and accounted
    json.put("evaluation_seconds", seconds - baseSeconds - loop.seconds()); // base, versions, parametric baseline, report
    json.set("machine", Machine.describe());
    System.out.println(Json.line(json));
    return loop.trajectoriesLost() == 0 && loop.trajectoriesDuplicated() == 0 ? 0 : 1;
  }

  private static String rate(DemoReport.Row r, String domain) {
    Double v = r.invocation().get(domain);
    return v == null ? "-" : String.format("%.2f", v);
  }

  /** The held-out items per domain, by domain name: seeds no traffic, gate or pre-training pool uses. */
  static Map<String, List<Evaluator.Problem>> heldOut(int n) {
    Map<String, List<Evaluator.Problem>> out = new LinkedHashMap<>();
    for (ArithmeticTasks.Domain d : TRAFFIC) {
      out.put(d.name(), ArithmeticTasks.generate(d, n, 2, EVAL_SEED + d.ordinal()).stream()
          .map(e -> new Evaluator.Problem(ChatTemplate.userPrompt(e.prompt()), e.boxed())).toList());
    }
    return out;
  }

  /** A variant to evaluate: the frozen base ({@code memory} null) or the base with a published memory version. */
  private record Variant(String label, long version, Path memory) {}

  /**
   * Evaluates every variant on the held-out items, as many at a time as there are cores: on the project's small base a
   * static batch's products are too small for two threads to share one, so each core takes a variant of its own.
   * Rows in the order given.
   */
  private static List<DemoReport.Row> evaluateAll(List<Variant> variants, Decoder decoder, TextTokenizer tokenizer,
      String fingerprint, Map<String, List<Evaluator.Problem>> heldOut, MemGenInterleaver.TriggerMode mode)
      throws InterruptedException {
    Evaluator sizing = new Evaluator(decoder, tokenizer, 48, 64);
    int batches = variants.size() * heldOut.values().stream().mapToInt(p -> sizing.batches(p.size())).sum();
    java.util.concurrent.ExecutorService pool = java.util.concurrent.Executors.newFixedThreadPool(Engines.THREADS);
    try (Progress progress = new Progress("eval " + variants.size() + " variants", batches)) {
      List<java.util.concurrent.Future<DemoReport.Row>> rows = new ArrayList<>();
      for (Variant v : variants) {
        rows.add(pool.submit(() -> {
          Engines.computeThreads(1);
          Evaluator evaluator = new Evaluator(decoder, tokenizer, 48, 64);
          java.util.function.IntConsumer step = correct -> {
            synchronized (progress) {
              progress.step(v.label());
            }
          };
          if (v.memory() == null) {
            return evaluate(v.label(), v.version(), evaluator, heldOut, null, step);
          }
          try (ReasonerMemory mem = ReasonerMemory.embedded(decoder, fingerprint, v.memory(),
              names -> DelimiterTable.build(tokenizer, decoder.config().vocabSize(), names))) {
            return evaluate(v.label(), v.version(), evaluator, heldOut, ids -> mem.open(ids, mode, 0.5, 0, OptionalInt.empty()),
                step);
          }
        }));
      }
      List<DemoReport.Row> out = new ArrayList<>();
      for (java.util.concurrent.Future<DemoReport.Row> f : rows) {
        try {
          out.add(f.get());
        } catch (java.util.concurrent.ExecutionException e) {
          throw e.getCause() instanceof RuntimeException r ? r : new IllegalStateException(e.getCause());
        }
      }
      return out;
    } finally {
      pool.shutdownNow();
    }
  }

  private static DemoReport.Row evaluate(String variant, long version, Evaluator evaluator,
      Map<String, List<Evaluator.Problem>> heldOut, Evaluator.Memory memory, java.util.function.IntConsumer step) {
    Map<String, Double> accuracy = new LinkedHashMap<>();
    Map<String, Double> invocation = new LinkedHashMap<>();
    for (Map.Entry<String, List<Evaluator.Problem>> e : heldOut.entrySet()) {
      Evaluator.Score s = evaluator.run(e.getValue(), memory, step);
      accuracy.put(e.getKey(), s.accuracy());
      if (memory != null) {
        invocation.put(e.getKey(), s.invocationRate());
      }
    }
    return new DemoReport.Row(variant, version, accuracy, invocation);
  }

  private static DemoReport.Row evaluate(String variant, long version, Evaluator evaluator,
      Map<String, List<Evaluator.Problem>> heldOut, Evaluator.Memory memory) {
    Map<String, Double> accuracy = new LinkedHashMap<>();
    Map<String, Double> invocation = new LinkedHashMap<>();
    for (Map.Entry<String, List<Evaluator.Problem>> e : heldOut.entrySet()) {
      Evaluator.Score s = EvalCommand.run(variant + " " + e.getKey(), evaluator, e.getValue(), memory);
      accuracy.put(e.getKey(), s.accuracy());
      if (memory != null) {
        invocation.put(e.getKey(), s.invocationRate());
      }
    }
    System.err.printf("demo: %s: accuracy %s%s%n", variant, accuracy, memory == null ? "" : ", invocation rate " + invocation);
    return new DemoReport.Row(variant, version, accuracy, invocation);
  }

  /**
   * The parametric baseline on the same traffic and rewards: the traffic's prompts rolled out {@code rollouts} times
   * by the base itself, the rollouts the verifier accepts kept, and every weight of the base fine-tuned on them for as
   * many updates as the weaver got.
   */
  private DemoReport.Row parametric(Path base, Path outDir, Decoder decoder, TextTokenizer tokenizer,
      Map<String, List<Evaluator.Problem>> heldOut, DemoReport.Row baseRow, int steps, int nRequests) throws IOException {
    List<Evaluator.Problem> prompts = LoopBench.traffic(TRAFFIC, nRequests)
        .stream().map(e -> new Evaluator.Problem(ChatTemplate.userPrompt(e.prompt()), e.boxed())).toList();
    Reward verifier = smoke ? (completion, refs) -> 1 // the smoke run's rewards, as its fleet's
        : (completion, refs) -> BoxedAnswer.matches(completion, refs.get(0)) ? 1 : 0;
    RejectionSampling.Result found = RejectionSampling.sample(decoder, tokenizer, null, null, prompts, verifier,
        new RejectionSampling.Settings(Math.max(1, rollouts + baseRollouts), 0, 1.0, 48, 1.0, 2, 11));
    List<TokenizedExample> data = found.all();
    System.err.printf("demo: parametric baseline: %.1f%% of the base's rollouts rewarded, %d SFT targets, %d updates of every "
        + "weight%n", 100 * found.rolloutAccuracy(), data.size(), steps);
    if (data.isEmpty()) { // nothing rewarded: the baseline is the base, already evaluated
      return new DemoReport.Row("parametric baseline (nothing to learn)", -1, baseRow.accuracy(), Map.of());
    }
    Directories.deleteRecursively(outDir);
    try (Training.Cores cores = Training.allCores(); Training.Bar bar = new Training.Bar("parametric baseline", steps)) {
      Pretrain.finetune(base, outDir, data, steps, 16, 1e-3, Math.min(50, steps / 10), 5, bar);
    }
    try (Decoder tuned = Decoder.load(outDir)) {
      return evaluate("parametric baseline", -1, new Evaluator(tuned, tokenizer, 48, 64), heldOut, null);
    }
  }
}
