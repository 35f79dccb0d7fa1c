package dev.memgen.cli;

import static dev.memgen.cli.CliTest.JSON;
import static dev.memgen.cli.CliTest.memgen;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import dev.memgen.log.AdapterLog;
import dev.memgen.log.ExperienceLog;
import dev.memgen.log.broker.KafkaBroker;
import dev.memgen.log.store.AdapterStore;
import dev.memgen.proto.v1.AdapterComponent;
import dev.memgen.proto.v1.AdapterPublished;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * {@code adapters list|rollback} on a real broker and store: the listing marks what the topic says is current, a
 * rollback announces the older version with its original record hash, and a missing or damaged version is refused
 * before anything is announced.
 */
class AdaptersCommandTest {
  static final String BASE = "sha256:0123456789abcdef0123";

  @TempDir Path tmp;

  /** Publishes the next version of {@code name}: a stand-in directory (the store checks hashes, not content). */
  AdapterStore.Version publish(AdapterStore store, String name, String content) throws Exception {
    Path dir = Files.createDirectories(tmp.resolve("src-" + name + "-" + content));
    Files.writeString(dir.resolve("manifest.json"), "{\"for\":\"" + content + "\"}");
    Files.writeString(dir.resolve("memory.safetensors"), "weights " + content);
    long next = store.latest(name).map(v -> v.version() + 1).orElse(1L);
    return store.publish(name, dir, next - 1, BASE, Map.of("accuracy_b", 0.25 * next), Map.of("memgen.trajectories-0", 100 * next));
  }

  @Test
  void listsVersionsMarksTheCurrentOneAndRollsBack() throws Exception {
    AdapterStore store = AdapterStore.open(tmp.resolve("store"));
    try (KafkaBroker broker = KafkaBroker.start(tmp.resolve("kafka"), 0);
        ExperienceLog log = new ExperienceLog(broker.bootstrapServers())) {
      log.ensureTopics(1);
      String b = broker.bootstrapServers();
      String s = store.root().toString();
      for (String content : List.of("a", "b", "c")) {
        AdapterStore.Version v = publish(store, "default", content);
        AdapterLog.publish(log, AdapterLog.announcement(store, v, AdapterComponent.WEAVER, List.of(), 0, "window"),
            Duration.ofSeconds(30));
      }
      publish(store, "other", "x"); // in the store, never announced

      CliTest.Run list = memgen("adapters", "list", "--store", s, "--bootstrap", b);
      assertEquals(0, list.exit(), list.err());
      JsonNode listed = JSON.readTree(list.lastLine());
      assertEquals(4, listed.get("versions").size());
      assertEquals(3, listed.get("current").get("default/weaver").asInt());
      JsonNode v3 = listed.get("versions").get(2);
      assertEquals(List.of("default", "3", "2", "weaver"), List.of(v3.get("name").asText(), v3.get("version").asText(),
          v3.get("parent").asText(), v3.get("current").get(0).asText()));
      assertEquals(0.75, v3.get("metrics").get("accuracy_b").asDouble());
      assertEquals(300, v3.get("offsets").get("memgen.trajectories-0").asLong());
      assertEquals(0, listed.get("versions").get(1).get("current").size());
      assertTrue(list.out().contains("0123456789ab"), list.out()); // the base fingerprint's prefix

      CliTest.Run rollback = memgen("adapters", "rollback", "default", "2", "--store", s, "--bootstrap", b,
          "--reason", "bad answers");
      assertEquals(0, rollback.exit(), rollback.err());
      JsonNode rolled = JSON.readTree(rollback.lastLine());
      assertEquals(3, rolled.get("rolled_back_from").asInt());
      AdapterPublished now = AdapterLog.current(b, Duration.ofSeconds(30)).get("default/weaver");
      assertEquals(2, now.getVersion());
      assertEquals(3, now.getRolledBackFrom());
      assertEquals(1, now.getParentVersion());
      assertEquals("rollback: bad answers", now.getReason());
      assertEquals(store.recordSha256("default", 2), now.getSha256());
      assertEquals(store.recordUri("default", 2), now.getUri());
      assertEquals(0, now.getTrainedOnCount());
      assertEquals(3, rolled.get("offset").asLong());

      CliTest.Run only = memgen("adapters", "list", "--store", s, "--bootstrap", b, "--name", "default");
      JsonNode current = JSON.readTree(only.lastLine());
      assertEquals(3, current.get("versions").size());
      assertEquals("weaver", current.get("versions").get(1).get("current").get(0).asText());
      assertEquals(2, current.get("current").get("default/weaver").asInt());

      // Refused before anything is announced: a version not in the store, the current one, a damaged one.
      CliTest.Run missing = memgen("adapters", "rollback", "default", "9", "--store", s, "--bootstrap", b);
      assertEquals(2, missing.exit());
      assertTrue(missing.err().contains("adapter default has no version 9"), missing.err());
      CliTest.Run same = memgen("adapters", "rollback", "default", "2", "--store", s, "--bootstrap", b);
      assertEquals(2, same.exit());
      assertTrue(same.err().contains("default/weaver v2 is already current"), same.err());
      Path blob = store.root().resolve("blobs/sha256").resolve(store.get("default", 1).files().get("memory.safetensors"));
      Files.writeString(blob, "tampered");
      CliTest.Run damaged = memgen("adapters", "rollback", "default", "1", "--store", s, "--bootstrap", b);
      assertEquals(2, damaged.exit());
      assertTrue(damaged.err().contains("file memory.safetensors is corrupted"), damaged.err());
      assertEquals(2, AdapterLog.current(b, Duration.ofSeconds(30)).get("default/weaver").getVersion());
      CliTest.Run noPrevious = memgen("adapters", "rollback", "other", "1", "--store", s, "--bootstrap", b);
      assertEquals(2, noPrevious.exit());
      assertTrue(noPrevious.err().contains("nothing to roll back from"), noPrevious.err());

      CliTest.Run notAStore = memgen("adapters", "list", "--store", tmp.resolve("nowhere").toString());
      assertEquals(2, notAStore.exit());
      assertTrue(notAStore.err().contains("is not an adapter store"), notAStore.err());
    }
  }
}
