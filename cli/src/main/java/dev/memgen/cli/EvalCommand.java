package dev.memgen.cli;

import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.memgen.model.Decoder;
import dev.memgen.model.Weaver;
import dev.memgen.model.checkpoint.Checkpoint;
import dev.memgen.model.data.BoxedAnswer;
import dev.memgen.model.data.QaDataset;
import dev.memgen.model.generate.Generator;
import dev.memgen.model.generate.MemGenInterleaver;
import dev.memgen.model.generate.SamplingParams;
import dev.memgen.model.text.ChatTemplate;
import dev.memgen.model.text.DelimiterTable;
import dev.memgen.model.text.TextTokenizer;
import dev.memgen.rpc.ReasonerMemory;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.OptionalInt;
import java.util.Set;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
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

  @Option(names = "--limit", defaultValue = "0", description = "evaluate the first N examples only (0 = all)") int limit;

  @Option(names = "--on-bad-record", defaultValue = "fail", description = "skip or fail (default ${DEFAULT-VALUE})") String onBadRecord;

  @Option(names = "--trigger", defaultValue = "threshold", description = "with --memory: threshold, sample or inactive") String trigger;

  @Option(names = "--threshold", defaultValue = "0.5", description = "with --trigger threshold (default ${DEFAULT-VALUE})") double threshold;

  /** What one variant scored. */
  record Score(int correct, int total, long tokens, long nanos, int inferenceInsertions, int consultations) {
    ObjectNode json() {
      ObjectNode o = Json.object();
      o.put("accuracy", 100.0 * correct / total);
      o.put("correct", correct);
      o.put("examples", total);
      o.put("tokens_per_example", (double) tokens / total);
      o.put("seconds", nanos / 1e9);
      o.put("tokens_per_second", tokens / (nanos / 1e9));
      if (consultations >= 0) {
        o.put("inference_insertions_per_example", (double) inferenceInsertions / total);
        o.put("invocation_rate", consultations == 0 ? 0.0 : (double) inferenceInsertions / consultations);
      }
      return o;
    }
  }

  @Override
  public Integer call() throws Exception {
    QaDataset.OnBadRecord policy = switch (onBadRecord) {
      case "skip" -> QaDataset.OnBadRecord.SKIP;
      case "fail" -> QaDataset.OnBadRecord.FAIL;
      default -> throw new IllegalArgumentException("--on-bad-record must be skip or fail, got '" + onBadRecord + "'");
    };
    MemGenInterleaver.TriggerMode mode = MemGenInterleaver.TriggerMode.parse(trigger, "--trigger");
    if (batch < 1 || maxNewTokens < 1 || limit < 0) {
      throw new IllegalArgumentException("need --batch >= 1, --max-new-tokens >= 1, --limit >= 0");
    }
    QaDataset.Loaded loaded = QaDataset.read(data, policy);
    loaded.skipped().forEach(b -> System.err.println("skipped " + data + ":" + b.line() + ": " + b.reason()));
    List<QaDataset.Example> examples = limit > 0 && limit < loaded.examples().size()
        ? loaded.examples().subList(0, limit) : loaded.examples();

    try (Decoder decoder = Decoder.load(model); TextTokenizer tokenizer = TextTokenizer.load(model)) {
      Set<Integer> stops = new HashSet<>(decoder.config().eosTokenIds());
      for (String special : List.of(ChatTemplate.IM_END, ChatTemplate.END_OF_TEXT)) {
        if (tokenizer.tokenId(special) >= 0) {
          stops.add(tokenizer.tokenId(special));
        }
      }
      List<Generator.Request> requests = new ArrayList<>();
      for (QaDataset.Example e : examples) {
        requests.add(new Generator.Request(tokenizer.encode(ChatTemplate.userPrompt(e.prompt())), maxNewTokens,
            SamplingParams.GREEDY, stops));
      }
      ObjectNode out = Json.object();
      out.put("data", data.toString());
      out.put("examples", examples.size());
      out.put("skipped", loaded.skipped().size());
      Score vanilla = run("vanilla", decoder, tokenizer, examples, requests, null, mode);
      out.set("vanilla", vanilla.json());
      print("vanilla", vanilla);
      if (memory != null) {
        try (ReasonerMemory mem = ReasonerMemory.embedded(decoder, Checkpoint.open(model).fingerprint(), memory,
            names -> DelimiterTable.build(tokenizer, decoder.config().vocabSize(), names))) {
          Score memgen = run("memgen", decoder, tokenizer, examples, requests, mem, mode);
          out.set("memgen", memgen.json());
          print("memgen", memgen);
        }
      }
      System.out.println(Json.line(out));
    }
    return 0;
  }

  private Score run(String label, Decoder decoder, TextTokenizer tokenizer, List<QaDataset.Example> examples,
      List<Generator.Request> requests, ReasonerMemory memory, MemGenInterleaver.TriggerMode mode) {
    Generator generator = new Generator(decoder);
    int correct = 0;
    long tokens = 0;
    int insertions = 0;
    int consultations = 0;
    long t0 = System.nanoTime();
    try (Progress p = new Progress("eval " + label, (requests.size() + batch - 1) / batch)) {
      for (int from = 0; from < requests.size(); from += batch) {
        List<Generator.Request> chunk = requests.subList(from, Math.min(requests.size(), from + batch));
        List<Generator.Result> results;
        List<MemGenInterleaver.Trace> traces = new ArrayList<>();
        if (memory == null) {
          results = generator.generate(chunk);
        } else {
          List<String> ids = new ArrayList<>();
          for (int i = 0; i < chunk.size(); i++) {
            ids.add("eval-" + (from + i));
          }
          try (MemGenInterleaver loop = memory.open(ids, mode, threshold, 0, OptionalInt.empty())) {
            results = generator.generate(chunk, (row, token, hidden) -> {}, loop);
            for (int i = 0; i < chunk.size(); i++) {
              traces.add(loop.trace(i));
            }
          }
        }
        for (int i = 0; i < chunk.size(); i++) {
          Generator.Result r = results.get(i);
          tokens += r.tokens().length;
          if (BoxedAnswer.matches(tokenizer.decode(r.tokens(), true), examples.get(from + i).expected())) {
            correct++;
          }
          if (!traces.isEmpty()) {
            MemGenInterleaver.Trace t = traces.get(i);
            int inference = (int) t.insertions().stream().filter(x -> x.kind() == Weaver.Kind.INFERENCE).count();
            insertions += inference;
            consultations += inference + t.skips().getOrDefault(MemGenInterleaver.Skip.TRIGGER_DECLINED, 0);
          }
        }
        p.step(String.format("accuracy so far %.1f%%", 100.0 * correct / Math.min(requests.size(), from + batch)));
      }
    }
    return new Score(correct, requests.size(), tokens, System.nanoTime() - t0, insertions, memory == null ? -1 : consultations);
  }

  private static void print(String label, Score s) {
    System.out.printf("%-8s accuracy %5.1f%% (%d/%d), %.1f tokens/example, %.1f tok/s%s%n", label, 100.0 * s.correct() / s.total(),
        s.correct(), s.total(), (double) s.tokens() / s.total(), s.tokens() / (s.nanos() / 1e9),
        s.consultations() < 0 ? "" : String.format(", invocation rate %.1f%% (%.2f inference insertions/example)",
            s.consultations() == 0 ? 0.0 : 100.0 * s.inferenceInsertions() / s.consultations(),
            (double) s.inferenceInsertions() / s.total()));
  }
}
