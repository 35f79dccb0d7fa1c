package dev.memgen.engine.core;

/** The engine cannot take another request now: every row is busy and the queue is full. Retry later (gRPC UNAVAILABLE, HTTP 429). */
public final class EngineOverloadedException extends RuntimeException {
  public EngineOverloadedException(String message) {
    super(message);
  }
}
