package dev.memgen.model.data;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.memgen.model.data.ArithmeticTasks.Domain;
import dev.memgen.model.data.ArithmeticTasks.Example;
import java.util.HashSet;
import java.util.List;
import java.util.Set;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.junit.jupiter.api.Test;

/**
 * The task suite checked by a separate reading of its text: the question is evaluated left to right from its own
 * characters, every chain-of-thought step is re-computed and must continue from the previous one, and the boxed
 * answer must be the result (A) or the result mod 10 (B).
 */
class ArithmeticTasksTest {
  static final Pattern QUESTION = Pattern.compile("Q(%?):(\\d+(?:[+-]\\d+)+)=\\?");
  static final Pattern STEP = Pattern.compile("(\\d+)([+-])(\\d+)=(\\d+)");

  static int evaluate(String expression) {
    Matcher terms = Pattern.compile("([+-]?)(\\d+)").matcher(expression);
    int value = 0;
    while (terms.find()) {
      int v = Integer.parseInt(terms.group(2));
      value += terms.group(1).equals("-") ? -v : v;
    }
    return value;
  }

  static void check(Example e) {
    Matcher q = QUESTION.matcher(e.prompt());
    assertTrue(q.matches(), "question format: " + e.prompt());
    assertEquals(e.domain() == Domain.B, q.group(1).equals("%"), "the marker announces the domain: " + e.prompt());
    int result = evaluate(q.group(2));

    assertTrue(e.answer().endsWith(".\\boxed{" + e.boxed() + "}"), e.answer());
    String[] steps = e.answer().substring(0, e.answer().indexOf(".\\boxed{")).split(",");
    Matcher numbers = Pattern.compile("\\d+").matcher(q.group(2));
    numbers.find();
    int running = Integer.parseInt(numbers.group());
    for (String step : steps) {
      Matcher s = STEP.matcher(step);
      assertTrue(s.matches(), "step format: " + step + " in " + e.answer());
      int a = Integer.parseInt(s.group(1));
      int b = Integer.parseInt(s.group(3));
      int c = Integer.parseInt(s.group(4));
      assertEquals(running, a, "each step continues from the last: " + e.answer());
      assertEquals(s.group(2).equals("+") ? a + b : a - b, c, "arithmetic of " + step);
      assertTrue(c >= 0 && c <= ArithmeticTasks.MAX_VALUE, "intermediate in range: " + step);
      assertTrue(numbers.find() && Integer.parseInt(numbers.group()) == b, "operands in the question's order: " + e);
      running = c;
    }
    assertFalse(numbers.find(), "every operand used: " + e);
    assertEquals(result, running, "the chain ends at the question's value: " + e);
    assertEquals(String.valueOf(e.domain() == Domain.B ? result % 10 : result), e.boxed(), e.toString());
    if (e.domain() == Domain.C) {
      assertEquals(ArithmeticTasks.LONG_CHAIN_OPERATIONS, steps.length, "C: exactly three operations: " + e);
    }
    assertTrue(BoxedAnswer.matches(e.answer(), e.boxed()));
  }

  @Test
  void everyProblemIsCorrectInEveryDomain() {
    for (Domain d : Domain.values()) {
      List<Example> examples = ArithmeticTasks.generate(d, 3000, 3, 42);
      assertEquals(3000, examples.size());
      examples.forEach(ArithmeticTasksTest::check);
    }
  }

  @Test
  void aSeedGivesTheSameProblemsAndBOnlyChangesTheMarkerAndTheBox() {
    List<Example> a = ArithmeticTasks.generate(Domain.A, 200, 3, 7);
    assertEquals(a, ArithmeticTasks.generate(Domain.A, 200, 3, 7));
    assertFalse(a.equals(ArithmeticTasks.generate(Domain.A, 200, 3, 8)));
    List<Example> b = ArithmeticTasks.generate(Domain.B, 200, 3, 7);
    int differentBoxes = 0;
    for (int i = 0; i < a.size(); i++) {
      assertEquals(a.get(i).prompt().replace("Q:", "Q%:"), b.get(i).prompt());
      String stepsA = a.get(i).answer().substring(0, a.get(i).answer().indexOf("\\boxed"));
      assertEquals(stepsA, b.get(i).answer().substring(0, b.get(i).answer().indexOf("\\boxed")));
      differentBoxes += a.get(i).boxed().equals(b.get(i).boxed()) ? 0 : 1;
    }
    assertTrue(differentBoxes > 150, "B's box differs from A's whenever the result is >= 10: " + differentBoxes);
  }

  @Test
  void problemsVaryInLengthAndOperation() {
    Set<Integer> lengths = new HashSet<>();
    Set<Character> ops = new HashSet<>();
    for (Example e : ArithmeticTasks.generate(Domain.A, 500, 3, 1)) {
      lengths.add(e.answer().split(",").length);
      e.prompt().chars().filter(c -> c == '+' || c == '-').forEach(c -> ops.add((char) c));
    }
    assertEquals(Set.of(1, 2, 3), lengths);
    assertEquals(Set.of('+', '-'), ops);
    assertThrows(IllegalArgumentException.class, () -> ArithmeticTasks.generate(Domain.A, 1, 0, 1));
  }

  @Test
  void boxedAnswersAreExtractedAndNormalised() {
    assertEquals("14", BoxedAnswer.extract("12+7=19,19-5=14.\\boxed{14} and \\boxed{3}"));
    assertEquals("\\frac{1}{2}", BoxedAnswer.extract("so \\boxed{\\frac{1}{2}}."));
    assertNull(BoxedAnswer.extract("no box here"));
    assertNull(BoxedAnswer.extract("\\boxed{14"));
    assertEquals("14", BoxedAnswer.normalize(" +014. "));
    assertEquals("0", BoxedAnswer.normalize("-0"));
    assertEquals("-7", BoxedAnswer.normalize("-007"));
    assertEquals("x+1", BoxedAnswer.normalize("x + 1"));
    assertTrue(BoxedAnswer.matches("...\\boxed{ 04 }", "4"));
    assertFalse(BoxedAnswer.matches("...\\boxed{14}", "4"));
    assertFalse(BoxedAnswer.matches("4", "4"), "no box, no credit");
  }

  @Test
  void solvingAQuestionFromItsTextGivesTheGeneratorsBoxedAnswer() {
    for (Domain d : Domain.values()) {
      for (Example e : ArithmeticTasks.generate(d, 300, 4, 7)) {
        String chat = "<|im_start|>user\n" + e.prompt() + "<|im_end|>\n<|im_start|>assistant\n";
        assertEquals(e.boxed(), ArithmeticTasks.solve(chat).orElseThrow(), chat);
      }
    }
    assertEquals("3", ArithmeticTasks.solve("Q:1+2=? then Q%:50+3=?").orElseThrow(), "the last question counts");
    assertEquals(java.util.Optional.empty(), ArithmeticTasks.solve("What is 2+2?"));
  }
}
