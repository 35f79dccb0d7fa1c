package dev.memgen.model;

import com.sun.jna.Function;
import com.sun.jna.NativeLibrary;
import com.sun.jna.Platform;

/**
 * glibc's allocator, set for tensor work. libtorch allocates every intermediate tensor with {@code malloc}; with
 * glibc's defaults, the freed memory of a step's activations and gradients (megabytes each) is handed back to the
 * kernel — trimmed off the arena's top, or unmapped — and the next step takes page faults and zero-fills the same
 * memory again: an eighth of a pre-training step went to page faults, measured with {@code perf}. Keeping up to
 * {@link #TRIM_THRESHOLD} of free memory per arena, growing arenas {@link #TOP_PAD} at a time, and serving allocations
 * up to {@link #MMAP_THRESHOLD} from the arenas (with the MLP's split, see {@code Mlp}) took 150 pre-training updates
 * from 71.6 s to 54.8 s (medians of three paired runs, {@code farm-bench}, 2-core AMD EPYC VM; system time 18.4 s to
 * 6.3 s; the same peak memory) and left the trained weights bit for bit the same.
 *
 * <p>Applied once, when the engine starts; {@code MALLOC_TRIM_THRESHOLD_} or {@code MALLOC_MMAP_THRESHOLD_} in the
 * environment (glibc's own settings) leave it to them. Other C libraries (musl, macOS) are left alone.
 */
final class NativeAllocator {
  static final int MMAP_THRESHOLD = 32 << 20; // glibc's largest allowed value on 64-bit
  static final int TRIM_THRESHOLD = 256 << 20;
  static final int TOP_PAD = 64 << 20;
  private static final int M_TRIM_THRESHOLD = -1; // <malloc.h>
  private static final int M_TOP_PAD = -2;
  private static final int M_MMAP_THRESHOLD = -3;

  private NativeAllocator() {}

  /** Returns whether the settings were applied. */
  static boolean tuneForTensors() {
    if (!Platform.isLinux() || System.getenv("MALLOC_TRIM_THRESHOLD_") != null
        || System.getenv("MALLOC_MMAP_THRESHOLD_") != null) {
      return false;
    }
    try {
      Function mallopt = NativeLibrary.getInstance(Platform.C_LIBRARY_NAME).getFunction("mallopt");
      return mallopt.invokeInt(new Object[] {M_MMAP_THRESHOLD, MMAP_THRESHOLD}) == 1
          & mallopt.invokeInt(new Object[] {M_TRIM_THRESHOLD, TRIM_THRESHOLD}) == 1
          & mallopt.invokeInt(new Object[] {M_TOP_PAD, TOP_PAD}) == 1;
    } catch (UnsatisfiedLinkError e) { // not glibc
      return false;
    }
  }
}
