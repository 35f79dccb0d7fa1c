package dev.memgen.rpc;

import dev.memgen.model.Decoder;
import dev.memgen.model.checkpoint.Checkpoint;
import dev.memgen.model.memory.Memory;
import java.nio.file.Files;
import java.nio.file.Path;

/**
 * What a weaver-service or trigger-service serves: a base checkpoint and a memory made for it, loaded once. Any
 * problem is reported naming the directory and what is wrong with it.
 */
public final class ServedMemory implements AutoCloseable {
  private final Decoder base;
  private final Memory memory;
  private final String fingerprint;
  private boolean memoryHandedOver;

  private ServedMemory(Decoder base, Memory memory, String fingerprint) {
    this.base = base;
    this.memory = memory;
    this.fingerprint = fingerprint;
  }

  public static ServedMemory load(Path modelDir, Path memoryDir) {
    for (Path dir : new Path[] {modelDir, memoryDir}) {
      if (!Files.isDirectory(dir)) {
        throw new IllegalArgumentException(dir + (Files.exists(dir) ? " is not a directory" : " does not exist"));
      }
    }
    String fingerprint = Checkpoint.open(modelDir).fingerprint();
    Decoder base = Decoder.load(modelDir);
    try {
      return new ServedMemory(base, Memory.load(memoryDir, base, fingerprint), fingerprint);
    } catch (RuntimeException e) {
      base.close();
      throw e;
    }
  }

  /** {@link #load} for a service's startup: any problem becomes an IllegalStateException naming both settings. */
  public static ServedMemory forService(String modelDir, String memoryDir) {
    try {
      return load(Path.of(modelDir), Path.of(memoryDir));
    } catch (RuntimeException e) {
      throw new IllegalStateException("cannot serve memgen.memory.dir=" + memoryDir + " on memgen.model.dir=" + modelDir
          + ": " + e.getMessage(), e);
    }
  }

  public Decoder base() {
    return base;
  }

  public Memory memory() {
    return memory;
  }

  public String fingerprint() {
    return fingerprint;
  }

  /**
   * Gives the memory to a new owner, which frees it (a {@link WeaverService} frees a version once a newer one has
   * replaced it and its sessions have ended); {@link #close} then frees the base only.
   */
  public Memory handOverMemory() {
    memoryHandedOver = true;
    return memory;
  }

  @Override
  public void close() {
    if (!memoryHandedOver) {
      memory.close();
    }
    base.close();
  }
}
