package dev.memgen.proto;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.google.protobuf.ByteString;
import dev.memgen.proto.v1.DType;
import dev.memgen.proto.v1.Tensor;
import org.junit.jupiter.api.Test;

class TensorsTest {
  @Test
  void f32RoundTripsLittleEndian() {
    float[] v = {1.5f, -2f, 0f, 3.25f, 1e-7f, -1e7f};
    Tensor t = Tensors.f32(v, 2, 3);
    assertEquals(DType.F32, t.getDtype());
    assertEquals(0x3F, t.getData().byteAt(3) & 0xFF, "1.5f = 0x3FC00000, little-endian: high byte last");
    assertArrayEquals(v, Tensors.toF32(t, "rows", -1, 3));
  }

  @Test
  void bfloatIsWidenedAndHalfRefused() {
    // 1.0 in binary16 is 0x3C00 (not accepted on the wire: peers send F32 or BF16); in bfloat16 0x3F80.
    Tensor half = Tensor.newBuilder().setDtype(DType.F16).addShape(1).setData(ByteString.copyFrom(new byte[] {0x00, 0x3C})).build();
    assertMessage(() -> Tensors.toF32(half, "h", 1), "dtype F16, expected F32 or BF16");
    Tensor bf = Tensor.newBuilder().setDtype(DType.BF16).addShape(1).setData(ByteString.copyFrom(new byte[] {(byte) 0x80, 0x3F})).build();
    assertArrayEquals(new float[] {1f}, Tensors.toF32(bf, "b", 1));
  }

  @Test
  void bfloatIsWrittenRoundingToNearestEven() {
    // 1 + 2^-8 lies exactly halfway between bf16 neighbours 1 and 1 + 2^-7: ties go to the even mantissa (1.0);
    // 1 + 3 * 2^-8 is halfway between 1 + 2^-7 (odd) and 1 + 2^-6 (even): it rounds up. -2.5 is exact.
    float[] v = {1f + 1f / 256, 1f + 3f / 256, -2.5f};
    Tensor t = Tensors.of(v, DType.BF16, 3);
    assertEquals(6, t.getData().size());
    assertArrayEquals(new float[] {1f, 1f + 1f / 64, -2.5f}, Tensors.toF32(t, "rows", 3));
  }

  @Test
  void everyMistakeIsNamed() {
    Tensor good = Tensors.f32(new float[] {1, 2, 3, 4}, 2, 2);
    assertMessage(() -> Tensors.toF32(good, "append.rows", -1, 3), "append.rows: shape [2, 2], expected [any, 3]");
    assertMessage(() -> Tensors.toF32(good.toBuilder().setDtype(DType.I64).build(), "append.rows", 2, 2), "dtype I64");
    assertMessage(() -> Tensors.toF32(good.toBuilder().setData(good.getData().substring(0, 12)).build(), "append.rows", 2, 2),
        "12 bytes of data");
    assertMessage(() -> Tensors.toF32(Tensors.f32(new float[] {1, Float.NaN}, 1, 2), "append.rows", 1, 2), "NaN");
    assertMessage(() -> Tensors.toF32(Tensors.f32(new float[] {Float.POSITIVE_INFINITY}, 1), "latents", 1), "Infinity");
    assertMessage(() -> Tensors.f32(new float[3], 2, 2), "does not hold 3 values");
  }

  static void assertMessage(Runnable r, String part) {
    IllegalArgumentException e = assertThrows(IllegalArgumentException.class, r::run);
    assertTrue(e.getMessage().contains(part), e.getMessage());
  }
}
