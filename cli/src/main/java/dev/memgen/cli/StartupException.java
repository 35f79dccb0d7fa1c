package dev.memgen.cli;

/**
 * A component a command needs could not start (the Kafka broker, a service): not a bug of ours but the machine's
 * state, so {@link Main} reports it as one line naming the cause and the fix, with its own exit code (3).
 */
final class StartupException extends RuntimeException {
  StartupException(String message) {
    super(message);
  }

  StartupException(String message, Throwable cause) {
    super(message, cause);
  }
}
