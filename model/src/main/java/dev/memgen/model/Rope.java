package dev.memgen.model;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;

/**
 * Rotary position embedding, Hugging Face convention ("rotate half": the two halves of a head are the
 * rotated pairs). {@code rotate_half(x) = x @ R} for a fixed signed permutation {@code R}, so applying RoPE
 * costs one small matmul and two multiplies on q and k together, and no slicing.
 */
final class Rope {
  private final double[] invFreq;
  private final int headDim;
  private final NDArray rotateHalf;

  Rope(ModelConfig c, NDManager manager) {
    headDim = c.headDim();
    invFreq = new double[headDim / 2];
    for (int i = 0; i < invFreq.length; i++) {
      invFreq[i] = 1.0 / Math.pow(c.ropeTheta(), (2.0 * i) / headDim);
    }
    if (c.ropeScaling() != null) {
      llama3Scale(c.ropeScaling());
    }
    float[] r = new float[headDim * headDim];
    int half = headDim / 2;
    for (int j = 0; j < half; j++) {
      r[(j + half) * headDim + j] = -1f; // out[j] = -x[j + half]
      r[j * headDim + j + half] = 1f; //     out[j + half] = x[j]
    }
    rotateHalf = manager.create(r, Ops.shape(headDim, headDim));
  }

  /** Llama 3.1's long-context frequency adjustment (transformers' _compute_llama3_parameters). */
  private void llama3Scale(ModelConfig.RopeScaling s) {
    double lowWavelen = s.originalMaxPositions() / s.lowFreqFactor();
    double highWavelen = s.originalMaxPositions() / s.highFreqFactor();
    for (int i = 0; i < invFreq.length; i++) {
      double wavelen = 2 * Math.PI / invFreq[i];
      if (wavelen > lowWavelen) {
        invFreq[i] /= s.factor();
      } else if (wavelen >= highWavelen) {
        double smooth = (s.originalMaxPositions() / wavelen - s.lowFreqFactor()) / (s.highFreqFactor() - s.lowFreqFactor());
        invFreq[i] = (1 - smooth) * invFreq[i] / s.factor() + smooth * invFreq[i];
      }
    }
  }

  /** cos and sin tables for the given positions, shaped {@code [batch, n, 1, headDim]} to broadcast over heads. */
  NDArray[] tables(NDManager manager, int[][] positions) {
    int batch = positions.length;
    int n = positions[0].length;
    float[] cos = new float[batch * n * headDim];
    float[] sin = new float[batch * n * headDim];
    int half = headDim / 2;
    for (int b = 0; b < batch; b++) {
      for (int t = 0; t < n; t++) {
        int base = (b * n + t) * headDim;
        for (int i = 0; i < half; i++) {
          double angle = positions[b][t] * invFreq[i];
          float c = (float) Math.cos(angle);
          float s = (float) Math.sin(angle);
          cos[base + i] = c;
          cos[base + i + half] = c;
          sin[base + i] = s;
          sin[base + i + half] = s;
        }
      }
    }
    return new NDArray[] {
      manager.create(cos, Ops.shape(batch, n, 1, headDim)), manager.create(sin, Ops.shape(batch, n, 1, headDim))
    };
  }

  /** {@code x * cos + rotate_half(x) * sin} for x shaped {@code [batch, n, heads, headDim]}. */
  NDArray apply(NDArray x, NDArray cos, NDArray sin) {
    return Ops.mul(x, cos).addi(Ops.mul(Ops.matmul(x, rotateHalf), sin));
  }
}
