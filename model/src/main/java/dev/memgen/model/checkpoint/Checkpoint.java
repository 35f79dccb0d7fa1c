package dev.memgen.model.checkpoint;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.memgen.model.ModelConfig;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.charset.StandardCharsets;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.Arrays;
import java.util.HashMap;
import java.util.HexFormat;
import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.TreeSet;

/**
 * A Hugging Face checkpoint directory: {@code config.json} plus one {@code model.safetensors} or shards listed
 * by {@code model.safetensors.index.json}. Tensors load as f32 NDArrays (see {@link SafeTensorsFile#load}).
 */
public final class Checkpoint {
  private static final ObjectMapper JSON = new ObjectMapper();

  private final Path dir;
  private final ModelConfig config;
  private final Map<String, SafeTensorsFile> fileOf;

  private Checkpoint(Path dir, ModelConfig config, Map<String, SafeTensorsFile> fileOf) {
    this.dir = dir;
    this.config = config;
    this.fileOf = fileOf;
  }

  public static Checkpoint open(Path dir) {
    if (!Files.isDirectory(dir)) {
      throw new CheckpointException(dir, null, "not a checkpoint directory (missing or not a directory)");
    }
    ModelConfig config = ModelConfig.load(dir);
    Path index = dir.resolve("model.safetensors.index.json");
    Map<String, SafeTensorsFile> fileOf = new LinkedHashMap<>();
    if (Files.exists(index)) {
      JsonNode map;
      try {
        map = JSON.readTree(Files.readAllBytes(index)).path("weight_map");
      } catch (IOException e) {
        throw new CheckpointException(index, null, "unreadable JSON: " + e.getMessage(), e);
      }
      if (!map.isObject() || map.isEmpty()) {
        throw new CheckpointException(index, null, "no 'weight_map' listing the shards");
      }
      Map<String, SafeTensorsFile> shards = new HashMap<>();
      for (Iterator<Map.Entry<String, JsonNode>> it = map.fields(); it.hasNext(); ) {
        Map.Entry<String, JsonNode> e = it.next();
        String shardName = e.getValue().asText();
        SafeTensorsFile shard = shards.computeIfAbsent(shardName, n -> SafeTensorsFile.open(dir.resolve(n)));
        if (!shard.entries().containsKey(e.getKey())) {
          throw new CheckpointException(shard.path(), e.getKey(), "listed in " + index.getFileName()
              + " but not present in the shard");
        }
        fileOf.put(e.getKey(), shard);
      }
    } else {
      Path single = dir.resolve("model.safetensors");
      if (!Files.exists(single)) {
        throw new CheckpointException(single, null,
            "missing file (expected model.safetensors or model.safetensors.index.json)");
      }
      SafeTensorsFile f = SafeTensorsFile.open(single);
      f.entries().keySet().forEach(name -> fileOf.put(name, f));
    }
    return new Checkpoint(dir, config, fileOf);
  }

  public Path dir() {
    return dir;
  }

  public ModelConfig config() {
    return config;
  }

  public boolean has(String name) {
    return fileOf.containsKey(name);
  }

  /** Names of all tensors, sorted. */
  public TreeSet<String> tensorNames() {
    return new TreeSet<>(fileOf.keySet());
  }

  /** Loads a tensor as f32 after checking its shape; the result lives in {@code manager}. */
  public NDArray load(NDManager manager, String name, long... expectedShape) {
    return loadInBlocks(manager, name, SafeTensorsFile.MAX_BLOCK_BYTES, expectedShape);
  }

  /** As {@link #load(NDManager, String, long...)}, reading at most {@code maxBlockBytes} (as f32) per block. */
  NDArray loadInBlocks(NDManager manager, String name, long maxBlockBytes, long... expectedShape) {
    SafeTensorsFile file = fileOf.get(name);
    if (file == null) {
      throw new CheckpointException(dir, name, "missing tensor");
    }
    return file.load(manager, name, maxBlockBytes, "config.json implies", expectedShape);
  }

  /**
   * A short identity of these weights, so a memory trained on one base is never used with another: sha256 over
   * config.json and, for each tensor in name order, its name, dtype, shape and 16 evenly spaced 4 KiB windows of
   * its data (hashing all of a multi-GB checkpoint at every start would take seconds; a different model, or a
   * fine-tune of this one, changes the sampled bytes).
   */
  public String fingerprint() {
    try {
      MessageDigest sha = MessageDigest.getInstance("SHA-256");
      sha.update(Files.readAllBytes(dir.resolve("config.json")));
      for (String name : tensorNames()) {
        SafeTensorsFile file = fileOf.get(name);
        SafeTensorsFile.Entry e = file.entries().get(name);
        sha.update((name + "|" + e.dtype() + "|" + Arrays.toString(e.shape()) + "\n").getBytes(StandardCharsets.UTF_8));
        long size = e.end() - e.begin();
        int window = (int) Math.min(4096, size);
        for (int i = 0; i < 16 && window > 0; i++) {
          long offset = (size - window) * i / 15;
          sha.update(file.map(e, offset, window));
        }
      }
      return HexFormat.of().formatHex(sha.digest()).substring(0, 32);
    } catch (NoSuchAlgorithmException | IOException ex) {
      throw new CheckpointException(dir, null, "cannot fingerprint: " + ex.getMessage(), ex);
    }
  }
}
