package dev.memgen.trainer;

import dev.memgen.model.data.ArithmeticTasks;
import dev.memgen.model.data.BoxedAnswer;
import java.util.Optional;

/**
 * Scores logged trajectories without waiting for a human: from the prompt alone it works out what a correct answer
 * must contain, then scores the completion against that. The trainer uses it for trajectories that have no Feedback,
 * and as the reward of GRPO rollouts re-sampled from logged prompts.
 */
public interface Verifier {
  /** Recorded as {@code Feedback.source} and in logs. */
  String name();

  /** The reference answer {@code prompt} implies, or empty when this verifier cannot judge it. */
  Optional<String> expected(String prompt);

  /** The reward of {@code completion} given the reference answer, in [0, 1]. */
  double score(String completion, String expected);

  /** The verifier called {@code name}: {@code arithmetic} (the project's task suite, boxed answers). */
  static Verifier named(String name) {
    if (name.equals("arithmetic")) {
      return new Verifier() {
        @Override
        public String name() {
          return "arithmetic-verifier";
        }

        @Override
        public Optional<String> expected(String prompt) {
          return ArithmeticTasks.solve(prompt);
        }

        @Override
        public double score(String completion, String expected) {
          return BoxedAnswer.matches(completion, expected) ? 1.0 : 0.0;
        }
      };
    }
    throw new IllegalArgumentException("unknown verifier '" + name + "' (known: arithmetic)");
  }
}
