package dev.memgen.model.checkpoint;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDArrays;
import ai.djl.ndarray.NDList;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.DataType;
import ai.djl.ndarray.types.Shape;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.memgen.model.ModelConfig;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.HashMap;
import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.TreeSet;

/**
 * A Hugging Face checkpoint directory: {@code config.json} plus one {@code model.safetensors} or shards listed
 * by {@code model.safetensors.index.json}. Tensors load as f32 NDArrays: f32 data is handed to the engine
 * straight from the memory map, f16 and bf16 are widened in Java first (a BF16 tensor aborts DJL's CPU engine,
 * and f16 matmul on CPU is tens of times slower than f32).
 */
public final class Checkpoint {
  /** Largest single native buffer we create; bigger tensors load in row blocks and are concatenated. */
  static final long MAX_BLOCK_BYTES = 1L << 30;
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
    return loadInBlocks(manager, name, MAX_BLOCK_BYTES, expectedShape);
  }

  /** As {@link #load(NDManager, String, long...)}, reading at most {@code maxBlockBytes} (as f32) per block. */
  NDArray loadInBlocks(NDManager manager, String name, long maxBlockBytes, long... expectedShape) {
    SafeTensorsFile file = fileOf.get(name);
    if (file == null) {
      throw new CheckpointException(dir, name, "missing tensor");
    }
    SafeTensorsFile.Entry e = file.entries().get(name);
    if (!Arrays.equals(e.shape(), expectedShape)) {
      throw new CheckpointException(file.path(), name, "shape mismatch: file has " + Arrays.toString(e.shape())
          + ", config.json implies " + Arrays.toString(expectedShape));
    }
    long rows = expectedShape.length == 0 ? 1 : expectedShape[0];
    long rowElements = rows == 0 ? 0 : e.elements() / rows;
    long rowsPerBlock = Math.max(1, maxBlockBytes / Math.max(1, rowElements * 4));
    NDList blocks = new NDList();
    for (long r = 0; r < rows || (rows == 0 && blocks.isEmpty()); r += rowsPerBlock) {
      long n = Math.min(rowsPerBlock, rows - r);
      long[] blockShape = expectedShape.clone();
      if (blockShape.length > 0) {
        blockShape[0] = n;
      }
      ByteBuffer raw = file.map(e, r * rowElements * e.dtype().bytes, n * rowElements * e.dtype().bytes);
      blocks.add(manager.create(toF32(raw, e.dtype(), n * rowElements), new Shape(blockShape), DataType.FLOAT32));
      if (rows == 0) {
        break;
      }
    }
    if (blocks.size() == 1) {
      return blocks.head();
    }
    NDArray whole = NDArrays.concat(blocks, 0);
    blocks.close();
    return whole;
  }

  /** f32 data in native byte order, as the engine expects; f32 maps are passed through untouched. */
  static ByteBuffer toF32(ByteBuffer raw, DType dtype, long elements) {
    if (dtype == DType.F32 && ByteOrder.nativeOrder() == ByteOrder.LITTLE_ENDIAN) {
      return raw.order(ByteOrder.nativeOrder());
    }
    ByteBuffer out = ByteBuffer.allocateDirect(Math.toIntExact(elements * 4)).order(ByteOrder.nativeOrder());
    for (long i = 0; i < elements; i++) {
      int at = (int) (i * dtype.bytes);
      float v = switch (dtype) {
        case F32 -> raw.getFloat(at);
        case BF16 -> Float.intBitsToFloat((raw.getShort(at) & 0xFFFF) << 16);
        case F16 -> halfToFloat(raw.getShort(at));
      };
      out.putFloat((int) (i * 4), v);
    }
    return out;
  }

  /** IEEE 754 binary16 to binary32 (Float.float16ToFloat exists only from Java 20). */
  static float halfToFloat(short h) {
    int bits = h & 0xFFFF;
    int sign = (bits & 0x8000) << 16;
    int exp = (bits >>> 10) & 0x1F;
    int mant = bits & 0x3FF;
    if (exp == 0x1F) {
      return Float.intBitsToFloat(sign | 0x7F800000 | (mant << 13));
    }
    if (exp == 0) {
      if (mant == 0) {
        return Float.intBitsToFloat(sign);
      }
      float v = mant / 1024f / 16384f; // subnormal: mant * 2^-24
      return sign == 0 ? v : -v;
    }
    return Float.intBitsToFloat(sign | ((exp + 112) << 23) | (mant << 13));
  }
}
