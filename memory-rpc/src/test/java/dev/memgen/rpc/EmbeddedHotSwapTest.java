package dev.memgen.rpc;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.memgen.log.AdapterLog;
import dev.memgen.log.ExperienceLog;
import dev.memgen.log.Topics;
import dev.memgen.log.broker.KafkaBroker;
import dev.memgen.log.store.AdapterStore;
import dev.memgen.model.Decoder;
import dev.memgen.model.Weaver;
import dev.memgen.model.checkpoint.Checkpoint;
import dev.memgen.model.checkpoint.DType;
import dev.memgen.model.checkpoint.TinyCheckpoint;
import dev.memgen.model.memory.InProcessMemory;
import dev.memgen.model.memory.Memory;
import dev.memgen.model.memory.TriggerLink;
import dev.memgen.model.memory.WeaverLink;
import dev.memgen.model.text.DelimiterTable;
import dev.memgen.proto.v1.AdapterComponent;
import dev.memgen.proto.v1.AdapterPublished;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * A reasoner's embedded memory following the adapters topic of a real broker: a WEAVER announcement swaps the weaver
 * only, a TRIGGER announcement the trigger only, and generations (sessions) opened before a swap keep their versions
 * to their end, checked against each version's own in-process weaves and probabilities.
 */
class EmbeddedHotSwapTest {
  static final int[] PREFIX = {72, 105, 33, 7};
  static final int[] MORE = {44, 3, 250, 46};

  @TempDir static Path tmp;
  static Decoder base;
  static String fingerprint;
  static KafkaBroker broker;
  static ExperienceLog log;
  static AdapterStore store;

  @BeforeAll
  static void start() throws Exception {
    Path model = tmp.resolve("base");
    TinyCheckpoint.write(model, TinyCheckpoint.tiny("qwen2"), DType.F32, 1, 31);
    fingerprint = Checkpoint.open(model).fingerprint();
    base = Decoder.load(model);
    store = AdapterStore.open(tmp.resolve("store"));
    for (long v = 1; v <= 3; v++) {
      Path dir = tmp.resolve("v" + v);
      TinyMemory.write(model, dir, TinyMemory.everyCharacter(), v, 40 + v);
      store.publish("default", dir, v - 1, fingerprint, Map.of(), Map.of());
    }
    broker = KafkaBroker.start(tmp.resolve("kafka"), 0);
    log = new ExperienceLog(broker.bootstrapServers());
    log.ensureTopics(1);
  }

  @AfterAll
  static void stop() {
    if (log != null) {
      log.close();
    }
    if (broker != null) {
      broker.stop();
    }
    if (base != null) {
      base.close();
    }
  }

  /** What version {@code v} weaves for PREFIX, and then (accepted) for MORE; and P(invoke) after each. */
  static float[][] inProcess(long v) {
    try (Memory m = Memory.load(tmp.resolve("v" + v), base, fingerprint)) {
      InProcessMemory mem = new InProcessMemory(base, m);
      InProcessMemory.WeaverSession w = mem.newWeaverSession();
      InProcessMemory.TriggerSession t = mem.newTriggerSession();
      try {
        w.appendTokens(PREFIX);
        t.appendTokens(PREFIX);
        float[] first = w.weave(Weaver.Kind.PROMPT);
        float p1 = t.probability();
        w.acceptLatents();
        w.appendTokens(MORE);
        t.appendTokens(MORE);
        return new float[][] {first, w.weave(Weaver.Kind.INFERENCE), {p1, t.probability()}};
      } finally {
        w.close();
        t.close();
      }
    }
  }

  static void announce(AdapterFollower follower, long version, AdapterComponent component) throws Exception {
    AdapterPublished a = AdapterLog.announcement(store, store.get("default", version), component, List.of(), 0, "window");
    long offset = log.publish(Topics.ADAPTERS, AdapterLog.key("default", component), a).get(30, TimeUnit.SECONDS).offset();
    assertTrue(follower.awaitPast(offset, Duration.ofSeconds(30)), "not followed within 30 s: " + follower.status());
    assertTrue(follower.status().recent().stream().anyMatch(e -> e.offset() == offset && e.loaded()),
        follower.status().toString());
  }

  @Test
  void weaverAndTriggerSwapApartAndOpenGenerationsKeepTheirVersions() throws Exception {
    float[][] v1 = inProcess(1);
    float[][] v2 = inProcess(2);
    float[][] v3 = inProcess(3);
    assertFalse(java.util.Arrays.equals(v1[0], v2[0]), "versions must differ for this test to mean anything");
    assertNotEquals(v1[2][0], v3[2][0]);

    try (ReasonerMemory memory = ReasonerMemory.embedded(base, fingerprint, tmp.resolve("v1"), "default",
            names -> DelimiterTable.ofTokenIds(base.config().vocabSize(), id -> false));
        EmbeddedMemory embedded = new EmbeddedMemory(base, fingerprint, "default", tmp.resolve("v1"));
        AdapterFollower weavers = new AdapterFollower(broker.bootstrapServers(), store, tmp.resolve("cache-w"),
            embedded.weaver, AdapterComponent.WEAVER);
        AdapterFollower triggers = new AdapterFollower(broker.bootstrapServers(), store, tmp.resolve("cache-t"),
            embedded.trigger, AdapterComponent.TRIGGER)) {
      // What a reasoner follows: one host per component.
      assertEquals(java.util.Set.of(AdapterComponent.WEAVER, AdapterComponent.TRIGGER), memory.hosts().keySet());
      weavers.start();
      triggers.start();
      assertTrue(weavers.awaitCatchUp(Duration.ofSeconds(30)) && triggers.awaitCatchUp(Duration.ofSeconds(30)));

      WeaverLink.Session heldWeaver = embedded.weaverLink().open("held");
      TriggerLink.Session heldTrigger = embedded.triggerLink().open("held");
      heldWeaver.appendTokens(PREFIX);
      heldTrigger.appendTokens(PREFIX);
      assertArrayEquals(v1[0], heldWeaver.weave(Weaver.Kind.PROMPT));
      assertEquals(v1[2][0], heldTrigger.probability());

      announce(weavers, 2, AdapterComponent.WEAVER);
      assertEquals(2, check(embedded, v2, v1)); // the weaver is v2, the trigger still v1
      announce(triggers, 3, AdapterComponent.TRIGGER);
      assertEquals(2, check(embedded, v2, v3)); // the trigger is v3, the weaver still v2

      // The generation opened first still has v1 for both.
      heldWeaver.acceptLatents();
      heldWeaver.appendTokens(MORE);
      heldTrigger.appendTokens(MORE);
      assertArrayEquals(v1[1], heldWeaver.weave(Weaver.Kind.INFERENCE));
      assertEquals(v1[2][1], heldTrigger.probability());
      assertEquals(1, heldWeaver.adapterVersion());
      assertEquals(1, heldTrigger.adapterVersion());
      assertEquals(2, embedded.weaver.adapters().size(), "v1 is held beside v2 while the generation runs");
      heldWeaver.close();
      heldTrigger.close();
      // Freed with its last generation: only the current versions remain.
      assertEquals(List.of(2L), embedded.weaver.adapters().stream().map(AdapterHost.Adapter::version).toList());
      assertEquals(List.of(3L), embedded.trigger.adapters().stream().map(AdapterHost.Adapter::version).toList());
    }
  }

  /** A new generation's weaves match {@code weaver}'s and its probabilities {@code trigger}'s; returns its weaver version. */
  static long check(EmbeddedMemory m, float[][] weaver, float[][] trigger) {
    WeaverLink.Session w = m.weaverLink().open("check");
    TriggerLink.Session t = m.triggerLink().open("check");
    try {
      w.appendTokens(PREFIX);
      t.appendTokens(PREFIX);
      assertArrayEquals(weaver[0], w.weave(Weaver.Kind.PROMPT));
      assertEquals(trigger[2][0], t.probability());
      w.acceptLatents();
      w.appendTokens(MORE);
      t.appendTokens(MORE);
      assertArrayEquals(weaver[1], w.weave(Weaver.Kind.INFERENCE));
      assertEquals(trigger[2][1], t.probability());
      return w.adapterVersion();
    } finally {
      w.close();
      t.close();
    }
  }
}
