package dev.memgen.model.train;

import dev.memgen.model.generate.MemGenInterleaver;
import java.util.List;

/**
 * One sampled completion of a problem, scored: what RL trains on. {@code decisions} are the trigger's choices at
 * the delimiters it was consulted at, in order; empty when the trigger was inactive.
 */
public record Rollout(int problem, TokenizedExample example, String text, double reward,
    List<MemGenInterleaver.Decision> decisions) {
  /** Invocations per consultation; 0 without consultations. */
  public double invocationRate() {
    return decisions.isEmpty() ? 0 : decisions.stream().filter(MemGenInterleaver.Decision::invoke).count() / (double) decisions.size();
  }
}
