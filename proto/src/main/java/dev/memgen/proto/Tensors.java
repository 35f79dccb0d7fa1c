package dev.memgen.proto;

import com.google.protobuf.ByteString;
import dev.memgen.proto.v1.DType;
import dev.memgen.proto.v1.Tensor;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.Arrays;

/**
 * Tensors on the wire ({@code memgen.v1.Tensor}: shape, dtype, little-endian row-major bytes) to and from Java
 * float arrays. Reading checks everything a peer could get wrong — dtype, shape, byte count, NaN/Inf — and says
 * which field was wrong, so a service can answer INVALID_ARGUMENT without touching native code.
 */
public final class Tensors {
  private Tensors() {}

  /** An f32 tensor of {@code values} with {@code shape} (whose product must be the number of values). */
  public static Tensor f32(float[] values, long... shape) {
    return of(values, DType.F32, shape);
  }

  /**
   * A tensor of {@code values} with {@code shape}, stored as {@code dtype}: F32, or BF16 (rounded to nearest even,
   * the way torch converts).
   */
  public static Tensor of(float[] values, DType dtype, long... shape) {
    if (product(shape) != values.length) {
      throw new IllegalArgumentException("shape " + Arrays.toString(shape) + " does not hold " + values.length + " values");
    }
    ByteBuffer bytes;
    switch (dtype) {
      case F32 -> {
        bytes = ByteBuffer.allocate(values.length * 4).order(ByteOrder.LITTLE_ENDIAN);
        bytes.asFloatBuffer().put(values);
      }
      case BF16 -> {
        bytes = ByteBuffer.allocate(values.length * 2).order(ByteOrder.LITTLE_ENDIAN);
        for (float v : values) {
          int bits = Float.floatToIntBits(v);
          bytes.putShort((short) ((bits + 0x7FFF + ((bits >>> 16) & 1)) >>> 16));
        }
      }
      default -> throw new IllegalArgumentException("cannot write a " + dtype + " tensor (F32 or BF16 only)");
    }
    Tensor.Builder t = Tensor.newBuilder().setDtype(dtype).setData(ByteString.copyFrom(bytes.array()));
    for (long d : shape) {
      t.addShape(d);
    }
    return t.build();
  }

  /**
   * The values of a float tensor (F32, or BF16 widened) after checking it against {@code expectedShape}
   * ({@code -1} matches any size, e.g. the row count).
   *
   * @param field the field's name for messages, e.g. "append.tokens.rows"
   * @throws IllegalArgumentException naming {@code field} and what is wrong
   */
  public static float[] toF32(Tensor t, String field, long... expectedShape) {
    long[] shape = t.getShapeList().stream().mapToLong(Long::longValue).toArray();
    boolean matches = shape.length == expectedShape.length;
    for (int i = 0; matches && i < shape.length; i++) {
      matches = expectedShape[i] == -1 ? shape[i] >= 0 : shape[i] == expectedShape[i];
    }
    if (!matches) {
      throw new IllegalArgumentException(field + ": shape " + Arrays.toString(shape) + ", expected "
          + Arrays.toString(expectedShape).replace("-1", "any"));
    }
    int bytesPerValue = switch (t.getDtype()) {
      case F32 -> 4;
      case BF16 -> 2;
      default -> throw new IllegalArgumentException(field + ": dtype " + t.getDtype() + ", expected F32 or BF16");
    };
    long n = product(shape);
    if (n > Integer.MAX_VALUE / 4 || t.getData().size() != n * bytesPerValue) {
      throw new IllegalArgumentException(field + ": " + t.getData().size() + " bytes of data for shape "
          + Arrays.toString(shape) + " of " + t.getDtype() + " (expected " + n * bytesPerValue + ")");
    }
    ByteBuffer data = t.getData().asReadOnlyByteBuffer().order(ByteOrder.LITTLE_ENDIAN);
    float[] values = new float[(int) n];
    for (int i = 0; i < values.length; i++) {
      float v = switch (t.getDtype()) {
        case BF16 -> Float.intBitsToFloat((data.getShort(i * 2) & 0xFFFF) << 16);
        default -> data.getFloat(i * 4);
      };
      if (!Float.isFinite(v)) {
        throw new IllegalArgumentException(field + ": value " + v + " at flat index " + i + " (NaN and Inf are not accepted)");
      }
      values[i] = v;
    }
    return values;
  }

  private static long product(long[] shape) {
    long n = 1;
    for (long d : shape) {
      if (d < 0) {
        throw new IllegalArgumentException("negative dimension in shape " + Arrays.toString(shape));
      }
      n = Math.multiplyExact(n, d);
    }
    return n;
  }
}
