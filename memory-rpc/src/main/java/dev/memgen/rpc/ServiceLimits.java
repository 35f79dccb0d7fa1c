package dev.memgen.rpc;

/**
 * Bounds a memory service enforces.
 *
 * @param maxSessions open sessions at once (more are refused with RESOURCE_EXHAUSTED)
 * @param maxSessionLength rows (tokens and latents) one session may grow to; 0 means the base model's
 *     max_position_embeddings. An append or weave past it is refused with INVALID_ARGUMENT.
 * @param maxAppendRows rows one append may carry (INVALID_ARGUMENT past it)
 */
public record ServiceLimits(int maxSessions, int maxSessionLength, int maxAppendRows) {
  public static final ServiceLimits DEFAULT = new ServiceLimits(64, 0, 8192);

  public ServiceLimits {
    if (maxSessions < 1 || maxSessionLength < 0 || maxAppendRows < 1) {
      throw new IllegalArgumentException("limits must be positive: " + maxSessions + ", " + maxSessionLength + ", " + maxAppendRows);
    }
  }

  int sessionLength(int maxPositions) {
    return maxSessionLength == 0 ? maxPositions : Math.min(maxSessionLength, maxPositions);
  }
}
