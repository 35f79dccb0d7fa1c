package dev.memgen.model.checkpoint;

import java.nio.file.Path;

/**
 * A checkpoint that cannot be used, with the file (and tensor, when one is to blame) named in the message.
 * Thrown before anything reaches the native engine, so a bad file never takes the JVM down.
 */
public final class CheckpointException extends RuntimeException {
  private final Path file;
  private final String tensor;

  public CheckpointException(Path file, String tensor, String problem) {
    super(describe(file, tensor, problem));
    this.file = file;
    this.tensor = tensor;
  }

  public CheckpointException(Path file, String tensor, String problem, Throwable cause) {
    super(describe(file, tensor, problem), cause);
    this.file = file;
    this.tensor = tensor;
  }

  private static String describe(Path file, String tensor, String problem) {
    return (file == null ? "" : file + ": ") + (tensor == null ? "" : "tensor '" + tensor + "': ") + problem;
  }

  /** The file at fault, or null. */
  public Path file() {
    return file;
  }

  /** The tensor at fault, or null when the problem is not one tensor's. */
  public String tensor() {
    return tensor;
  }
}
