package dev.memgen.model.train;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.pytorch.engine.PtNDArray;
import ai.djl.pytorch.jni.JniUtils;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * AdamW (torch.optim.AdamW's update) with clipping of the gradients' global norm. Weight decay is decoupled and
 * applies to tensors of rank 2 or more (LoRA factors, projections, query sets), not to biases, norms or scales, as
 * nanoGPT does.
 *
 * <p>Reads each parameter's accumulated gradient, updates the parameter in place and zeroes the gradient (DJL's
 * PyTorch engine accumulates gradients across backward calls, which is what gradient accumulation wants).
 */
public final class AdamW {
  public record Settings(double beta1, double beta2, double eps, double weightDecay, double clipNorm) {
    public static final Settings DEFAULT = new Settings(0.9, 0.999, 1e-8, 0.01, 1.0);
  }

  private final Map<String, NDArray> params;
  private final Settings settings;
  private final Map<String, NDArray> firstMoment = new LinkedHashMap<>();
  private final Map<String, NDArray> secondMoment = new LinkedHashMap<>();
  private long steps;
  private int skipped;
  private int skippedInARow;
  /** Updates in a row whose gradients may be non-finite before training counts as diverged. */
  static final int MAX_SKIPPED_IN_A_ROW = 10;

  /** @param params the tensors to train, by name; each must already require a gradient */
  public AdamW(Map<String, NDArray> params, Settings settings, NDManager manager) {
    this.params = params;
    this.settings = settings;
    params.forEach((name, p) -> {
      if (!p.hasGradient()) {
        throw new IllegalArgumentException("parameter " + name + " does not require a gradient");
      }
      firstMoment.put(name, manager.zeros(p.getShape()));
      secondMoment.put(name, manager.zeros(p.getShape()));
    });
  }

  /** Updates skipped because their gradients were not finite. */
  public int skippedSteps() {
    return skipped;
  }

  public long steps() {
    return steps;
  }

  /** Moments by name ("m." and "v." prefixes), for checkpoints. */
  public Map<String, NDArray> state() {
    Map<String, NDArray> s = new LinkedHashMap<>();
    firstMoment.forEach((n, t) -> s.put("m." + n, t));
    secondMoment.forEach((n, t) -> s.put("v." + n, t));
    return s;
  }

  /** Restores moments saved by {@link #state()} after {@code steps} updates. */
  public void restore(Map<String, NDArray> state, long steps) {
    for (Map.Entry<String, NDArray> e : state().entrySet()) {
      NDArray saved = state.get(e.getKey());
      if (saved == null || !saved.getShape().equals(e.getValue().getShape())) {
        throw new IllegalArgumentException("optimizer state " + e.getKey() + " is missing or has the wrong shape");
      }
      e.getValue().muli(0).addi(saved);
    }
    this.steps = steps;
  }

  /**
   * One update at learning rate {@code lr} from the gradients accumulated since the last one.
   *
   * <p>A batch whose gradients are not finite (one pathological batch) is skipped: no parameter changes. Ten such
   * batches in a row mean training diverged.
   *
   * @return the gradients' global L2 norm before clipping (not finite for a skipped update)
   * @throws TrainingDivergedException after ten non-finite updates in a row, naming the tensors
   */
  public double step(double lr) {
    // Autograd's grad mode is per thread, and only the thread that started the engine has it off: on any other
    // thread the in-place updates below would be refused on leaf tensors that require gradients.
    boolean gradMode = JniUtils.isGradMode();
    JniUtils.setGradMode(false);
    try {
      return update(lr);
    } finally {
      JniUtils.setGradMode(gradMode);
    }
  }

  private double update(double lr) {
    double sumSquares = 0;
    Map<String, NDArray> grads = new LinkedHashMap<>();
    List<String> bad = new ArrayList<>();
    for (Map.Entry<String, NDArray> e : params.entrySet()) {
      NDArray g = e.getValue().getGradient();
      grads.put(e.getKey(), g);
      double squares; // in f64: squaring a large but finite f32 gradient would overflow to infinity, and the clip would not see it
      try (NDArray wide = g.toType(ai.djl.ndarray.types.DataType.FLOAT64, false)) {
        squares = wide.square().sum().getDouble();
      }
      if (!Double.isFinite(squares)) {
        bad.add(e.getKey());
      }
      sumSquares += squares;
    }
    double norm = Math.sqrt(sumSquares);
    if (!Double.isFinite(norm)) {
      zero(grads, params);
      skipped++;
      if (++skippedInARow >= MAX_SKIPPED_IN_A_ROW) {
        throw new TrainingDivergedException("training diverged: " + skippedInARow + " updates in a row had non-finite "
            + "gradients (the last in " + bad + "); try a lower learning rate");
      }
      return norm;
    }
    skippedInARow = 0;
    steps++;
    double clip = settings.clipNorm() > 0 && norm > settings.clipNorm() ? settings.clipNorm() / norm : 1.0;
    double b1 = settings.beta1();
    double b2 = settings.beta2();
    double stepSize = lr / (1 - Math.pow(b1, steps));
    double secondCorrection = Math.sqrt(1 - Math.pow(b2, steps));
    for (Map.Entry<String, NDArray> e : params.entrySet()) {
      NDArray p = e.getValue();
      NDArray g = grads.get(e.getKey()).mul(clip);
      NDArray m = firstMoment.get(e.getKey());
      NDArray v = secondMoment.get(e.getKey());
      m.muli(b1).addi(g.mul(1 - b1));
      v.muli(b2).addi(g.square().muli(1 - b2));
      if (settings.weightDecay() > 0 && p.getShape().dimension() >= 2) {
        p.muli(1 - lr * settings.weightDecay());
      }
      // torch: p -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)
      NDArray denom = v.sqrt().divi(secondCorrection).addi(settings.eps());
      NDArray update = m.div(denom).muli(stepSize);
      p.subi(update);
      g.close();
      denom.close();
      update.close();
    }
    zero(grads, params);
    return norm;
  }

  /** Zeroes the accumulated gradients without updating (after a diverged step, or to start clean). */
  public void zeroGradients() {
    zero(Map.of(), params);
  }

  /** Zeroes every parameter's gradient (zero_(), not a multiply: 0 * NaN stays NaN) and frees the handles. */
  private static void zero(Map<String, NDArray> handles, Map<String, NDArray> params) {
    params.values().forEach(p -> JniUtils.zeroGrad((PtNDArray) p));
    handles.values().forEach(NDArray::close);
  }
}
