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

  private final Decoder decoder;
  private final TextTokenizer tokenizer;
  private final int maxNewTokens;
  private final int batch;
  private final Set<Integer> stops = new HashSet<>();

  public Evaluator(Decoder decoder, TextTokenizer tokenizer, int maxNewTokens, int batch) {
    if (batch < 1 || maxNewTokens < 1) {
      throw new IllegalArgumentException("need a batch >= 1 and max new tokens >= 1");
    }
    this.decoder = decoder;
    this.tokenizer = tokenizer;
    this.maxNewTokens = maxNewTokens;
    this.batch = batch;
    stops.addAll(decoder.config().eosTokenIds());
    for (String special : List.of(ChatTemplate.IM_END, ChatTemplate.END_OF_TEXT)) {
      if (tokenizer.tokenId(special) >= 0) {
        stops.add(tokenizer.tokenId(special));
      }
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
    Generator generator = new Generator(decoder);
    int correct = 0;
    long tokens = 0;
    int insertions = 0;
    int consultations = 0;
    long t0 = System.nanoTime();
    for (int from = 0; from < problems.size(); from += batch) {
      List<Problem> chunk = problems.subList(from, Math.min(problems.size(), from + batch));
      List<Generator.Request> requests = new ArrayList<>();
      for (Problem p : chunk) {
        requests.add(new Generator.Request(tokenizer.encode(p.chatPrompt()), maxNewTokens,
            SamplingParams.GREEDY, stops));
      }
      List<Generator.Result> results;
      List<MemGenInterleaver.Trace> traces = new ArrayList<>();
      if (memory == null) {
        results = generator.generate(requests);
      } else {
        List<String> ids = new ArrayList<>();
        for (int i = 0; i < chunk.size(); i++) {
          ids.add("eval-" + (from + i));
        }
        try (MemGenInterleaver loop = memory.open(ids)) {
          results = generator.generate(requests, (row, token, hidden) -> {}, loop);
          for (int i = 0; i < chunk.size(); i++) {
            traces.add(loop.trace(i));
          }
        }
      }
      for (int i = 0; i < chunk.size(); i++) {
        Generator.Result r = results.get(i);
        tokens += r.tokens().length;
        if (BoxedAnswer.matches(tokenizer.decode(r.tokens(), true), chunk.get(i).expected())) {
          correct++;
        }
        if (!traces.isEmpty()) {
          MemGenInterleaver.Trace t = traces.get(i);
          int inference = (int) t.insertions().stream().filter(x -> x.kind() == Weaver.Kind.INFERENCE).count();
          insertions += inference;
          consultations += inference + t.skips().getOrDefault(MemGenInterleaver.Skip.TRIGGER_DECLINED, 0);
        }
      }
      afterBatch.accept(correct);
    }
    return new Score(correct, problems.size(), tokens, System.nanoTime() - t0, insertions, memory == null ? -1 : consultations);
  }
}
