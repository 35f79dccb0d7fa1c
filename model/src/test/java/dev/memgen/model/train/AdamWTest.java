package dev.memgen.model.train;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;

import ai.djl.engine.Engine;
import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.training.GradientCollector;
import java.util.Map;
import java.util.concurrent.atomic.AtomicReference;
import org.junit.jupiter.api.Test;

class AdamWTest {
  /**
   * The first AdamW update moves each weight by lr·sign(grad) after decoupled decay (m̂ = g, v̂ = g²), and it must
   * work on a thread other than the one that started the engine (grad mode is per thread; the continual trainer
   * trains on its own thread).
   */
  @Test
  void firstUpdateIsSignedStepAfterDecayOnAnyThread() throws Exception {
    Engine.getEngine("PyTorch"); // started on this thread
    AtomicReference<float[]> after = new AtomicReference<>();
    AtomicReference<Throwable> failure = new AtomicReference<>();
    Thread t = new Thread(() -> {
      try (NDManager m = NDManager.newBaseManager()) {
        NDArray p = m.create(new float[] {1f, -2f, 3f, 0.5f}, new ai.djl.ndarray.types.Shape(2, 2));
        p.setRequiresGradient(true);
        AdamW opt = new AdamW(Map.of("p", p), new AdamW.Settings(0.9, 0.999, 1e-8, 0.1, 0), m);
        try (GradientCollector c = Engine.getEngine("PyTorch").newGradientCollector()) {
          c.backward(p.mul(m.create(new float[] {1f, -1f, 2f, -3f}, p.getShape())).sum());
        }
        opt.step(0.01);
        after.set(p.toFloatArray());
      } catch (Throwable e) {
        failure.set(e);
      }
    });
    t.start();
    t.join();
    if (failure.get() != null) {
      throw new AssertionError("AdamW on a second thread", failure.get());
    }
    float[] p0 = {1f, -2f, 3f, 0.5f};
    float[] g = {1f, -1f, 2f, -3f};
    float[] expected = new float[4];
    for (int i = 0; i < 4; i++) {
      expected[i] = (float) (p0[i] * (1 - 0.01 * 0.1) - 0.01 * Math.signum(g[i]));
    }
    assertArrayEquals(expected, after.get(), 1e-6f);
  }
}
