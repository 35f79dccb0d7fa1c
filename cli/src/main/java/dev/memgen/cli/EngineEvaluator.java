package dev.memgen.cli;

import dev.memgen.engine.core.EngineCore;
import dev.memgen.model.Decoder;
import dev.memgen.model.eval.Evaluator;
import dev.memgen.model.text.TextTokenizer;

/**
 * An {@link Evaluator} that decodes through the serving engine: {@code rows} sequences in flight, each replaced as soon
 * as it finishes, instead of static batches that wait for their longest answer. Closing it stops the engine.
 */
final class EngineEvaluator implements AutoCloseable {
  private final EngineCore engine;
  private final Evaluator evaluator;

  EngineEvaluator(Decoder decoder, TextTokenizer tokenizer, int maxNewTokens, int rows) {
    engine = new EngineCore(decoder, new EngineCore.Limits(rows, rows, 512, 0), "memgen-eval-engine");
    // Four batches' worth of problems at a time keeps every row busy while the next problems wait their turn.
    evaluator = new Evaluator(decoder, tokenizer, maxNewTokens, 4 * rows, (requests, memory) -> {
      try {
        return engine.generateAll(requests, memory);
      } catch (InterruptedException e) {
        Thread.currentThread().interrupt();
        throw new IllegalStateException("interrupted while evaluating", e);
      }
    });
  }

  Evaluator evaluator() {
    return evaluator;
  }

  @Override
  public void close() {
    engine.close();
  }
}
