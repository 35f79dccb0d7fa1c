package dev.memgen.model;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ai.djl.Device;
import ai.djl.engine.Engine;
import org.junit.jupiter.api.Test;

/**
 * memgen.device picks where tensors live; a GPU the engine does not see is refused by name before any tensor exists
 * (with the build's CPU-only libtorch: every GPU), and the default is the CPU the rest of the suite runs on.
 */
class DeviceSettingTest {
  @Test
  void devicesAreParsedAndCheckedAgainstTheGpusTheEngineSees() {
    assertEquals(Device.cpu(), Engines.device("cpu", 0));
    assertEquals(Device.gpu(0), Engines.device("gpu", 1));
    assertEquals(Device.gpu(1), Engines.device(" gpu:1 ", 2));
    IllegalArgumentException none = assertThrows(IllegalArgumentException.class, () -> Engines.device("gpu", 0));
    assertTrue(none.getMessage().startsWith("memgen.device (or MEMGEN_DEVICE) is 'gpu', but the PyTorch engine sees no GPU"),
        none.getMessage());
    assertTrue(assertThrows(IllegalArgumentException.class, () -> Engines.device("gpu:2", 2)).getMessage()
        .contains("sees 2 GPU(s)"));
    assertTrue(assertThrows(IllegalArgumentException.class, () -> Engines.device("tpu", 0)).getMessage()
        .endsWith("expected cpu, gpu or gpu:N"));
  }

  @Test
  void aGpuBeyondTheOnesThisEngineSeesIsRefused() {
    int gpus = Engine.getEngine("PyTorch").getGpuCount(); // 0 with the build's CPU-only libtorch
    assertThrows(IllegalArgumentException.class, () -> Engines.device("gpu:" + gpus, gpus));
    assertEquals(Device.cpu(), Engines.manager().getDevice(), "the default");
  }
}
