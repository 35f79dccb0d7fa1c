package dev.memgen.model.train;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.memgen.model.checkpoint.DType;
import dev.memgen.model.checkpoint.Directories;
import dev.memgen.model.checkpoint.SafeTensorsFile;
import dev.memgen.model.checkpoint.SafeTensorsWriter;
import dev.memgen.model.memory.Memory;
import dev.memgen.model.memory.MemoryManifest;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * A memory trainer's checkpoint in {@code out/checkpoint}: the memory (with the manifest it will be published with),
 * the optimizer's moments and the number of updates done. Saved into a new directory and swapped in with renames,
 * so a crash at any moment leaves one complete checkpoint; a run given the same {@code out} resumes from it.
 */
final class MemoryCheckpoint {
  static final String DIR = "checkpoint";
  private static final String OPTIMIZER = "optimizer.safetensors";
  private static final String STATE = "trainer.json";
  private static final ObjectMapper JSON = new ObjectMapper();

  private final Path dir;

  MemoryCheckpoint(Path out) throws IOException {
    this.dir = out.resolve(DIR);
    Path previous = out.resolve(DIR + ".old"); // a crash between the two renames of save() left it here
    if (!Files.exists(dir) && Files.isRegularFile(previous.resolve(STATE))) {
      Files.move(previous, dir, StandardCopyOption.ATOMIC_MOVE);
    }
  }

  boolean exists() {
    return Files.isRegularFile(dir.resolve(STATE));
  }

  /** The memory directory to load: the checkpoint's when there is one, else {@code initial}. */
  Path memoryOr(Path initial) {
    return exists() ? dir : initial;
  }

  /** Restores the optimizer and returns the number of updates done. */
  int restore(AdamW optimizer, NDManager manager) throws IOException {
    JsonNode state = JSON.readTree(dir.resolve(STATE).toFile());
    SafeTensorsFile f = SafeTensorsFile.open(dir.resolve(OPTIMIZER));
    Map<String, NDArray> moments = new LinkedHashMap<>();
    f.entries().forEach((name, e) ->
        moments.put(name, f.load(manager, name, SafeTensorsFile.MAX_BLOCK_BYTES, "its header says", e.shape())));
    optimizer.restore(moments, state.path("optimizer_steps").asLong());
    return state.path("step").asInt();
  }

  void save(Memory memory, MemoryManifest manifest, AdamW optimizer, int step) throws IOException {
    Path tmp = dir.resolveSibling(DIR + ".tmp");
    Directories.deleteRecursively(tmp);
    memory.save(tmp, manifest);
    List<SafeTensorsWriter.Tensor> state = new ArrayList<>();
    optimizer.state().forEach((name, t) -> state.add(SafeTensorsWriter.Tensor.of(name, t)));
    SafeTensorsWriter.write(tmp.resolve(OPTIMIZER), state, DType.F32);
    ObjectNode json = JSON.createObjectNode();
    json.put("step", step);
    json.put("optimizer_steps", optimizer.steps());
    Files.writeString(tmp.resolve(STATE), json.toString());
    Path old = dir.resolveSibling(DIR + ".old");
    Directories.deleteRecursively(old);
    if (Files.exists(dir)) {
      Files.move(dir, old, StandardCopyOption.ATOMIC_MOVE);
    }
    Files.move(tmp, dir, StandardCopyOption.ATOMIC_MOVE);
    Directories.deleteRecursively(old);
  }

  /** Training finished and its result is written: the checkpoint is no longer needed. */
  void delete() throws IOException {
    Directories.deleteRecursively(dir);
  }
}
