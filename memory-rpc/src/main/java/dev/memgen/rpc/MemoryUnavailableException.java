package dev.memgen.rpc;

/**
 * A remote weaver or trigger could not answer: down, slow past the deadline, or refusing the session. The generate
 * loop skips memory at that point and goes on (see {@code MemGenInterleaver}).
 */
public final class MemoryUnavailableException extends RuntimeException {
  public MemoryUnavailableException(String message, Throwable cause) {
    super(message, cause);
  }
}
