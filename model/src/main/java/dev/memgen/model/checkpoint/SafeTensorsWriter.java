package dev.memgen.model.checkpoint;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.channels.FileChannel;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.List;

/** Writes {@code .safetensors} files, streaming each tensor's values so files of any size fit in little memory. */
public final class SafeTensorsWriter {
  private static final ObjectMapper JSON = new ObjectMapper();

  /** A tensor to write: its name, shape and a source of its f32 values in row-major order. */
  public record Tensor(String name, long[] shape, ValueSource values) {
    /** A tensor's current values (copied out once, as f32). */
    public static Tensor of(String name, ai.djl.ndarray.NDArray array) {
      float[] v = array.toType(ai.djl.ndarray.types.DataType.FLOAT32, false).toFloatArray();
      int[] at = {0};
      return new Tensor(name, array.getShape().getShape(), () -> v[at[0]++]);
    }

    long elements() {
      long n = 1;
      for (long d : shape) {
        n *= d;
      }
      return n;
    }
  }

  /** Produces the next value each call. */
  @FunctionalInterface
  public interface ValueSource {
    float next();
  }

  private SafeTensorsWriter() {}

  /** Writes {@code tensors} to {@code file} in {@code dtype} (bf16 rounds to nearest even); returns data bytes. */
  public static long write(Path file, List<Tensor> tensors, DType dtype) throws IOException {
    ObjectNode header = JSON.createObjectNode();
    long offset = 0;
    for (Tensor t : tensors) {
      ObjectNode e = header.putObject(t.name());
      e.put("dtype", dtype.name());
      var shape = e.putArray("shape");
      for (long d : t.shape()) {
        shape.add(d);
      }
      long bytes = t.elements() * dtype.bytes;
      e.putArray("data_offsets").add(offset).add(offset + bytes);
      offset += bytes;
    }
    header.putObject("__metadata__").put("format", "pt");
    byte[] json = JSON.writeValueAsBytes(header);
    int padded = (json.length + 7) / 8 * 8; // keep the data 8-byte aligned
    try (FileChannel ch = FileChannel.open(file, StandardOpenOption.CREATE, StandardOpenOption.WRITE,
        StandardOpenOption.TRUNCATE_EXISTING)) {
      ByteBuffer head = ByteBuffer.allocate(8 + padded).order(ByteOrder.LITTLE_ENDIAN);
      head.putLong(padded).put(json);
      while (head.hasRemaining()) {
        head.put((byte) ' ');
      }
      writeAll(ch, head.flip());
      ByteBuffer buf = ByteBuffer.allocateDirect(1 << 20).order(ByteOrder.LITTLE_ENDIAN);
      for (Tensor t : tensors) {
        for (long i = 0, n = t.elements(); i < n; i++) {
          if (buf.remaining() < 4) {
            writeAll(ch, buf.flip());
            buf.clear();
          }
          float v = t.values().next();
          switch (dtype) {
            case F32 -> buf.putFloat(v);
            case BF16 -> buf.putShort(toBf16(v));
            case F16 -> throw new IllegalArgumentException("writing f16 is not supported; use f32 or bf16");
          }
        }
      }
      writeAll(ch, buf.flip());
    }
    return offset;
  }

  static short toBf16(float v) {
    int bits = Float.floatToRawIntBits(v);
    if (Float.isNaN(v)) {
      return (short) ((bits >>> 16) | 0x40);
    }
    int rounding = 0x7FFF + ((bits >>> 16) & 1);
    return (short) ((bits + rounding) >>> 16);
  }

  private static void writeAll(FileChannel ch, ByteBuffer b) throws IOException {
    while (b.hasRemaining()) {
      ch.write(b);
    }
  }
}
