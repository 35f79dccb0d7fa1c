package dev.memgen.trainer;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.memgen.model.data.ArithmeticTasks;
import dev.memgen.model.eval.Evaluator;
import java.util.List;
import org.junit.jupiter.api.Test;

/** {@code memgen.trainer.eval-set}: the gate's held-out problems, of every domain or of the ones named. */
class HeldOutSpecTest {
  @Test
  void namedDomainsOnlyAndEveryDomainByDefault() throws Exception {
    List<Evaluator.Problem> ac = HeldOut.parse("arithmetic:5:A,C");
    assertEquals(10, ac.size());
    assertTrue(ac.subList(0, 5).stream().allMatch(p -> p.chatPrompt().contains("Q:")), "A first");
    for (Evaluator.Problem p : ac.subList(5, 10)) { // C: three operations
      String q = p.chatPrompt().substring(p.chatPrompt().indexOf("Q:") + 2, p.chatPrompt().indexOf("=?"));
      assertEquals(ArithmeticTasks.LONG_CHAIN_OPERATIONS, q.replaceAll("[0-9]", "").length(), q);
    }
    assertEquals(5 * ArithmeticTasks.Domain.values().length, HeldOut.parse("arithmetic:5").size());
  }

  @Test
  void anUnknownDomainIsNamed() {
    IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> HeldOut.parse("arithmetic:5:A,Z"));
    assertTrue(e.getMessage().contains("unknown domain 'Z'") && e.getMessage().contains("[A, B, C]"), e.getMessage());
  }
}
