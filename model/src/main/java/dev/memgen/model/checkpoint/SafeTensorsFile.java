package dev.memgen.model.checkpoint;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDArrays;
import ai.djl.ndarray.NDList;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.DataType;
import ai.djl.ndarray.types.Shape;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.channels.FileChannel;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.Arrays;
import java.util.Collections;
import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.Map;

/**
 * One {@code .safetensors} file: an 8-byte little-endian header length, a JSON header naming each tensor's
 * dtype, shape and byte range, then the raw data. The header is checked completely on open (dtypes, shapes
 * against byte ranges, ranges against the file's length), so a truncated or inconsistent file is reported
 * by name before any tensor is read. Data is memory-mapped, never read onto the heap, so files of any size
 * load.
 */
public final class SafeTensorsFile {
  private static final ObjectMapper JSON = new ObjectMapper();
  private static final long MAX_HEADER = 100L << 20;
  /** Largest single native buffer we create; bigger tensors load in row blocks and are concatenated. */
  public static final long MAX_BLOCK_BYTES = 1L << 30;

  /** One tensor's entry in the header. {@code begin} and {@code end} are absolute file offsets. */
  public record Entry(String name, DType dtype, long[] shape, long begin, long end) {
    public long elements() {
      long n = 1;
      for (long d : shape) {
        n *= d;
      }
      return n;
    }
  }

  private final Path path;
  private final Map<String, Entry> entries;

  private SafeTensorsFile(Path path, Map<String, Entry> entries) {
    this.path = path;
    this.entries = entries;
  }

  public static SafeTensorsFile open(Path path) {
    try (FileChannel ch = FileChannel.open(path, StandardOpenOption.READ)) {
      long size = ch.size();
      if (size < 8) {
        throw new CheckpointException(path, null, "truncated file: " + size + " bytes, no safetensors header");
      }
      ByteBuffer lenBuf = ByteBuffer.allocate(8).order(ByteOrder.LITTLE_ENDIAN);
      readFully(ch, lenBuf, 0);
      long headerLen = lenBuf.getLong(0);
      if (headerLen <= 0 || headerLen > MAX_HEADER || 8 + headerLen > size) {
        throw new CheckpointException(path, null, "truncated or not a safetensors file: header length "
            + headerLen + " but the file has " + size + " bytes");
      }
      ByteBuffer header = ByteBuffer.allocate((int) headerLen);
      readFully(ch, header, 8);
      JsonNode root;
      try {
        root = JSON.readTree(header.array());
      } catch (IOException e) {
        throw new CheckpointException(path, null, "unreadable safetensors header: " + e.getMessage(), e);
      }
      long dataStart = 8 + headerLen;
      Map<String, Entry> entries = new LinkedHashMap<>();
      for (Iterator<Map.Entry<String, JsonNode>> it = root.fields(); it.hasNext(); ) {
        Map.Entry<String, JsonNode> field = it.next();
        String name = field.getKey();
        if (name.equals("__metadata__")) {
          continue;
        }
        entries.put(name, parseEntry(path, name, field.getValue(), dataStart, size));
      }
      return new SafeTensorsFile(path, Collections.unmodifiableMap(entries));
    } catch (NoSuchFileException e) {
      throw new CheckpointException(path, null, "missing file");
    } catch (IOException e) {
      throw new CheckpointException(path, null, "cannot read: " + e.getMessage(), e);
    }
  }

  private static Entry parseEntry(Path path, String name, JsonNode node, long dataStart, long fileSize) {
    String dtypeName = node.path("dtype").asText();
    DType dtype = DType.ofSafetensors(dtypeName);
    if (dtype == null) {
      throw new CheckpointException(path, name, "unsupported dtype '" + dtypeName + "' (supported: F32, F16, BF16)");
    }
    JsonNode shapeNode = node.path("shape");
    JsonNode offsets = node.path("data_offsets");
    if (!shapeNode.isArray() || !offsets.isArray() || offsets.size() != 2) {
      throw new CheckpointException(path, name, "malformed header entry: " + node);
    }
    long[] shape = new long[shapeNode.size()];
    for (int i = 0; i < shape.length; i++) {
      shape[i] = shapeNode.get(i).asLong(-1);
      if (shape[i] < 0) {
        throw new CheckpointException(path, name, "negative or non-numeric dimension in shape " + shapeNode);
      }
    }
    long begin = dataStart + offsets.get(0).asLong();
    long end = dataStart + offsets.get(1).asLong();
    Entry e = new Entry(name, dtype, shape, begin, end);
    if (end < begin || (end - begin) != e.elements() * dtype.bytes) {
      throw new CheckpointException(path, name, "byte range " + offsets + " does not hold shape " + shapeNode
          + " of " + dtype);
    }
    if (end > fileSize) {
      throw new CheckpointException(path, name, "truncated file: the tensor ends at byte " + end
          + " but the file has " + fileSize + " bytes");
    }
    return e;
  }

  private static void readFully(FileChannel ch, ByteBuffer buf, long pos) throws IOException {
    while (buf.hasRemaining()) {
      int n = ch.read(buf, pos + buf.position());
      if (n < 0) {
        throw new IOException("unexpected end of file");
      }
    }
  }

  public Path path() {
    return path;
  }

  public Map<String, Entry> entries() {
    return entries;
  }

  /**
   * Maps {@code length} bytes of a tensor's data starting {@code offset} bytes into it. PRIVATE (copy-on-write)
   * on a read-write channel: native code may treat the memory as writable, and a READ_ONLY map would then
   * fault; private pages never write back to the checkpoint.
   */
  public ByteBuffer map(Entry e, long offset, long length) {
    if (offset < 0 || length < 0 || e.begin + offset + length > e.end || length > Integer.MAX_VALUE) {
      throw new IllegalArgumentException("bad range for " + e.name());
    }
    try (FileChannel ch = FileChannel.open(path, StandardOpenOption.READ, StandardOpenOption.WRITE)) {
      return ch.map(FileChannel.MapMode.PRIVATE, e.begin + offset, length).order(ByteOrder.LITTLE_ENDIAN);
    } catch (IOException ex) {
      try (FileChannel ch = FileChannel.open(path, StandardOpenOption.READ)) {
        // A read-only file (e.g. a mounted volume): copy the range instead of mapping it.
        ByteBuffer copy = ByteBuffer.allocateDirect((int) length).order(ByteOrder.LITTLE_ENDIAN);
        readFully(ch, copy, e.begin + offset);
        return copy.flip();
      } catch (IOException ex2) {
        throw new CheckpointException(path, e.name(), "cannot read tensor data: " + ex2.getMessage(), ex2);
      }
    }
  }

  /**
   * Loads tensor {@code name} as f32 after checking its shape (the message says what the expected shape comes from,
   * e.g. "config.json implies"). f32 data goes to libtorch straight from the memory map; f16 and bf16 are widened
   * in Java (a BF16 tensor aborts DJL's CPU engine). A tensor larger than {@code maxBlockBytes} as f32 loads in
   * row blocks that are concatenated, since one native buffer holds at most 2 GiB.
   */
  public NDArray load(NDManager manager, String name, long maxBlockBytes, String expectation, long... expectedShape) {
    Entry e = entries.get(name);
    if (e == null) {
      throw new CheckpointException(path, name, "missing tensor");
    }
    if (!Arrays.equals(e.shape(), expectedShape)) {
      throw new CheckpointException(path, name, "shape mismatch: file has " + Arrays.toString(e.shape())
          + ", " + expectation + " " + Arrays.toString(expectedShape));
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
      ByteBuffer raw = map(e, r * rowElements * e.dtype().bytes, n * rowElements * e.dtype().bytes);
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
