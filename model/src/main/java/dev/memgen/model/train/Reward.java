package dev.memgen.model.train;

import dev.memgen.model.data.BoxedAnswer;
import java.text.Normalizer;
import java.util.List;
import java.util.Locale;
import java.util.Set;

/**
 * Scores a completion against a problem's references: the reward of RL training. Implement it to plug in any
 * verifier (a unit-test runner, a judge, a tool call); the usual ones are here.
 */
@FunctionalInterface
public interface Reward {
  /**
   * @param completion the generated text (special tokens removed)
   * @param references the accepted answers (a boxed result for math, aliases for QA)
   */
  double score(String completion, List<String> references);

  /** 1 when the first {@code \boxed{}} of the completion equals a reference after normalisation, else 0. */
  static Reward boxedMath() {
    return (completion, references) -> references.stream().anyMatch(r -> BoxedAnswer.matches(completion, r)) ? 1 : 0;
  }

  /** 1 when the completion (its boxed part if it has one) equals a reference after SQuAD normalisation, else 0. */
  static Reward qaExactMatch() {
    return (completion, references) -> {
      String boxed = BoxedAnswer.extract(completion);
      String answer = normalizeQa(boxed != null ? boxed : completion);
      return references.stream().anyMatch(r -> normalizeQa(r).equals(answer)) ? 1 : 0;
    };
  }

  /** 1 when a reference (an alias), normalised, appears in the normalised completion, else 0. */
  static Reward qaAliasContainment() {
    return (completion, references) -> {
      String text = " " + normalizeQa(completion) + " ";
      return references.stream().map(Reward::normalizeQa).anyMatch(r -> !r.isEmpty() && text.contains(" " + r + " ")) ? 1 : 0;
    };
  }

  /** The reward named on a command line: boxed-math, qa-exact or qa-contains. */
  static Reward named(String name) {
    return switch (name) {
      case "boxed-math" -> boxedMath();
      case "qa-exact" -> qaExactMatch();
      case "qa-contains" -> qaAliasContainment();
      default -> throw new IllegalArgumentException("unknown reward '" + name + "' (boxed-math, qa-exact, qa-contains)");
    };
  }

  /** SQuAD's answer normalisation: lower case, no punctuation, no articles, single spaces. */
  static String normalizeQa(String s) {
    String t = Normalizer.normalize(s, Normalizer.Form.NFKC).toLowerCase(Locale.ROOT).replaceAll("\\p{Punct}", " ");
    StringBuilder out = new StringBuilder();
    for (String w : t.trim().split("\\s+")) {
      if (!w.isEmpty() && !Set.of("a", "an", "the").contains(w)) {
        out.append(out.length() == 0 ? "" : " ").append(w);
      }
    }
    return out.toString();
  }
}
