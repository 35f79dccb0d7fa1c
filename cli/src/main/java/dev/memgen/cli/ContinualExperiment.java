package dev.memgen.cli;

import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.memgen.model.Decoder;
import dev.memgen.model.LoraAdapter;
import dev.memgen.model.checkpoint.Checkpoint;
import dev.memgen.model.checkpoint.Directories;
import dev.memgen.model.data.ArithmeticTasks;
import dev.memgen.model.eval.Evaluator;
import dev.memgen.model.generate.MemGenInterleaver;
import dev.memgen.model.memory.InProcessMemory;
import dev.memgen.model.memory.LoraConfig;
import dev.memgen.model.memory.Memory;
import dev.memgen.model.memory.MemoryManifest;
import dev.memgen.model.text.ChatTemplate;
import dev.memgen.model.text.DelimiterTable;
import dev.memgen.model.text.TextTokenizer;
import dev.memgen.model.train.AdamW;
import dev.memgen.model.train.Pretrain;
import dev.memgen.model.train.Reward;
import dev.memgen.model.train.TokenizedExample;
import dev.memgen.model.train.TriggerRl;
import dev.memgen.model.train.WeaverGrpo;
import dev.memgen.model.train.WeaverSft;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

/**
 * Continual learning without forgetting, at small scale: a base trained on arithmetic domain A meets domain B
 * (boxed answer mod 10, announced by {@code Q%:}) in traffic that mixes both. Compared on held-out A and B: the
 * frozen base; MemGen's weaver after SFT, after GRPO, and with a trigger trained by RL (the base untouched); and full
 * fine-tuning of the base (parametric memory) for as many updates, on the same traffic and on B alone.
 */
@Command(name = "continual", mixinStandardHelpOptions = true,
    description = "Train and evaluate, on domains A and B: the frozen base, weaver SFT, weaver GRPO, trigger RL and full "
        + "fine-tuning of the base (on the same traffic, and on B alone). Last line: JSON with base_A, base_B, memgen_A, "
        + "memgen_B, finetune_A, finetune_B (%).")
final class ContinualExperiment implements Callable<Integer> {
  @Option(names = "--work", defaultValue = ".memgen/experiment", description = "working directory (default ${DEFAULT-VALUE})")
  Path work;

  @Option(names = "--base", description = "a base trained by `memgen pretrain` (default: the cached .memgen/base, trained once if missing)") Path base;

  @Option(names = "--reuse", description = "reuse stages a previous run with the same settings completed in --work")
  boolean reuse;

  @Option(names = "--quick", description = "a small run (minutes): fewer steps and test items; numbers are noisier") boolean quick;

  @Option(names = "--eval", description = "held-out problems per domain (default 1000; quick 200)") Integer eval;

  @Option(names = "--k", defaultValue = "8", description = "latent rows per insertion, both kinds (default ${DEFAULT-VALUE})") int k;

  @Option(names = "--lora-r", defaultValue = "16", description = "weaver LoRA rank (default ${DEFAULT-VALUE})") int rank;

  @Option(names = "--lora-targets", defaultValue = "q_proj,v_proj", description = "weaver LoRA targets (default ${DEFAULT-VALUE})")
  String targets;

  @Option(names = "--max-inference-aug", defaultValue = "3", description = "(default ${DEFAULT-VALUE})") int maxInferenceAug;

  @Option(names = "--sft-steps", description = "weaver SFT updates, also full fine-tuning's (default 1000; quick 150)") Integer sftSteps;

  @Option(names = "--sft-lr", defaultValue = "3e-3", description = "(default ${DEFAULT-VALUE})") double sftLr;

  @Option(names = "--finetune-lr", defaultValue = "1e-3", description = "(default ${DEFAULT-VALUE})") double finetuneLr;

  @Option(names = "--grpo-steps", description = "weaver GRPO updates (default 60; quick 10)") Integer grpoSteps;

  @Option(names = "--grpo-lr", defaultValue = "1e-4", description = "(default ${DEFAULT-VALUE})") double grpoLr;

  @Option(names = "--trigger-steps", description = "trigger RL updates (default 30; quick 5)") Integer trigger;

  @Option(names = "--trigger-lr", defaultValue = "1e-3", description = "(default ${DEFAULT-VALUE})") double triggerLr;

  @Option(names = "--penalty", defaultValue = "0.1", description = "trigger RL invocation penalty lambda (default ${DEFAULT-VALUE})")
  double penalty;

  @Option(names = "--batch", defaultValue = "16", description = "examples per update (default ${DEFAULT-VALUE})") int batch;

  @Option(names = "--seed", defaultValue = "0", description = "(default ${DEFAULT-VALUE})") long seed;

  private static final int MAX_OPERATIONS = 2;
  private static final String COMPLETE = ".complete"; // marks a finished stage's output

  @Override
  public Integer call() throws Exception {
    Training.useAllCores();
    int evalItems = eval != null ? eval : quick ? 200 : 1000;
    int sft = sftSteps != null ? sftSteps : quick ? 150 : 1000;
    int grpo = grpoSteps != null ? grpoSteps : quick ? 10 : 60;
    Files.createDirectories(work);
    long t0 = System.nanoTime();
    // Without --base: the project's cached base (trained once, as the demo's), never a short run whose figures mean nothing.
    Path baseDir = base != null ? base : CachedBase.trained(Path.of(".memgen", "base"));
    String fingerprint = Checkpoint.open(baseDir).fingerprint();
    Map<String, double[]> results = new LinkedHashMap<>(); // variant -> {A, B, invocation rate}
    List<TokenizedExample> traffic;
    List<Evaluator.Problem> trafficProblems = new ArrayList<>();
    Map<ArithmeticTasks.Domain, List<Evaluator.Problem>> heldOut = new LinkedHashMap<>();
    Path memorySft = work.resolve("memory-sft");
    Path memoryGrpo = work.resolve("memory-grpo");
    Path memoryTrigger = work.resolve("memory-trigger");
    int skippedSft = -1;
    int triggerSteps = trigger != null ? trigger : quick ? 5 : 30;
    try (Decoder decoder = Decoder.load(baseDir); TextTokenizer tokenizer = TextTokenizer.load(baseDir)) {
      // Traffic: A and B half and half, problems the held-out sets never use.
      traffic = new ArrayList<>();
      int perDomain = Math.max(sft, grpo) * batch; // every update sees new problems
      for (ArithmeticTasks.Domain domain : ArithmeticTasks.Domain.values()) {
        for (ArithmeticTasks.Example e : ArithmeticTasks.generate(domain, perDomain, MAX_OPERATIONS, seed * 100 + 10 + domain.ordinal())) {
          traffic.add(TokenizedExample.of(tokenizer, ChatTemplate.userPrompt(e.prompt()), e.answer()));
          trafficProblems.add(new Evaluator.Problem(ChatTemplate.userPrompt(e.prompt()), e.boxed()));
        }
        heldOut.put(domain, ArithmeticTasks.generate(domain, evalItems, MAX_OPERATIONS, seed * 100 + 20 + domain.ordinal())
            .stream().map(e -> new Evaluator.Problem(ChatTemplate.userPrompt(e.prompt()), e.boxed())).toList());
      }
      Evaluator evaluator = new Evaluator(decoder, tokenizer, 48, 32);
      DelimiterTable delimiters = DelimiterTable.build(tokenizer, decoder.config().vocabSize(), DelimiterTable.DEFAULT);
      results.put("base", evaluate("base", evaluator, heldOut, null, decoder, fingerprint, delimiters));

      Path fresh = work.resolve("memory-init");
      List<LoraAdapter.Target> t = java.util.Arrays.stream(targets.split(",")).map(String::trim).map(LoraAdapter.Target::of).toList();
      LoraConfig weaverLora = new LoraConfig(rank, 2.0 * rank, t, 0.0);
      LoraConfig triggerLora = new LoraConfig(8, 16, List.of(LoraAdapter.Target.Q_PROJ, LoraAdapter.Target.V_PROJ), 0.0);
      Memory.init(fresh, decoder.config(), new MemoryManifest(1, fingerprint, decoder.config().hiddenSize(),
          decoder.config().numLayers(), k, k, "embeddings", weaverLora, triggerLora, DelimiterTable.DEFAULT, maxInferenceAug), seed);

      if (!reusable(memorySft)) {
        try (Training.Bar bar = new Training.Bar("weaver sft", sft)) {
          WeaverSft.Result r = WeaverSft.train(decoder, fingerprint, fresh, memorySft, traffic, delimiters, new WeaverSft.Settings(sft,
              batch, 1, sftLr, Math.min(50, sft / 10), 0.1, AdamW.Settings.DEFAULT, 0, seed), bar);
          skippedSft = r.skippedSteps();
        }
        complete(memorySft);
      }
      results.put("memgen_sft", evaluate("weaver SFT", evaluator, heldOut, memorySft, decoder, fingerprint, delimiters));

      if (!reusable(memoryGrpo)) {
        try (Progress p = new Progress("weaver grpo", grpo)) {
          WeaverGrpo.train(decoder, fingerprint, tokenizer, memorySft, memoryGrpo, trafficProblems, Reward.boxedMath(), delimiters,
              new WeaverGrpo.Settings(grpo, 8, 8, grpoLr, 0, 0.2, 0.0, 1, 32, 48, 1.0, AdamW.Settings.DEFAULT, 0, seed),
              (step, steps, reward, loss, informative) -> p.step(String.format("reward %.3f, groups with signal %.0f%%", reward, 100 * informative)));
        }
        complete(memoryGrpo);
      }
      results.put("memgen_grpo", evaluate("weaver GRPO", evaluator, heldOut, memoryGrpo, decoder, fingerprint, delimiters));

      // Stage 2: the trigger learns where memory pays (weaver frozen); evaluated with the threshold rule.
      if (!reusable(memoryTrigger)) {
        try (Progress p = new Progress("trigger rl", triggerSteps)) {
          TriggerRl.train(decoder, fingerprint, tokenizer, memoryGrpo, memoryTrigger, trafficProblems, Reward.boxedMath(),
              delimiters, new TriggerRl.Settings(triggerSteps, 8, 8, triggerLr, 0, penalty, 48, 1.0, AdamW.Settings.DEFAULT, 0, seed),
              (step, steps, reward, rate, reference) -> p.step(String.format("reward %.3f invocation rate %.2f", reward, rate)));
        }
        complete(memoryTrigger);
      }
      results.put("memgen_trigger", evaluate("weaver GRPO + trigger RL", evaluator, heldOut, memoryTrigger, decoder, fingerprint,
          delimiters, MemGenInterleaver.TriggerMode.THRESHOLD));
    }
    Path finetuned = work.resolve("finetuned");
    if (!reusable(finetuned)) {
      try (Training.Bar bar = new Training.Bar("full fine-tune", sft)) {
        Pretrain.finetune(baseDir, finetuned, traffic, sft, batch, finetuneLr, Math.min(50, sft / 10), seed, bar);
      }
      complete(finetuned);
    }
    try (Decoder decoder = Decoder.load(finetuned); TextTokenizer tokenizer = TextTokenizer.load(finetuned)) {
      results.put("finetune", evaluate("fine-tuned base", new Evaluator(decoder, tokenizer, 48, 32), heldOut, null, decoder, null, null));
    }
    // The textbook continual-learning case: the new domain's data alone, as a fine-tune on new data usually is.
    Path finetunedB = work.resolve("finetuned-b-only");
    if (!reusable(finetunedB)) {
      try (Training.Bar bar = new Training.Bar("fine-tune on B only", sft)) {
        Pretrain.finetune(baseDir, finetunedB, traffic.subList(traffic.size() / 2, traffic.size()), sft, batch, finetuneLr,
            Math.min(50, sft / 10), seed, bar);
      }
      complete(finetunedB);
    }
    try (Decoder decoder = Decoder.load(finetunedB); TextTokenizer tokenizer = TextTokenizer.load(finetunedB)) {
      results.put("finetune_b_only", evaluate("base fine-tuned on B only", new Evaluator(decoder, tokenizer, 48, 32), heldOut,
          null, decoder, null, null));
    }
    String best = "memgen_sft";
    for (String variant : List.of("memgen_grpo", "memgen_trigger")) {
      if (results.get(variant)[1] > results.get(best)[1]) {
        best = variant;
      }
    }

    System.out.printf("%n%-22s %8s %8s %12s%n", "variant", "A (%)", "B (%)", "invocation");
    results.forEach((name, r) -> System.out.printf("%-22s %8.1f %8.1f %12s%n", name, r[0], r[1],
        Double.isNaN(r[2]) ? "-" : String.format("%.2f", r[2])));
    System.out.printf("(%d held-out problems per domain; MemGen = %s; %.0f s in all)%n", evalItems, best, (System.nanoTime() - t0) / 1e9);
    ObjectNode json = Json.object();
    json.put("base_A", results.get("base")[0]);
    json.put("base_B", results.get("base")[1]);
    json.put("memgen_A", results.get(best)[0]);
    json.put("memgen_B", results.get(best)[1]);
    json.put("finetune_A", results.get("finetune")[0]);
    json.put("finetune_B", results.get("finetune")[1]);
    json.put("memgen_variant", best);
    json.put("memgen_sft_A", results.get("memgen_sft")[0]);
    json.put("memgen_sft_B", results.get("memgen_sft")[1]);
    json.put("memgen_grpo_A", results.get("memgen_grpo")[0]);
    json.put("memgen_grpo_B", results.get("memgen_grpo")[1]);
    json.put("memgen_trigger_A", results.get("memgen_trigger")[0]);
    json.put("memgen_trigger_B", results.get("memgen_trigger")[1]);
    json.put("memgen_trigger_invocation_rate", results.get("memgen_trigger")[2]);
    json.put("finetune_b_only_A", results.get("finetune_b_only")[0]);
    json.put("finetune_b_only_B", results.get("finetune_b_only")[1]);
    json.put("eval_items_per_domain", evalItems);
    json.put("sft_skipped_updates", skippedSft);
    json.put("seconds", (System.nanoTime() - t0) / 1e9);
    System.out.println(Json.line(json));
    return 0;
  }

  /** Whether a stage's output is complete and may be reused (--reuse); if not, whatever is there is removed. */
  private boolean reusable(Path stage) throws java.io.IOException {
    if (reuse && Files.exists(stage.resolve(COMPLETE))) {
      System.err.println("reusing " + stage);
      return true;
    }
    Directories.deleteRecursively(stage);
    return false;
  }

  private static void complete(Path stage) throws java.io.IOException {
    Files.writeString(stage.resolve(COMPLETE), "");
  }

  /** {A accuracy, B accuracy, invocation rate (NaN without memory)} of the base, with the memory at {@code memory}. */
  private static double[] evaluate(String label, Evaluator evaluator, Map<ArithmeticTasks.Domain, List<Evaluator.Problem>> sets,
      Path memory, Decoder decoder, String fingerprint, DelimiterTable delimiters) {
    return evaluate(label, evaluator, sets, memory, decoder, fingerprint, delimiters, MemGenInterleaver.TriggerMode.INACTIVE);
  }

  private static double[] evaluate(String label, Evaluator evaluator, Map<ArithmeticTasks.Domain, List<Evaluator.Problem>> sets,
      Path memory, Decoder decoder, String fingerprint, DelimiterTable delimiters, MemGenInterleaver.TriggerMode mode) {
    double[] r = {0, 0, Double.NaN};
    Memory loaded = memory == null ? null : Memory.load(memory, decoder, fingerprint);
    try {
      Evaluator.Memory opener = null;
      if (loaded != null) {
        InProcessMemory mem = new InProcessMemory(decoder, loaded);
        MemGenInterleaver.Options options = new MemGenInterleaver.Options(true, loaded.manifest().maxInferenceAug(),
            mode, 0.5, 0);
        opener = ids -> MemGenInterleaver.inProcess(mem, ids.size(), delimiters, options);
      }
      double invocations = 0;
      for (ArithmeticTasks.Domain domain : sets.keySet()) {
        Evaluator.Score s = EvalCommand.run(label + " on " + domain, evaluator, sets.get(domain), opener);
        r[domain.ordinal()] = s.accuracy();
        invocations += s.invocationRate() / 2;
      }
      if (loaded != null) {
        r[2] = invocations;
      }
      System.err.printf("%s: A %.1f%%, B %.1f%%%s%n", label, r[0], r[1],
          loaded == null ? "" : String.format(", invocation rate %.2f", r[2]));
      return r;
    } finally {
      if (loaded != null) {
        loaded.close();
      }
    }
  }
}
