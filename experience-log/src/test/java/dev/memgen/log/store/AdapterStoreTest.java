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

  /**
   * Two writers (two store objects on one directory, as two trainer processes have) racing for the same version: in
   * every round exactly one stores it, the other gets a conflict, and the record, its files and its ledger are the
   * winner's, whole.
   */
  @Test
  void twoWritersOfOneVersionCannotBothSucceed() throws Exception {
    Path root = tmp.resolve("store");
    AdapterStore first = AdapterStore.open(root);
    AdapterStore second = AdapterStore.open(root);
    first.publish("x", memoryDir(tmp.resolve("v1"), "w1", "{}"), 0, "fp", Map.of(), Map.of());
    for (int round = 2; round <= 21; round++) {
      long version = round;
      java.util.concurrent.CyclicBarrier start = new java.util.concurrent.CyclicBarrier(2);
      List<java.util.concurrent.Callable<AdapterStore.Version>> writers = new java.util.ArrayList<>();
      for (AdapterStore store : List.of(first, second)) {
        String who = store == first ? "first" : "second";
        Path dir = memoryDir(tmp.resolve(who + "-" + round), "weights of " + who + " " + round, "{}");
        Ledger ledger = new Ledger(List.of(new Ledger.Entry("memgen.trajectories-0@" + round, who + "-" + round,
            Ledger.Outcome.TRAINED, "by " + who)), 0);
        writers.add(() -> {
          start.await();
          return store.publishAs("x", version, dir, version - 1, "fp", Map.of(), Map.of(), ledger);
        });
      }
      var pool = java.util.concurrent.Executors.newFixedThreadPool(2);
      List<Object> outcomes = new java.util.ArrayList<>();
      try {
        for (var f : pool.invokeAll(writers)) {
          try {
            outcomes.add(f.get());
          } catch (java.util.concurrent.ExecutionException e) {
            outcomes.add(e.getCause());
          }
        }
      } finally {
        pool.shutdown();
      }
      List<AdapterStore.Version> won = outcomes.stream().filter(o -> o instanceof AdapterStore.Version)
          .map(o -> (AdapterStore.Version) o).toList();
      assertEquals(1, won.size(), "round " + round + ": exactly one writer stores the version: " + outcomes);
      Object lost = outcomes.stream().filter(o -> !(o instanceof AdapterStore.Version)).findFirst().orElseThrow();
      assertTrue(lost instanceof AdapterStore.VersionConflictException, "the other is told: " + lost);
      assertTrue(((Exception) lost).getMessage().contains("x v" + version + " was published by another trainer"),
          ((Exception) lost).getMessage());
      AdapterStore.Version stored = second.get("x", version);
      assertEquals(won.get(0).files(), stored.files(), "the record is the winner's");
      Ledger ledger = first.ledger("x", version); // checked against the hash the record names
      assertEquals(1, ledger.entries().size());
      String who = ledger.entries().get(0).trajectoryId().replace("-" + round, "");
      Path out = first.materialize("x", version, tmp.resolve("out-" + round));
      assertEquals("weights of " + who + " " + round, Files.readString(out.resolve("memory.safetensors")),
          "files and ledger of one writer");
    }
    assertEquals(21, first.versions("x").size());
    for (AdapterStore.Version v : first.versions("x")) {
      assertEquals(v.version() - 1, v.parent(), "a single line of parents");
    }
  }

  @Test
  void publishingAVersionThatExistsIsAConflict() throws IOException {
    AdapterStore store = AdapterStore.open(tmp.resolve("store"));
    store.publish("x", memoryDir(tmp.resolve("a"), "w", "{}"), 0, "fp", Map.of(), Map.of());
    Path other = memoryDir(tmp.resolve("b"), "other", "{}");
    assertThrows(AdapterStore.VersionConflictException.class,
        () -> store.publishAs("x", 1, other, 0, "fp", Map.of(), Map.of(), Ledger.EMPTY));
    assertEquals("w", Files.readString(store.materialize("x", 1, tmp.resolve("out")).resolve("memory.safetensors")));
    IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
        () -> store.publishAs("x", 3, other, 3, "fp", Map.of(), Map.of(), Ledger.EMPTY));
    assertTrue(e.getMessage().contains("its parent older"), e.getMessage());
  }
}
