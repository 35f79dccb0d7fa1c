package dev.memgen.trainer;

import static dev.memgen.trainer.TrainerFixture.await;
import static dev.memgen.trainer.TrainerFixture.broker;
import static dev.memgen.trainer.TrainerFixture.feedback;
import static dev.memgen.trainer.TrainerFixture.model;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.memgen.log.ExperienceLog;
import dev.memgen.log.Topics;
import dev.memgen.log.store.AdapterStore;
import dev.memgen.log.store.Ledger;
import dev.memgen.model.text.TextTokenizer;
import dev.memgen.proto.v1.Feedback;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Optional;
import java.util.UUID;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * {@code adapters rebuild}: a version the trainer published (SFT on rewarded completions and a correction) is trained
 * again from its parent, its ledger and the log, and comes out bit-identical with the same held-out score; the same
 * rebuild with one number of its recipe changed does not (the comparison can fail), and what cannot be rebuilt is
 * refused with the reason.
 */
class VersionRebuildTest {
  @TempDir Path tmp;

  @Test
  void aPublishedVersionIsRebuiltBitIdenticalFromItsParentAndTheLog() throws Exception {
    String name = TrainerFixture.name("rebuild");
    ContinualTrainer.Settings s = TrainerFixture.settings(tmp, name, 4, 100, Optional.empty());
    try (ExperienceLog log = new ExperienceLog(broker.bootstrapServers()); TextTokenizer tok = TextTokenizer.load(model)) {
      List<String> ids = TrainerFixture.publishTrajectories(log, tok, name, 4, 21);
      for (int i = 0; i < 3; i++) {
        feedback(log, ids.get(i), 1.0);
      }
      log.publish(Topics.FEEDBACK, ids.get(3), Feedback.newBuilder().setTrajectoryId(ids.get(3)).setReward(0.0)
          .setCorrectedAnswer("The answer is \\boxed{7}.").setSource("human").setFeedbackId(UUID.randomUUID().toString())
          .setSchemaVersion(1).build()).get();
    }
    AdapterStore store = AdapterStore.open(s.storeDir());
    try (TrainerFixture.Running t = new TrainerFixture.Running(new ContinualTrainer(s))) {
      await(() -> TrainerFixture.versions(store, name) == 2, "v2 trained from the window");
    }
    assertEquals(4, store.ledger(name, 2).ids(Ledger.Outcome.TRAINED).size());

    VersionRebuild.Result r = VersionRebuild.run(store, name, 2, broker.bootstrapServers(), model, tmp.resolve("rebuild"),
        s.heldOut(), s.evalMaxNewTokens());
    assertEquals(4, r.trajectories());
    assertEquals(4, r.sftExamples(), "three rewarded completions and one correction");
    assertEquals(1, r.corrections());
    assertTrue(r.bitIdentical(), "same recipe, same threads, same machine: " + r);
    assertTrue(r.maxAbsDiff().values().stream().allMatch(d -> d == 0.0), r.maxAbsDiff().toString());
    assertEquals(r.storedAccuracy(), r.rebuiltAccuracy());
    assertEquals("", r.why());

    // The counter-check: the record's seed changed (as if the recipe were misrecorded), the rebuild no longer matches.
    Path copy = tmp.resolve("store-copy");
    try (var files = Files.walk(s.storeDir())) {
      for (Path f : files.filter(Files::isRegularFile).toList()) {
        Path to = copy.resolve(s.storeDir().relativize(f).toString());
        Files.createDirectories(to.getParent());
        Files.copy(f, to);
      }
    }
    Path record = copy.resolve("adapters").resolve(name).resolve("2.json");
    ObjectMapper json = new ObjectMapper();
    ObjectNode n = (ObjectNode) json.readTree(record.toFile());
    ((ObjectNode) n.get("metrics")).put("recipe_seed", n.get("metrics").get("recipe_seed").asDouble() + 1);
    Files.write(record, json.writeValueAsBytes(n));
    VersionRebuild.Result other = VersionRebuild.run(AdapterStore.open(copy), name, 2, broker.bootstrapServers(), model,
        tmp.resolve("rebuild-other"), s.heldOut(), s.evalMaxNewTokens());
    assertFalse(other.bitIdentical(), other.toString());
    assertTrue(other.maxAbsDiff().values().stream().anyMatch(d -> d > 0), other.maxAbsDiff().toString());
    assertTrue(other.why().contains("same thread count"), other.why());

    IllegalArgumentException initial = assertThrows(IllegalArgumentException.class, () -> VersionRebuild.run(store, name, 1,
        broker.bootstrapServers(), model, tmp.resolve("rebuild-1"), s.heldOut(), s.evalMaxNewTokens()));
    assertTrue(initial.getMessage().contains("initial memory"), initial.getMessage());
  }
}
