package dev.memgen.model.eval;

import dev.memgen.model.Decoder;
import dev.memgen.model.Weaver;
import dev.memgen.model.data.BoxedAnswer;
import dev.memgen.model.generate.Generator;
import dev.memgen.model.generate.MemGenInterleaver;
import dev.memgen.model.generate.SamplingParams;
import dev.memgen.model.text.ChatTemplate;
import dev.memgen.model.text.TextTokenizer;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.Set;
import java.util.function.IntConsumer;

/**
 * Greedy accuracy on problems with a known result: each chat prompt is decoded greedily (in batches),
 * and scored by the first {@code \boxed{}} of the output against the expected result. With memory, every batch
 * opens a MemGen loop, and the score also counts inference insertions and trigger consultations.
 */
public final class Evaluator {
  /** A problem: the chat prompt, rendered with the generation prompt, and the expected boxed result. */
  public record Problem(String chatPrompt, String expected) {}

  /** Opens a MemGen loop for a batch of sequences named {@code ids}. */
  @FunctionalInterface
  public interface Memory {
    MemGenInterleaver open(List<String> ids);
  }

  /** What one run scored. {@code consultations} is -1 without memory. */
  public record Score(int correct, int total, long tokens, long nanos, int inferenceInsertions, int consultations) {
    public double accuracy() {
      return 100.0 * correct / total;
    }

    /** Inference insertions per consultation of the trigger (delimiters under the cap). */
    public double invocationRate() {
      return consultations <= 0 ? 0.0 : (double) inferenceInsertions / consultations;
    }
  }

  /**
   * Decodes a batch of requests, row i with row i of {@code memory} (null: none). The default is one static batch
   * of the {@link Generator}; the serving engine's continuous batching is the other (rows that finish early make
   * room for the next instead of waiting for the batch's longest answer).
   */
  @FunctionalInterface
  public interface Decoding {
    List<Generator.Result> decode(List<Generator.Request> requests, MemGenInterleaver memory);
  }

  private final Decoding decoding;
  private final TextTokenizer tokenizer;
  private final int maxNewTokens;
  private final int batch;
  private final Set<Integer> stops = new HashSet<>();

  public Evaluator(Decoder decoder, TextTokenizer tokenizer, int maxNewTokens, int batch) {
    this(decoder, tokenizer, maxNewTokens, batch, (requests, memory) -> new Generator(decoder).generate(requests,
        (row, token, hidden) -> {}, memory == null ? Generator.Interleaver.NONE : memory));
  }

  /** @param batch problems handed to {@code decoding} at a time */
  public Evaluator(Decoder decoder, TextTokenizer tokenizer, int maxNewTokens, int batch, Decoding decoding) {
    if (batch < 1 || maxNewTokens < 1) {
      throw new IllegalArgumentException("need a batch >= 1 and max new tokens >= 1");
    }
    this.decoding = decoding;
    this.tokenizer = tokenizer;
    this.maxNewTokens = maxNewTokens;
    this.batch = batch;
    stops.addAll(ChatTemplate.stopTokens(decoder.config(), tokenizer));
  }

  /**
   * What sampling {@code samples} answers per problem scored: {@code solved} problems with at least one right answer
   * (pass@k with k = samples), and {@code rightSamples} of the {@code problems * samples} answers right.
   */
  public record PassAtK(int solved, int problems, int samples, long rightSamples, long nanos) {
    public double passAtK() {
      return 100.0 * solved / problems;
    }

    /** The mean accuracy of one sampled answer (pass@1 estimated from all samples). */
    public double sampleAccuracy() {
      return 100.0 * rightSamples / ((long) problems * samples);
    }
  }

  /** Batches a run of {@code n} problems takes (for progress bars). */
  public int batches(int n) {
    return (n + batch - 1) / batch;
  }

  /**
   * Scores {@code problems}; {@code memory} null decodes with the frozen base alone.
   *
   * @param afterBatch told the number of correct answers so far after each batch
   */
  public Score run(List<Problem> problems, Memory memory, IntConsumer afterBatch) {
    int correct = 0;
    long tokens = 0;
    int insertions = 0;
    int consultations = 0;
    long t0 = System.nanoTime();
    for (int from = 0; from < problems.size(); from += batch) {
      List<Problem> chunk = problems.subList(from, Math.min(problems.size(), from + batch));
      Decoded d = decode(chunk.stream().map(p -> SamplingParams.GREEDY).toList(), chunk, from, memory);
      for (int i = 0; i < chunk.size(); i++) {
        Generator.Result r = d.results().get(i);
        tokens += r.tokens().length;
        if (BoxedAnswer.matches(tokenizer.decode(r.tokens(), true), chunk.get(i).expected())) {
          correct++;
        }
        if (!d.traces().isEmpty()) {
          MemGenInterleaver.Trace t = d.traces().get(i);
          int inference = (int) t.insertions().stream().filter(x -> x.kind() == Weaver.Kind.INFERENCE).count();
          insertions += inference;
          consultations += inference + t.skips().getOrDefault(MemGenInterleaver.Skip.TRIGGER_DECLINED, 0);
        }
      }
      afterBatch.accept(correct);
    }
    return new Score(correct, problems.size(), tokens, System.nanoTime() - t0, insertions, memory == null ? -1 : consultations);
  }

  /**
   * Samples {@code samples} answers per problem at {@code temperature} (answer j of problem i seeded
   * {@code seed + i * samples + j}, so a run repeats) and scores pass@k: the gap between it and greedy accuracy is
   * what learning from rewards can harvest (DESIGN.md section 3d).
   *
   * @param afterBatch told the number of problems solved so far after each batch of problems
   */
  public PassAtK passAtK(List<Problem> problems, int samples, double temperature, long seed, Memory memory,
      IntConsumer afterBatch) {
    if (samples < 1 || !(temperature > 0)) {
      throw new IllegalArgumentException("pass@k needs samples >= 1 and a temperature > 0, got " + samples + ", " + temperature);
    }
    int perBatch = Math.max(1, batch / samples);
    int solved = 0;
    long right = 0;
    long t0 = System.nanoTime();
    for (int from = 0; from < problems.size(); from += perBatch) {
      List<Problem> chunk = problems.subList(from, Math.min(problems.size(), from + perBatch));
      List<Problem> rows = new ArrayList<>();
      List<SamplingParams> sampling = new ArrayList<>();
      for (int i = 0; i < chunk.size(); i++) {
        for (int j = 0; j < samples; j++) {
          rows.add(chunk.get(i));
          sampling.add(new SamplingParams(temperature, 0, 1, seed + (long) (from + i) * samples + j));
        }
      }
      Decoded d = decode(sampling, rows, from * samples, memory);
      for (int i = 0; i < chunk.size(); i++) {
        int good = 0;
        for (int j = 0; j < samples; j++) {
          if (BoxedAnswer.matches(tokenizer.decode(d.results().get(i * samples + j).tokens(), true), chunk.get(i).expected())) {
            good++;
          }
        }
        right += good;
        solved += good > 0 ? 1 : 0;
      }
      afterBatch.accept(solved);
    }
    return new PassAtK(solved, problems.size(), samples, right, System.nanoTime() - t0);
  }

  /** Batches a pass@k run of {@code n} problems takes (for progress bars). */
  public int passAtKBatches(int n, int samples) {
    int perBatch = Math.max(1, batch / samples);
    return (n + perBatch - 1) / perBatch;
  }

  private record Decoded(List<Generator.Result> results, List<MemGenInterleaver.Trace> traces) {}

  /** One batch: row i decodes {@code rows[i]} with {@code sampling[i]}; sequence ids count from {@code firstId}. */
  private Decoded decode(List<SamplingParams> sampling, List<Problem> rows, int firstId, Memory memory) {
    List<Generator.Request> requests = new ArrayList<>();
    for (int i = 0; i < rows.size(); i++) {
      requests.add(new Generator.Request(tokenizer.encode(rows.get(i).chatPrompt()), maxNewTokens, sampling.get(i), stops));
    }
    if (memory == null) {
      return new Decoded(decoding.decode(requests, null), List.of());
    }
    List<String> ids = new ArrayList<>();
    for (int i = 0; i < rows.size(); i++) {
      ids.add("eval-" + (firstId + i));
    }
    List<MemGenInterleaver.Trace> traces = new ArrayList<>();
    try (MemGenInterleaver loop = memory.open(ids)) {
      List<Generator.Result> results = decoding.decode(requests, loop);
      for (int i = 0; i < rows.size(); i++) {
        traces.add(loop.trace(i));
      }
      return new Decoded(results, traces);
    }
  }

}
