package dev.memgen.trainer;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.time.Duration;
import java.time.Instant;
import java.util.HashSet;
import java.util.Random;
import java.util.Set;
import java.util.UUID;
import org.junit.jupiter.api.Test;

/** The dedup set against a plain {@link HashSet}, and its horizon. */
class TrainedIdsTest {
  @Test
  void holdsExactlyWhatWasAddedWhateverTheIdLooksLike() {
    TrainedIds ids = new TrainedIds(Duration.ofDays(7));
    Set<String> reference = new HashSet<>();
    Random random = new Random(5);
    Instant now = Instant.now();
    for (int i = 0; i < 50_000; i++) {
      String id = switch (i % 4) {
        case 0 -> UUID.randomUUID().toString();
        case 1 -> UUID.randomUUID().toString().toUpperCase(); // the same bits as its lower-case form
        case 2 -> "traj-" + random.nextInt(1_000_000);
        default -> new UUID(0, 0).toString(); // the all-zero key is kept apart from empty slots
      };
      ids.add(id, now.minus(Duration.ofHours(random.nextInt(48)))); // three day segments
      reference.add(id.toLowerCase());
    }
    assertEquals(reference.size(), ids.size());
    for (String id : reference) {
      assertTrue(ids.contains(id), id);
    }
    for (int i = 0; i < 50_000; i++) {
      String id = i % 2 == 0 ? UUID.randomUUID().toString() : "other-" + i;
      assertEquals(reference.contains(id), ids.contains(id), id);
    }
  }

  @Test
  void idsOfVersionsOlderThanTheHorizonAreForgotten() {
    TrainedIds ids = new TrainedIds(Duration.ofDays(2));
    ids.add("old", Instant.now().minus(Duration.ofDays(5)));
    ids.add("recent", Instant.now().minus(Duration.ofHours(1)));
    assertFalse(ids.contains("old"));
    assertTrue(ids.contains("recent"));
    assertEquals(1, ids.size());
  }

  @Test
  void aUuidIsKeptAsItsOwnBits() {
    UUID u = UUID.randomUUID();
    assertArrayEquals(new long[] {u.getMostSignificantBits(), u.getLeastSignificantBits()}, TrainedIds.key(u.toString()));
  }
}
