package dev.memgen.model.checkpoint;

/** The element types a checkpoint may store. All are widened to f32 on load (DJL's CPU engine aborts on BF16). */
public enum DType {
  F32(4),
  F16(2),
  BF16(2);

  public final int bytes;

  DType(int bytes) {
    this.bytes = bytes;
  }

  /** The safetensors spelling ("F32", "F16", "BF16"), or null if unsupported. */
  public static DType ofSafetensors(String name) {
    for (DType t : values()) {
      if (t.name().equals(name)) {
        return t;
      }
    }
    return null;
  }

  /** The config.json {@code torch_dtype} spelling. */
  public String torchName() {
    return switch (this) {
      case F32 -> "float32";
      case F16 -> "float16";
      case BF16 -> "bfloat16";
    };
  }

  public static DType parse(String s) {
    return switch (s.toLowerCase()) {
      case "f32", "float32" -> F32;
      case "f16", "float16" -> F16;
      case "bf16", "bfloat16" -> BF16;
      default -> throw new IllegalArgumentException("unknown dtype '" + s + "' (f32, f16 or bf16)");
    };
  }
}
