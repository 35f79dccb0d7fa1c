package dev.memgen.model;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.Shape;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

/** The blocked product equals the whole one, for every way {@link Linear} splits the weight. */
class LinearTest {
  // 2601 x 900 = 2.34M elements: two blocks (one per core) for decode, four for a few dozen rows; 2601 rows do not
  // divide evenly, so the blocks differ in size.
  static final int OUT = 2601;
  static final int IN = 900;

  @Test
  void aLargeWeightIsSplitMoreFinelyForAFewDozenRowsOnly() {
    assumeTrue(Engines.THREADS > 1, "one core: nothing is split");
    try (NDManager m = Engines.manager().newSubManager()) {
      Linear l = new Linear(m.randomNormal(new Shape(OUT, IN)), null);
      assertEquals(Engines.THREADS, l.blocks(1));
      assertEquals(Engines.THREADS, l.blocks(Linear.FINE_MIN_ROWS - 1));
      assertTrue(l.blocks(46) > Engines.THREADS, "46 rows: " + l.blocks(46) + " blocks");
      assertEquals(0, l.blocks(46) % Engines.THREADS, "every thread gets as many blocks");
      assertEquals(Engines.THREADS, l.blocks(Linear.FINE_MAX_ROWS + 1));
      // A small weight is never split finer than one block per core.
      assertEquals(Engines.THREADS, new Linear(m.randomNormal(new Shape(1024, 512)), null).blocks(46));
    }
  }

  @ParameterizedTest(name = "{0} rows in batches of {1}, bias {2}")
  @CsvSource({"1, 1, true", "9, 1, false", "16, 1, true", "46, 1, false", "46, 1, true", "32, 2, true", "64, 1, false",
      "65, 1, true", "300, 1, false"})
  void blockedProductEqualsTheWholeOne(int rows, int batch, boolean withBias) {
    try (NDManager m = Engines.manager().newSubManager()) {
      NDArray w = m.randomNormal(new Shape(OUT, IN));
      NDArray b = withBias ? m.randomNormal(new Shape(OUT)) : null;
      NDArray x = m.randomNormal(new Shape(batch, rows / batch, IN));
      float[] blocked = new Linear(w, b).forward(x).toFloatArray();
      float[] whole = Ops.linear(x, w, b).toFloatArray();
      assertEquals(whole.length, blocked.length);
      for (int i = 0; i < whole.length; i++) {
        // Blocking splits the output rows only: every dot product runs over the same 900 inputs.
        assertEquals(whole[i], blocked[i], 1e-4f * (1 + Math.abs(whole[i])), "element " + i);
      }
    }
  }
}
