package dev.memgen.model;

import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.condition.EnabledOnOs;
import org.junit.jupiter.api.condition.OS;

/** glibc accepts the allocator settings (mallopt refuses, for example, an mmap threshold above its maximum). */
class NativeAllocatorTest {
  @Test
  @EnabledOnOs(OS.LINUX)
  void glibcTakesTheSettings() {
    assumeTrue(System.getenv("MALLOC_TRIM_THRESHOLD_") == null && System.getenv("MALLOC_MMAP_THRESHOLD_") == null,
        "glibc's own settings are in the environment");
    assertTrue(NativeAllocator.tuneForTensors(), "mallopt refused a setting");
  }
}
