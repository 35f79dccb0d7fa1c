package dev.memgen.log.store;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class AdapterStoreTest {
  @TempDir Path tmp;

  static Path memoryDir(Path dir, String tensors, String manifest) throws IOException {
    Files.createDirectories(dir);
    Files.writeString(dir.resolve("memory.safetensors"), tensors);
    Files.writeString(dir.resolve("manifest.json"), manifest);
    return dir;
  }

  @Test
  void versionsAreContentAddressedAndCarryTheirLineage() throws IOException {
    AdapterStore store = AdapterStore.open(tmp.resolve("store"));
    Path a = memoryDir(tmp.resolve("a"), "weights-1", "{\"version\": 1}");
    AdapterStore.Version v1 = store.publish("fleet-a", a, 0, "fp", Map.of("accuracy_B", 55.0), Map.of("memgen.trajectories-0", 120L));
    Path b = memoryDir(tmp.resolve("b"), "weights-1", "{\"version\": 2}"); // same tensors, new manifest
    AdapterStore.Version v2 = store.publish("fleet-a", b, 1, "fp", Map.of(), Map.of("memgen.trajectories-0", 240L));
    assertEquals(1, v1.version());
    assertEquals(2, v2.version());
    assertEquals(v1.files().get("memory.safetensors"), v2.files().get("memory.safetensors"));
    try (var blobs = Files.list(store.root().resolve("blobs").resolve("sha256"))) {
      assertEquals(3, blobs.count(), "identical content is stored once");
    }
    AdapterStore.Version read = store.get("fleet-a", 2);
    assertEquals(1, read.parent());
    assertEquals(240L, read.offsets().get("memgen.trajectories-0"));
    assertEquals(55.0, store.get("fleet-a", 1).metrics().get("accuracy_B"));
    assertEquals(List.of(1L, 2L), store.versions("fleet-a").stream().map(AdapterStore.Version::version).toList());
    assertEquals(2, store.latest("fleet-a").orElseThrow().version());
    assertEquals(List.of("fleet-a"), store.names());

    Path out = store.materialize("fleet-a", 1, tmp.resolve("out"));
    assertArrayEquals(Files.readAllBytes(a.resolve("manifest.json")), Files.readAllBytes(out.resolve("manifest.json")));
    assertArrayEquals(Files.readAllBytes(a.resolve("memory.safetensors")), Files.readAllBytes(out.resolve("memory.safetensors")));
  }

  @Test
  void aCorruptedFileIsRefusedByName() throws IOException {
    AdapterStore store = AdapterStore.open(tmp.resolve("store"));
    AdapterStore.Version v = store.publish("x", memoryDir(tmp.resolve("a"), "weights", "{}"), 0, "fp", Map.of(), Map.of());
    Path blob = store.root().resolve("blobs").resolve("sha256").resolve(v.files().get("memory.safetensors"));
    Files.writeString(blob, "weightz");
    AdapterStore.CorruptedAdapterException e = assertThrows(AdapterStore.CorruptedAdapterException.class,
        () -> store.materialize("x", 1, tmp.resolve("out")));
    assertTrue(e.getMessage().contains("memory.safetensors is corrupted"), e.getMessage());
    assertTrue(!Files.exists(tmp.resolve("out").resolve("memory.safetensors")), "nothing half-written is left");
  }

  @Test
  void badNamesAndUnknownVersionsAreErrors() throws IOException {
    AdapterStore store = AdapterStore.open(tmp.resolve("store"));
    Path dir = memoryDir(tmp.resolve("a"), "w", "{}");
    assertThrows(IllegalArgumentException.class, () -> store.publish("../escape", dir, 0, "fp", Map.of(), Map.of()));
    assertThrows(IllegalArgumentException.class, () -> store.publish("", dir, 0, "fp", Map.of(), Map.of()));
    IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> store.get("nobody", 3));
    assertTrue(e.getMessage().contains("no version 3"), e.getMessage());
    Files.createDirectories(tmp.resolve("empty"));
    assertThrows(IllegalArgumentException.class, () -> store.publish("y", tmp.resolve("empty"), 0, "fp", Map.of(), Map.of()));
  }
}
