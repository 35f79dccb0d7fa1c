package dev.memgen.rpc;

import dev.memgen.model.checkpoint.DType;
import dev.memgen.model.checkpoint.TinyCheckpoint;
import io.quarkus.test.common.QuarkusTestResourceLifecycleManager;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Comparator;
import java.util.Map;
import java.util.stream.Stream;

/**
 * Writes a tiny random Qwen2 checkpoint (with its byte-level tokenizer.json) before Quarkus starts and points
 * {@code memgen.model.dir} at it. Writing needs no native code, so it is safe before the app's classloader exists.
 * Init arg {@code tokenizer=false} leaves tokenizer.json out; {@code memory=true} also writes a fresh memory for it
 * and points {@code memgen.memory.dir} at that (embedded memory).
 */
public class TinyModelResource implements QuarkusTestResourceLifecycleManager {
  /** Init arg: "false" deletes tokenizer.json, for a checkpoint that serves token-id prompts only. */
  public static final String TOKENIZER = "tokenizer";
  /** Init arg: "true" adds an embedded memory ({@link TinyMemory}) whose delimiters are every character. */
  public static final String MEMORY = "memory";

  private Path dir;
  private boolean tokenizer = true;
  private boolean memory;

  @Override
  public void init(Map<String, String> initArgs) {
    tokenizer = !"false".equals(initArgs.get(TOKENIZER));
    memory = "true".equals(initArgs.get(MEMORY));
  }

  @Override
  public Map<String, String> start() {
    try {
      dir = Files.createTempDirectory("memgen-reasoner-test");
      Path model = dir.resolve("model");
      TinyCheckpoint.write(model, TinyCheckpoint.tiny("qwen2"), DType.F32, 1, 0);
      if (!tokenizer) {
        Files.delete(model.resolve("tokenizer.json"));
      }
      if (!memory) {
        return Map.of("memgen.model.dir", model.toString());
      }
      Path mem = dir.resolve("memory");
      TinyMemory.write(model, mem, TinyMemory.everyCharacter());
      return Map.of("memgen.model.dir", model.toString(), "memgen.memory.dir", mem.toString());
    } catch (IOException e) {
      throw new UncheckedIOException(e);
    }
  }

  @Override
  public void stop() {
    if (dir == null) {
      return;
    }
    try (Stream<Path> files = Files.walk(dir)) {
      files.sorted(Comparator.reverseOrder()).forEach(p -> p.toFile().delete());
    } catch (IOException e) {
      // a temp dir left behind is harmless
    }
  }
}
