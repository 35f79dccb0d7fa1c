package dev.memgen.rpc;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

import java.time.Duration;
import org.junit.jupiter.api.Test;

class CallDeadlineTest {
  @Test
  void aCallGetsTheFixedPartPlusItsRows() {
    CallDeadline d = new CallDeadline(Duration.ofSeconds(2), Duration.ofMillis(20));
    assertEquals(Duration.ofSeconds(2), d.forRows(0));
    assertEquals(Duration.ofMillis(2000 + 20 * 2048), d.forRows(2048));
    assertEquals(Duration.ofSeconds(2), d.forRows(-5));
    assertEquals(Duration.ofMillis(300), CallDeadline.of(Duration.ofMillis(300)).forRows(10_000));
    assertThrows(IllegalArgumentException.class, () -> CallDeadline.of(Duration.ZERO));
    assertThrows(IllegalArgumentException.class, () -> new CallDeadline(Duration.ofSeconds(1), Duration.ofMillis(-1)));
  }
}
