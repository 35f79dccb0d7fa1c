package dev.memgen.trainer;

import static dev.memgen.trainer.TrainerFixture.*;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.memgen.log.AdapterLog;
import dev.memgen.log.ExperienceLog;
import dev.memgen.log.Topics;
import dev.memgen.log.store.AdapterStore;
import dev.memgen.model.memory.Memory;
import dev.memgen.model.memory.MemoryManifest;
import dev.memgen.model.text.TextTokenizer;
import dev.memgen.proto.v1.AdapterComponent;
import dev.memgen.proto.v1.AdapterPublished;
import dev.memgen.proto.v1.Feedback;
import dev.memgen.proto.v1.FinishReason;
import dev.memgen.proto.v1.OffsetRange;
import dev.memgen.proto.v1.Trajectory;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.UUID;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.common.TopicPartition;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The trainer against a real broker and a tiny random checkpoint: windows of trajectories become stored and
 * announced adapter versions whose {@code trained_on} ranges tile the log exactly once, across restarts, a crash
 * between storing and announcing, rejected candidates and bad records (which go to the dead-letter topic).
 */
class ContinualTrainerTest {
  @TempDir Path tmp;

  ContinualTrainer.Settings settings(String name, int window, double tolerance, Optional<Verifier> verifier) {
    return TrainerFixture.settings(tmp, name, window, tolerance, verifier);
  }

  @Test
  void windowsBecomeVersionsAndEveryTrajectoryIsAccountedForOnceAcrossRestarts() throws Exception {
    String name = "acct-" + UUID.randomUUID().toString().substring(0, 8);
    byte[] baseBefore = digest(model);
    long deadLettersBefore = countRecords(Topics.deadLetter(Topics.TRAJECTORIES)) + countRecords(Topics.deadLetter(Topics.FEEDBACK));
    List<String> ids = new ArrayList<>();
    try (ExperienceLog log = new ExperienceLog(broker.bootstrapServers()); TextTokenizer tok = TextTokenizer.load(model)) {
      // Window 1: 6 trajectories, 4 rewarded through feedback (1 with reward 0), plus garbage.
      ids.addAll(publishTrajectories(log, tok, name, 6, 1));
      for (int i = 0; i < 4; i++) {
        feedback(log, ids.get(i), i == 3 ? 0.0 : 1.0);
      }
      log.publish(Topics.FEEDBACK, "x", Feedback.newBuilder().setTrajectoryId("x").setReward(Double.NaN).setSource("h")
          .setSchemaVersion(1).build()).get();
      garbage(Topics.TRAJECTORIES);
      log.flush();

      ContinualTrainer.Settings s = settings(name, 3, 100, Optional.empty());
      try (Running t = new Running(new ContinualTrainer(s))) {
        AdapterStore store = AdapterStore.open(s.storeDir());
        await(() -> versions(store, name) == 2, "v2 trained from the first window");
        await(() -> t.trainer.status().published() == 1, "v2 announced and the window closed");
        await(() -> t.trainer.status().deadLettered() == 2, "the garbage trajectory and the NaN feedback dead-lettered");
      }

      // A crash between storing and announcing: v3 is in the store (as a trainer writes it) but was never announced.
      AdapterStore store = AdapterStore.open(tmp.resolve("store"));
      AdapterStore.Version v2 = store.latest(name).orElseThrow();
      ids.addAll(publishTrajectories(log, tok, name, 2, 2));
      log.flush();
      Map<String, Long> advanced = new java.util.HashMap<>(v2.offsets());
      for (var e : endOffsets().entrySet()) {
        advanced.put(e.getKey().toString(), e.getValue());
      }
      Path v2dir = store.materialize(name, 2, tmp.resolve("v2"));
      MemoryManifest.read(v2dir).withVersion(3).write(v2dir);
      store.publish(name, v2dir, 2, fingerprint, Map.of(), advanced);

      // Restart: v3 gets announced, and training resumes after it; 3 more trajectories make window 3.
      ids.addAll(publishTrajectories(log, tok, name, 3, 3));
      for (int i = ids.size() - 3; i < ids.size(); i++) {
        feedback(log, ids.get(i), 1.0);
      }
      log.flush();
      try (Running t = new Running(new ContinualTrainer(settings(name, 3, 100, Optional.empty())))) {
        await(() -> versions(store, name) == 4, "v4 trained from the window after the restart");
      }
    }

    List<AdapterPublished> announced = AdapterLog.readAll(broker.bootstrapServers(), Duration.ofSeconds(30)).stream()
        .filter(a -> a.getAdapterName().equals(name)).toList();
    assertEquals(List.of(1L, 2L, 3L, 4L), announced.stream().map(AdapterPublished::getVersion).toList());
    assertEquals("initial", announced.get(0).getReason());
    assertEquals("window (announced at restart)", announced.get(2).getReason());
    AdapterStore store = AdapterStore.open(tmp.resolve("store"));
    for (AdapterPublished a : announced) {
      assertEquals(store.recordSha256(name, a.getVersion()), a.getSha256());
      assertEquals(a.getVersion() - 1, a.getParentVersion());
      assertEquals(fingerprint, a.getBaseFingerprint());
      assertEquals(AdapterComponent.WEAVER, a.getComponent());
    }
    // Exactly once: the ranges tile each partition from 0 to its end, and hold every trajectory of this test.
    List<String> trained = new ArrayList<>();
    Map<TopicPartition, Long> end = endOffsets();
    for (TopicPartition tp : end.keySet()) {
      long next = 0;
      for (AdapterPublished a : announced) {
        for (OffsetRange r : a.getTrainedOnList()) {
          if (r.getPartition() == tp.partition()) {
            assertEquals(next, r.getFromOffset(), "no gap and no overlap in " + tp + ": " + announced);
            next = r.getToOffset();
          }
        }
      }
      assertEquals(end.get(tp), next, tp + " consumed to its end");
      trained.addAll(trajectoryIds(tp, 0, next));
    }
    assertTrue(trained.containsAll(ids), "every trajectory of this adapter is inside a published range");
    assertEquals(trained.size(), trained.stream().distinct().count());
    // The trainer's group position follows the last publish; the weights changed; the base did not.
    try (KafkaConsumer<String, byte[]> c = ExperienceLog.consumer(broker.bootstrapServers(), "check", "memgen-trainer-" + name)) {
      Map<TopicPartition, OffsetAndMetadata> committed = c.committed(end.keySet(), Duration.ofSeconds(10));
      for (TopicPartition tp : end.keySet()) {
        assertEquals(end.get(tp), committed.get(tp).offset());
      }
    }
    assertFalse(java.util.Arrays.equals(Files.readAllBytes(store.materialize(name, 1, tmp.resolve("m1")).resolve(Memory.TENSORS)),
        Files.readAllBytes(store.materialize(name, 2, tmp.resolve("m2")).resolve(Memory.TENSORS))), "v2 was trained");
    assertEquals(2, MemoryManifest.read(tmp.resolve("m2")).version(), "the memory's own version is the store's");
    assertArrayEquals(baseBefore, digest(model), "the frozen base is untouched");
    assertEquals(2, countRecords(Topics.deadLetter(Topics.TRAJECTORIES)) + countRecords(Topics.deadLetter(Topics.FEEDBACK))
        - deadLettersBefore, "both bad records are in the dead-letter topics");
  }

  @Test
  void aCandidateThatRegressesIsNotPublishedAndItsRangeCarriesOver() throws Exception {
    String name = "gate-" + UUID.randomUUID().toString().substring(0, 8);
    List<String> ids;
    try (ExperienceLog log = new ExperienceLog(broker.bootstrapServers()); TextTokenizer tok = TextTokenizer.load(model)) {
      ids = publishTrajectories(log, tok, name, 3, 5); // rewarded by the verifier: the answers are right
      log.flush();
      // Demanding 1 point of improvement a random model cannot make: the candidate is refused.
      try (Running t = new Running(new ContinualTrainer(settings(name, 3, -1, Optional.of(Verifier.named("arithmetic")))))) {
        await(() -> t.trainer.status().rejected() == 1, "the candidate was evaluated and refused");
        assertEquals(1, AdapterStore.open(tmp.resolve("store")).versions(name).size(), "nothing but the initial version");
      }
      ids.addAll(publishTrajectories(log, tok, name, 3, 6));
      log.flush();
      AdapterStore store = AdapterStore.open(tmp.resolve("store"));
      try (Running t = new Running(new ContinualTrainer(settings(name, 3, 100, Optional.of(Verifier.named("arithmetic")))))) {
        await(() -> versions(store, name) == 2, "v2 from the second window");
      }
    }
    AdapterPublished v2 = AdapterLog.current(broker.bootstrapServers(), Duration.ofSeconds(30))
        .get(AdapterLog.key(name, AdapterComponent.WEAVER));
    assertEquals(2, v2.getVersion());
    List<String> covered = new ArrayList<>();
    for (OffsetRange r : v2.getTrainedOnList()) {
      covered.addAll(trajectoryIds(new TopicPartition(r.getTopic(), r.getPartition()), r.getFromOffset(), r.getToOffset()));
    }
    assertTrue(covered.containsAll(ids), "v2's range includes the refused window's trajectories: " + v2.getTrainedOnList());
    assertEquals(6.0, v2.getEvalMetricsOrThrow("window_rewarded"),
        "the refused window was never published, so the restarted trainer read it again with the second");
  }

  @Test
  void aRollbackWhileTheTrainerRunsIsWhereTheNextVersionGrowsFrom() throws Exception {
    String name = "rollback-" + UUID.randomUUID().toString().substring(0, 8);
    try (ExperienceLog log = new ExperienceLog(broker.bootstrapServers()); TextTokenizer tok = TextTokenizer.load(model)) {
      AdapterStore store = AdapterStore.open(tmp.resolve("store"));
      try (Running t = new Running(new ContinualTrainer(settings(name, 3, 100, Optional.of(Verifier.named("arithmetic")))))) {
        publishTrajectories(log, tok, name, 3, 8);
        await(() -> t.trainer.status().published() == 1, "v2");
        // An operator rolls back to v1 (what `memgen adapters rollback` announces).
        AdapterLog.publish(log, AdapterLog.announcement(store, store.get(name, 1), AdapterComponent.WEAVER, List.of(), 2,
            "rollback: test"), Duration.ofSeconds(10));
        publishTrajectories(log, tok, name, 3, 9);
        await(() -> t.trainer.status().published() == 2, "v3");
      }
      assertEquals(1, store.get(name, 3).parent(), "v3 grew from the version rolled back to");
    }
  }

  @Test
  void aDivergedCandidateNeverReachesServingAndGrpoRunsOnLoggedPrompts() throws Exception {
    String name = "diverge-" + UUID.randomUUID().toString().substring(0, 8);
    try (ExperienceLog log = new ExperienceLog(broker.bootstrapServers()); TextTokenizer tok = TextTokenizer.load(model)) {
      AdapterStore store = AdapterStore.open(tmp.resolve("store"));
      publishTrajectories(log, tok, name, 3, 10);
      // A learning rate no weight survives: the first update blows the weights up, the next gradients are NaN.
      ContinualTrainer.Settings ok = settings(name, 3, 100, Optional.of(Verifier.named("arithmetic")));
      ContinualTrainer.Settings wild = new ContinualTrainer.Settings(ok.bootstrapServers(), name, ok.modelDir(),
          ok.initialMemory(), ok.storeDir(), ok.workDir(), ok.heldOut(), 100, 3, ok.maxWindowWait(), ok.feedbackGrace(), 1.0, 4, 4, 1e30, 0,
          ok.verifier(), ok.evalMaxNewTokens(), ok.partitions(), 0, ok.intake());
      try (Running t = new Running(new ContinualTrainer(wild))) {
        await(() -> t.trainer.status().rejected() == 1, "the diverged candidate was refused");
        assertEquals(1, store.versions(name).size(), "nothing but the initial version");
      }
      // SFT then GRPO by re-rollout of the window's prompts, rewarded by the verifier.
      ContinualTrainer.Settings grpo = new ContinualTrainer.Settings(ok.bootstrapServers(), name, ok.modelDir(),
          ok.initialMemory(), ok.storeDir(), ok.workDir(), ok.heldOut(), 100, 3, ok.maxWindowWait(), ok.feedbackGrace(), 1.0, 2, 4, 1e-2, 2,
          ok.verifier(), ok.evalMaxNewTokens(), ok.partitions(), 0, ok.intake());
      try (Running t = new Running(new ContinualTrainer(grpo))) {
        await(() -> t.trainer.status().published() == 1, "v2 after SFT and GRPO");
      }
      assertTrue(store.get(name, 2).metrics().containsKey("grpo_last_mean_reward"), store.get(name, 2).metrics().toString());
    }
  }

  @Test
  void aDueWindowWaitsForFeedbackOnItsYoungestTrajectories() throws Exception {
    String name = "grace-" + UUID.randomUUID().toString().substring(0, 8);
    try (ExperienceLog log = new ExperienceLog(broker.bootstrapServers()); TextTokenizer tok = TextTokenizer.load(model)) {
      ContinualTrainer.Settings ok = settings(name, 1, 100, Optional.empty());
      ContinualTrainer.Settings graceful = new ContinualTrainer.Settings(ok.bootstrapServers(), name, ok.modelDir(),
          ok.initialMemory(), ok.storeDir(), ok.workDir(), ok.heldOut(), 100, 1, ok.maxWindowWait(), Duration.ofSeconds(20),
          1.0, 2, 2, 1e-2, 0, Optional.empty(), ok.evalMaxNewTokens(), ok.partitions(), 0, ok.intake());
      try (Running t = new Running(new ContinualTrainer(graceful))) {
        List<String> ids = publishTrajectories(log, tok, name, 2, 12, true);
        feedback(log, ids.get(0), 1.0); // the window (target 1) is due now, but the second one just finished
        await(() -> t.trainer.status().windowRewarded() == 1, "the window is due (its one rewarded trajectory)");
        Thread.sleep(1500);
        assertEquals(0, t.trainer.status().published(), "waiting for the second one's feedback");
        // Work to do, held back by the grace: not a trainer waiting for traffic (a bench waits for it to publish).
        assertEquals("window due", t.trainer.status().activity());
        feedback(log, ids.get(1), 1.0);
        await(() -> t.trainer.status().published() == 1, "v2 once the late feedback came");
      }
      assertEquals(2.0, AdapterStore.open(tmp.resolve("store")).get(name, 2).metrics().get("sft_examples"),
          "the late-rewarded trajectory was trained on");
    }
  }
}
