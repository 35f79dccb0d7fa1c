package dev.memgen.model.train;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import java.util.LinkedHashMap;
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
   * @return the gradients' global L2 norm before clipping (NaN or infinite when training diverged: then no
   *     parameter changes, and the caller decides)
   */
  public double step(double lr) {
    double sumSquares = 0;
    Map<String, NDArray> grads = new LinkedHashMap<>();
    for (Map.Entry<String, NDArray> e : params.entrySet()) {
      NDArray g = e.getValue().getGradient();
      grads.put(e.getKey(), g);
      sumSquares += g.square().sum().getFloat();
    }
    double norm = Math.sqrt(sumSquares);
    if (!Double.isFinite(norm)) {
      zero(grads);
      return norm;
    }
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
    zero(grads);
    return norm;
  }

  /** Zeroes the accumulated gradients without updating (after a diverged step, or to start clean). */
  public void zeroGradients() {
    Map<String, NDArray> grads = new LinkedHashMap<>();
    params.forEach((n, p) -> grads.put(n, p.getGradient()));
    zero(grads);
  }

  private static void zero(Map<String, NDArray> grads) {
    for (NDArray g : grads.values()) {
      g.muli(0);
      g.close();
    }
  }
}
