package dev.memgen.reasoner;

import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Files;
import java.nio.file.Path;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Startup with a bad memgen.model.dir fails with a message naming the setting and the problem. Plain JUnit: these
 * checks fail before anything reaches DJL's native code, so they cannot disturb the Quarkus tests' JNI loading.
 */
class ReasonerModelLoadTest {
  @Test
  void aMissingDirectoryIsNamed(@TempDir Path tmp) {
    Path missing = tmp.resolve("nope");
    IllegalStateException e = assertThrows(IllegalStateException.class, () -> new ReasonerModel(missing.toString(), 16, 64, 256, 0));
    assertTrue(e.getMessage().contains("memgen.model.dir=" + missing), e.getMessage());
    assertTrue(e.getMessage().contains("does not exist"), e.getMessage());
  }

  @Test
  void aDirectoryWithoutConfigJsonIsNamed(@TempDir Path tmp) throws Exception {
    Files.writeString(tmp.resolve("README"), "not a checkpoint");
    IllegalStateException e = assertThrows(IllegalStateException.class, () -> new ReasonerModel(tmp.toString(), 16, 64, 256, 0));
    assertTrue(e.getMessage().contains("config.json"), e.getMessage());
  }

  @Test
  void engineLimitsOutOfRangeAreNamed(@TempDir Path tmp) {
    IllegalStateException e = assertThrows(IllegalStateException.class, () -> new ReasonerModel(tmp.toString(), 0, 64,
        256, 0));
    assertTrue(e.getMessage().contains("memgen.engine") && e.getMessage().contains("max-batch >= 1"), e.getMessage());
  }
}
