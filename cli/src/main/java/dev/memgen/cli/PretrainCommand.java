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
import dev.memgen.model.train.Pretrain;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

/**
 * Trains the project's own base reasoner on domain A, then reports its greedy accuracy on held-out A and B problems,
 * and on A with a freshly initialised memory inserting latents (a base that tolerates memory slots keeps its
 * accuracy there).
 */
@Command(name = "pretrain", mixinStandardHelpOptions = true,
    description = "Train a small Qwen2-layout base on arithmetic domain A (HF layout + tokenizer.json), then evaluate "
        + "it on held-out A and B. Last line: JSON.")
final class PretrainCommand implements Callable<Integer> {
  @Option(names = "--out", required = true, description = "checkpoint directory to write") Path out;

  @Option(names = "--steps", description = "updates (default 1200)") Integer steps;

  @Option(names = "--batch", description = "examples per update (default 64)") Integer batch;

  @Option(names = "--lr", description = "peak learning rate (default 3e-3)") Double lr;

  @Option(names = "--max-operations", description = "1 to this many operations per problem (default 2)") Integer maxOperations;

  @Option(names = "--long-chain-share", description = "share of domain-C (3-operation) problems (default "
      + Pretrain.LONG_CHAIN_SHARE + ")") Double longChainShare;

  @Option(names = "--seed", defaultValue = "0", description = "(default ${DEFAULT-VALUE})") long seed;

  @Option(names = "--eval", defaultValue = "300", description = "held-out problems per evaluation, 0 for none (default ${DEFAULT-VALUE})")
  int eval;

  @Override
  public Integer call() throws Exception {
    Training.useAllCores();
    Pretrain.Settings d = Pretrain.defaults();
    Pretrain.Settings s = new Pretrain.Settings(d.shape(), steps != null ? steps : d.steps(), batch != null ? batch : d.batchSize(),
        lr != null ? lr : d.lr(), d.warmupSteps(), maxOperations != null ? maxOperations : d.maxOperations(),
        d.maxFillerRows(), d.delimiterFillProbability(), d.fillerSlots(),
        longChainShare != null ? longChainShare : d.longChainShare(), seed);
    Files.createDirectories(out);
    Pretrain.Result r;
    try (Training.Bar bar = new Training.Bar("pretrain", s.steps())) {
      r = Pretrain.train(out, s, bar);
    }
    System.err.printf("trained %,d parameters for %d steps in %.0f s (last loss %.4f); wrote %s%n", r.parameters(), r.steps(),
        r.seconds(), r.lastLoss(), out);
    ObjectNode json = Json.object();
    json.put("out", out.toString());
    json.put("parameters", r.parameters());
    json.put("steps", r.steps());
    json.put("seconds", r.seconds());
    json.put("final_loss", r.lastLoss());
    if (eval > 0) {
      evaluate(json, s.maxOperations());
    }
    System.out.println(Json.line(json));
    return 0;
  }

  private void evaluate(ObjectNode json, int maxOps) throws Exception {
    try (Decoder decoder = Decoder.load(out); TextTokenizer tokenizer = TextTokenizer.load(out)) {
      Evaluator evaluator = new Evaluator(decoder, tokenizer, 64, 32);
      long heldOut = 1_000_003L + seed; // a seed the training pool never used
      for (ArithmeticTasks.Domain domain : ArithmeticTasks.Domain.values()) {
        Evaluator.Score score = EvalCommand.run("base " + domain, evaluator, problems(domain, maxOps, heldOut), null);
        json.put("accuracy_" + domain, score.accuracy());
        System.err.printf("base on %s: %.1f%%%n", domain, score.accuracy());
      }
      // A fresh memory (K=8 both kinds, always invoked): what the weaver starts from. Latents are inserted but
      // carry nothing learned; the base should not mind.
      Path fresh = Files.createTempDirectory("memgen-fresh-memory");
      try {
        String fingerprint = Checkpoint.open(out).fingerprint();
        LoraConfig lora = new LoraConfig(8, 16, List.of(LoraAdapter.Target.Q_PROJ, LoraAdapter.Target.V_PROJ), 0.0);
        MemoryManifest mf = new MemoryManifest(1, fingerprint, decoder.config().hiddenSize(), decoder.config().numLayers(),
            8, 8, "embeddings", lora, lora, DelimiterTable.DEFAULT, 5);
        Memory.init(fresh, decoder.config(), mf, seed);
        DelimiterTable delimiters = DelimiterTable.build(tokenizer, decoder.config().vocabSize(), DelimiterTable.DEFAULT);
        try (Memory memory = Memory.load(fresh, decoder, fingerprint)) {
          InProcessMemory mem = new InProcessMemory(decoder, memory);
          Evaluator.Score score = EvalCommand.run("fresh memory A", evaluator, problems(ArithmeticTasks.Domain.A, maxOps, heldOut),
              ids -> MemGenInterleaver.inProcess(mem, ids.size(), delimiters,
                  new MemGenInterleaver.Options(true, 5, MemGenInterleaver.TriggerMode.INACTIVE, 0.5, 0)));
          json.put("accuracy_A_fresh_memory", score.accuracy());
          System.err.printf("base on A with a fresh memory inserting latents: %.1f%%%n", score.accuracy());
        }
      } finally {
        Directories.deleteRecursively(fresh);
      }
    }
  }

  private List<Evaluator.Problem> problems(ArithmeticTasks.Domain domain, int maxOps, long seed) {
    return ArithmeticTasks.generate(domain, eval, maxOps, seed).stream()
        .map(e -> new Evaluator.Problem(ChatTemplate.userPrompt(e.prompt()), e.boxed())).toList();
  }
}
