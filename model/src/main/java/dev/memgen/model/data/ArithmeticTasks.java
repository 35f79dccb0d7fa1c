package dev.memgen.model.data;

import java.util.ArrayList;
import java.util.List;
import java.util.Optional;
import java.util.SplittableRandom;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * A seeded synthetic task suite with chain-of-thought answers and a {@code \boxed{}} result, small enough for a base
 * model trained from scratch on two CPU cores (DESIGN.md section 3c):
 * <ul>
 *   <li><b>A</b> (pre-training): multi-step addition and subtraction.
 *       {@code Q:12+7-5=?} → {@code 12+7=19,19-5=14.\boxed{14}}
 *   <li><b>B</b> (what the memory should learn): the same problems, announced by {@code Q%:}, whose boxed answer is
 *       the result mod 10. {@code Q%:12+7-5=?} → {@code 12+7=19,19-5=14.\boxed{4}}. The rule is in the question, so
 *       it is learnable from context, but a base that only saw A boxes the plain result.
 *   <li><b>C</b> (what rewards alone should teach): A's questions with exactly {@link #LONG_CHAIN_OPERATIONS}
 *       operations, one more than the base is pre-trained on. {@code Q:12+7-5+30=?} →
 *       {@code 12+7=19,19-5=14,14+30=44.\boxed{44}}. The base partly solves them (it often stops a step early), and
 *       more often among several samples: the traffic a verifier's reward can teach from (DESIGN.md section 3d).
 * </ul>
 * Every intermediate result stays in [0, 99], so each step is a two-digit sum or difference.
 */
public final class ArithmeticTasks {
  public enum Domain { A, B, C }

  /** One problem: the prompt, the answer the model should write, and the boxed result alone. */
  public record Example(Domain domain, String prompt, String answer, String boxed) {}

  /** A question as {@link #generate} writes it: the marker, then the operands and signs, then {@code =?}. */
  private static final Pattern QUESTION = Pattern.compile("Q(%?):(\\d{1,9}(?:[+-]\\d{1,9})*)=\\?");

  /** Operations in every problem of domain C. */
  public static final int LONG_CHAIN_OPERATIONS = 3;

  /** Largest operand and intermediate result. */
  public static final int MAX_VALUE = 99;

  private ArithmeticTasks() {}

  /**
   * {@code n} problems of {@code domain} with 2 to {@code maxOperations} operations each, the same for the same seed.
   * The same seed gives the same problems in A and B (only the marker and the boxed answer differ). Domain C ignores
   * {@code maxOperations}: its problems have {@link #LONG_CHAIN_OPERATIONS} operations each.
   */
  public static List<Example> generate(Domain domain, int n, int maxOperations, long seed) {
    if (n < 0 || maxOperations < 1) {
      throw new IllegalArgumentException("need n >= 0 and maxOperations >= 1, got " + n + ", " + maxOperations);
    }
    SplittableRandom random = new SplittableRandom(seed);
    List<Example> out = new ArrayList<>(n);
    for (int i = 0; i < n; i++) {
      int operations = 1 + random.nextInt(maxOperations);
      out.add(problem(domain, random, domain == Domain.C ? LONG_CHAIN_OPERATIONS : operations));
    }
    return out;
  }

  /**
   * The boxed result a correct answer to the last question in {@code text} has (domain B's marker {@code Q%:} takes
   * it mod 10), or empty when {@code text} holds no question of this suite. This is what lets a verifier score
   * logged traffic on these tasks without a reference answer.
   */
  public static Optional<String> solve(String text) {
    Matcher m = QUESTION.matcher(text);
    String marker = null;
    String expression = null;
    while (m.find()) {
      marker = m.group(1);
      expression = m.group(2);
    }
    if (expression == null) {
      return Optional.empty();
    }
    Matcher term = Pattern.compile("([+-]?)(\\d+)").matcher(expression);
    long value = 0;
    while (term.find()) {
      long operand = Long.parseLong(term.group(2));
      value += term.group(1).equals("-") ? -operand : operand;
    }
    return Optional.of(String.valueOf(marker.isEmpty() ? value : Math.floorMod(value, 10)));
  }

  private static Example problem(Domain domain, SplittableRandom random, int operations) {
    int value = random.nextInt(MAX_VALUE + 1);
    StringBuilder question = new StringBuilder().append(value);
    StringBuilder steps = new StringBuilder();
    for (int op = 0; op < operations; op++) {
      boolean add = value == 0 || (value < MAX_VALUE && random.nextBoolean());
      int operand = add ? random.nextInt(MAX_VALUE - value + 1) : random.nextInt(value + 1);
      int next = add ? value + operand : value - operand;
      char sign = add ? '+' : '-';
      question.append(sign).append(operand);
      if (op > 0) {
        steps.append(',');
      }
      steps.append(value).append(sign).append(operand).append('=').append(next);
      value = next;
    }
    String boxed = String.valueOf(domain == Domain.B ? value % 10 : value);
    String marker = domain == Domain.B ? "Q%:" : "Q:";
    return new Example(domain, marker + question + "=?", steps + ".\\boxed{" + boxed + "}", boxed);
  }
}
