package dev.memgen.reasoner.openai;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.List;
import org.junit.jupiter.api.Test;

/** A stop string never shows, not even in part across streamed pieces; text that only looked like one is released. */
class StopStringsTest {
  @Test
  void aStopStringSplitAcrossPiecesEndsTheTextBeforeIt() {
    StopStrings s = new StopStrings(List.of("\n\nQ:", "END"));
    StringBuilder shown = new StringBuilder();
    for (String piece : List.of("The answer", " is 5.\n", "\nQ", ": next")) {
      shown.append(s.add(piece));
    }
    assertTrue(s.stopped());
    assertEquals("The answer is 5.", shown.toString());
    assertEquals("", s.add("more"));
  }

  @Test
  void aPartialMatchIsHeldThenReleased() {
    StopStrings s = new StopStrings(List.of("END"));
    assertEquals("ab", s.add("abEN"));
    assertEquals("ENx", s.add("x"));
    assertEquals("", s.add("E"));
    assertFalse(s.stopped());
    assertEquals("E", s.flush());
  }
}
