package dev.memgen.cli;

import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.memgen.model.Decoder;
import dev.memgen.model.checkpoint.Checkpoint;
import dev.memgen.model.data.QaDataset;
import dev.memgen.model.eval.Evaluator;
import dev.memgen.model.generate.MemGenInterleaver;
import dev.memgen.model.text.DelimiterTable;
import dev.memgen.model.text.TextTokenizer;
import dev.memgen.rpc.ReasonerMemory;
import java.nio.file.Path;
import java.util.List;
import java.util.OptionalInt;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import dev.memgen.engine.core.EngineCore;
import picocli.CommandLine.Option;

/**
 * Accuracy on a JSONL set of problems: greedy generation from the chat-templated prompt, scored by the first
 * {@code \boxed{}} against the expected result. With a memory, the frozen base alone and with memory, side by side.
 */
@Command(name = "eval", mixinStandardHelpOptions = true,
    description = "Evaluate greedy accuracy (boxed answer, exact match) on a JSONL set; with --memory, vanilla and "
        + "MemGen side by side. Last line: JSON.")
final class EvalCommand implements Callable<Integer> {
  @Option(names = "--model", required = true, description = "Hugging Face checkpoint directory (with tokenizer.json)") Path model;

  @Option(names = "--memory", description = "memory directory: also evaluate with latent memory") Path memory;

  @Option(names = "--data", required = true, description = "JSONL of {\"prompt\", \"answer\"[, \"boxed\"]}") Path data;

  @Option(names = "--max-new-tokens", defaultValue = "64", description = "(default ${DEFAULT-VALUE})") int maxNewTokens;

  @Option(names = "--batch", defaultValue = "8", description = "sequences decoded together (default ${DEFAULT-VALUE})") int batch;

  @Option(names = "--engine", description = "decode through the serving engine (continuous batching, --batch rows at "
      + "once: a row that finishes makes room for the next problem) instead of static batches of --batch problems")
  boolean engine;

  @Option(names = "--limit", defaultValue = "0", description = "evaluate the first N examples only (0 = all)") int limit;

  @Option(names = "--on-bad-record", defaultValue = "fail", description = "skip or fail (default ${DEFAULT-VALUE})") String onBadRecord;

  @Option(names = "--trigger", defaultValue = "threshold", description = "with --memory: threshold, sample or inactive") String trigger;

  @Option(names = "--threshold", defaultValue = "0.5", description = "with --trigger threshold (default ${DEFAULT-VALUE})") double threshold;

  @Option(names = "--samples", defaultValue = "0", description = "also sample N answers per problem and report pass@N "
      + "(0 = greedy only; default ${DEFAULT-VALUE})") int samples;

  @Option(names = "--temperature", defaultValue = "1", description = "with --samples (default ${DEFAULT-VALUE})") double temperature;

  @Option(names = "--seed", defaultValue = "0", description = "with --samples: answer j of problem i is seeded seed + i*N + j") long seed;

  static ObjectNode json(Evaluator.PassAtK p) {
    ObjectNode o = Json.object();
    o.put("samples", p.samples());
    o.put("pass_at_k", p.passAtK());
    o.put("sample_accuracy", p.sampleAccuracy());
    o.put("solved", p.solved());
    o.put("seconds", p.nanos() / 1e9);
    return o;
  }

  static ObjectNode json(Evaluator.Score s) {
    ObjectNode o = Json.object();
    o.put("accuracy", s.accuracy());
    o.put("correct", s.correct());
    o.put("examples", s.total());
    o.put("tokens_per_example", (double) s.tokens() / s.total());
    o.put("seconds", s.nanos() / 1e9);
    o.put("ms_per_example", s.nanos() / 1e6 / s.total()); // wall time over examples, batched as --batch says
    o.put("tokens_per_second", s.tokens() / (s.nanos() / 1e9));
    if (s.consultations() >= 0) {
      o.put("inference_insertions_per_example", (double) s.inferenceInsertions() / s.total());
      o.put("invocation_rate", s.invocationRate());
    }
    return o;
  }

  @Override
  public Integer call() throws Exception {
    QaDataset.OnBadRecord policy = QaDataset.OnBadRecord.parse(onBadRecord);
    MemGenInterleaver.TriggerMode mode = MemGenInterleaver.TriggerMode.parse(trigger, "--trigger");
    if (batch < 1 || maxNewTokens < 1 || limit < 0 || samples < 0) {
      throw new IllegalArgumentException("need --batch >= 1, --max-new-tokens >= 1, --limit >= 0, --samples >= 0");
    }
    if (samples > 0 && !(temperature > 0 && Double.isFinite(temperature))) {
      throw new IllegalArgumentException("--samples needs a --temperature > 0, got " + temperature);
    }
    QaDataset.Loaded loaded = QaDataset.read(data, policy);
    loaded.skipped().forEach(b -> System.err.println("skipped " + data + ":" + b.line() + ": " + b.reason()));
    List<QaDataset.Example> examples = limit > 0 && limit < loaded.examples().size()
        ? loaded.examples().subList(0, limit) : loaded.examples();

    List<Evaluator.Problem> problems = examples.stream().map(e -> new Evaluator.Problem(e.chatPrompt(), e.expected())).toList();
    try (Decoder decoder = Decoder.load(model); TextTokenizer tokenizer = TextTokenizer.load(model);
        EngineCore core = engine ? new EngineCore(decoder, new EngineCore.Limits(batch, batch, 256, 0), "memgen-eval") : null) {
      Evaluator evaluator = core == null ? new Evaluator(decoder, tokenizer, maxNewTokens, batch)
          : new Evaluator(decoder, tokenizer, maxNewTokens, 4 * batch, core.decoding());
      ObjectNode out = Json.object();
      out.put("data", data.toString());
      out.put("examples", examples.size());
      out.put("skipped", loaded.skipped().size());
      Evaluator.Score vanilla = run("vanilla", evaluator, problems, null);
      out.set("vanilla", json(vanilla));
      print("vanilla", vanilla);
      if (samples > 0) {
        Evaluator.PassAtK p = passAtK("vanilla", evaluator, problems, null);
        ((ObjectNode) out.get("vanilla")).set("sampled", json(p));
      }
      if (memory != null) {
        try (ReasonerMemory mem = ReasonerMemory.embedded(decoder, Checkpoint.open(model).fingerprint(), memory,
            names -> DelimiterTable.build(tokenizer, decoder.config().vocabSize(), names))) {
          Evaluator.Score memgen = run("memgen", evaluator, problems, ids -> mem.open(ids, mode, threshold, 0, OptionalInt.empty()));
          out.set("memgen", json(memgen));
          print("memgen", memgen);
          if (samples > 0) {
            Evaluator.PassAtK p = passAtK("memgen", evaluator, problems,
                ids -> mem.open(ids, mode, threshold, seed, OptionalInt.empty()));
            ((ObjectNode) out.get("memgen")).set("sampled", json(p));
          }
        }
      }
      System.out.println(Json.line(out));
    }
    return 0;
  }

  static Evaluator.Score run(String label, Evaluator evaluator, List<Evaluator.Problem> problems, Evaluator.Memory memory) {
    try (Progress p = new Progress("eval " + label, evaluator.batches(problems.size()))) {
      return evaluator.run(problems, memory, correct -> p.step(correct + " correct so far"));
    }
  }

  Evaluator.PassAtK passAtK(String label, Evaluator evaluator, List<Evaluator.Problem> problems, Evaluator.Memory memory) {
    Evaluator.PassAtK p;
    try (Progress bar = new Progress("pass@" + samples + " " + label, evaluator.passAtKBatches(problems.size(), samples))) {
      p = evaluator.passAtK(problems, samples, temperature, seed, memory, solved -> bar.step(solved + " solved so far"));
    }
    System.out.printf("%-8s pass@%d %5.1f%% (%d/%d), one sample right %.1f%% (temperature %s)%n", label, samples,
        p.passAtK(), p.solved(), p.problems(), p.sampleAccuracy(), temperature);
    return p;
  }

  static void print(String label, Evaluator.Score s) {
    System.out.printf("%-8s accuracy %5.1f%% (%d/%d), %.1f tokens/example, %.1f tok/s%s%n", label, 100.0 * s.correct() / s.total(),
        s.correct(), s.total(), (double) s.tokens() / s.total(), s.tokens() / (s.nanos() / 1e9),
        s.consultations() < 0 ? "" : String.format(", invocation rate %.1f%% (%.2f inference insertions/example)",
            s.consultations() == 0 ? 0.0 : 100.0 * s.inferenceInsertions() / s.consultations(),
            (double) s.inferenceInsertions() / s.total()));
  }
}
