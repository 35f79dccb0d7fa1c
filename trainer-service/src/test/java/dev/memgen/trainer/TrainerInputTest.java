package dev.memgen.trainer;

import static dev.memgen.trainer.TrainerFixture.await;
import static dev.memgen.trainer.TrainerFixture.deadLettersBy;
import static dev.memgen.trainer.TrainerFixture.feedback;
import static dev.memgen.trainer.TrainerFixture.garbage;
import static dev.memgen.trainer.TrainerFixture.header;
import static dev.memgen.trainer.TrainerFixture.publish;
import static dev.memgen.trainer.TrainerFixture.raw;
import static dev.memgen.trainer.TrainerFixture.trajectories;
import static dev.memgen.trainer.TrainerFixture.versions;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.memgen.log.DeadLetters;
import dev.memgen.log.ExperienceLog;
import dev.memgen.log.Topics;
import dev.memgen.log.store.AdapterStore;
import dev.memgen.log.store.Ledger;
import dev.memgen.model.text.TextTokenizer;
import dev.memgen.model.train.TokenizedExample;
import dev.memgen.proto.v1.Feedback;
import dev.memgen.proto.v1.TriggerDecision;
import dev.memgen.proto.v1.Trajectory;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.Random;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.stream.Collectors;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The trainer's input as a hostile client and an at-least-once reasoner produce it, on a real broker: records at the
 * broker's size limit, copies of trajectories already trained, rewards racing their windows, token ids outside the
 * vocabulary, trajectories longer than the context, a record that makes training fail, and garbage in an open window
 * across a restart. Each case is counted exactly: trained once (by id, in the versions' ledgers), dead-lettered once
 * (by this trainer, at the record's source offset), none lost.
 */
class TrainerInputTest {
  @TempDir Path tmp;

  @Test
  void recordsAtTheBrokersSizeLimitAreDeadLetteredOnceAndTrainingGoesOn() throws Exception {
    String name = TrainerFixture.name("big");
    byte[] big = new byte[1_048_400]; // the broker takes it; its dead letter with headers is over the 1 MiB request limit
    new Random(3).nextBytes(big);
    big[0] = (byte) 0xff;
    String bigTrajectory = raw(Topics.TRAJECTORIES, "big", big);
    String bigFeedback = raw(Topics.FEEDBACK, "big", big);
    List<String> good;
    try (ExperienceLog log = new ExperienceLog(TrainerFixture.broker.bootstrapServers()); TextTokenizer tok = tokenizer()) {
      good = TrainerFixture.publishTrajectories(log, tok, name, 3, 41);
    }
    try (TrainerFixture.Running t = run(settings(name, 3, Optional.of(Verifier.named("arithmetic"))))) {
      await(() -> t.trainer.status().published() == 1, "v2 from the three good trajectories");
    }
    for (Map.Entry<String, String> e : Map.of(Topics.TRAJECTORIES, bigTrajectory, Topics.FEEDBACK, bigFeedback).entrySet()) {
      List<ConsumerRecord<String, byte[]>> dead = bySource(deadLettersBy(name, e.getKey()), e.getValue());
      assertEquals(1, dead.size(), e.getKey() + ": dead-lettered once");
      assertEquals("1048400", header(dead.get(0), DeadLetters.TRUNCATED_HEADER));
      assertEquals(DeadLetters.TRUNCATED_VALUE_BYTES, dead.get(0).value().length);
      assertTrue(header(dead.get(0), DeadLetters.REASON_HEADER).contains("not a valid memgen.v1."),
          header(dead.get(0), DeadLetters.REASON_HEADER));
    }
    Ledger v2 = store().ledger(name, 2);
    assertEquals(Set.copyOf(good), Set.copyOf(v2.ids(Ledger.Outcome.TRAINED)));
    assertTrue(v2.entries(Ledger.Outcome.DEAD_LETTERED).stream().anyMatch(x -> x.source().equals(bigTrajectory)), v2.toString());
  }

  /** The reasoner's spool delivers at least once: copies of a trained trajectory, in one window and across a restart. */
  @Test
  void aTrajectoryIdAlreadyTrainedInAnyVersionIsNotTrainedAgain() throws Exception {
    String name = TrainerFixture.name("dedup");
    ContinualTrainer.Settings s = settings(name, 3, Optional.of(Verifier.named("arithmetic")));
    List<Trajectory> first;
    List<Trajectory> second;
    List<Trajectory> third;
    List<String> copies = new ArrayList<>();
    try (ExperienceLog log = new ExperienceLog(TrainerFixture.broker.bootstrapServers()); TextTokenizer tok = tokenizer()) {
      first = trajectories(tok, name, 3, 51, false);
      second = trajectories(tok, name, 3, 52, false);
      third = trajectories(tok, name, 3, 53, false);
      try (TrainerFixture.Running t = run(s)) {
        for (Trajectory x : first) {
          publish(log, x);
        }
        await(() -> t.trainer.status().published() == 1, "v2 trains the first three");
        copies.add(publish(log, first.get(0))); // a copy while the trainer that trained it runs
        copies.add(publish(log, first.get(0))); // and a second copy, in the same window
        for (Trajectory x : second) {
          publish(log, x);
        }
        await(() -> t.trainer.status().published() == 2, "v3 trains the next three, not the copies");
        await(() -> t.trainer.status().counts().duplicated() == 2, "both copies counted");
      }
      copies.add(publish(log, first.get(1))); // a copy the restarted trainer knows only from the store's ledgers
      for (Trajectory x : third) {
        publish(log, x);
      }
      try (TrainerFixture.Running t = run(s)) {
        AdapterStore st = store();
        await(() -> versions(st, name) == 4, "v4 after the restart");
        await(() -> t.trainer.status().counts().duplicated() == 3, "the third copy counted");
        // the store's record comes before the trainer's status says so: wait for the status, then it must be exact
        await(() -> t.trainer.status().published() == 1, "v4 in the restarted trainer's status");
        assertEquals(9, t.trainer.status().counts().trained());
      }
    }
    AdapterStore store = store();
    Map<String, Integer> trainedTimes = new HashMap<>();
    List<Ledger.Entry> duplicates = new ArrayList<>();
    for (long v = 2; v <= 4; v++) {
      Ledger l = store.ledger(name, v);
      l.ids(Ledger.Outcome.TRAINED).forEach(id -> trainedTimes.merge(id, 1, Integer::sum));
      duplicates.addAll(l.entries(Ledger.Outcome.DUPLICATE));
    }
    assertEquals(9, trainedTimes.size());
    assertTrue(trainedTimes.values().stream().allMatch(n -> n == 1), "each id trained once: " + trainedTimes);
    assertEquals(copies.stream().sorted().toList(), duplicates.stream().map(Ledger.Entry::source).sorted().toList());
    assertEquals(List.of(first.get(0).getTrajectoryId(), first.get(0).getTrajectoryId(), first.get(1).getTrajectoryId())
        .stream().sorted().toList(), duplicates.stream().map(Ledger.Entry::trajectoryId).sorted().toList());
  }

  /**
   * Two clients, each sending a trajectory and its feedback at once, against a trainer with a window of one: every
   * trajectory whose reward was in the log before a window started training is trained by that window or an earlier
   * one, and one whose reward comes after its window (here: after a restart) is carried and trained later — each id
   * exactly once, none left behind.
   */
  @Test
  void everyRewardInTheLogBeforeAWindowStartsIsTrainedAndLaterOnesAreCarried() throws Exception {
    String name = TrainerFixture.name("race");
    ContinualTrainer.Settings s = settings(name, 1, Optional.empty());
    Map<String, Long> rewardLoggedAt = new ConcurrentHashMap<>();
    Trajectory late;
    try (ExperienceLog log = new ExperienceLog(TrainerFixture.broker.bootstrapServers()); TextTokenizer tok = tokenizer()) {
      List<Trajectory> all = trajectories(tok, name, 16, 61, true);
      late = trajectories(tok, name, 1, 62, true).get(0);
      try (TrainerFixture.Running t = run(s)) {
        publish(log, late); // never rewarded while this trainer runs
        List<Thread> clients = new ArrayList<>();
        AtomicInteger failures = new AtomicInteger();
        for (int c = 0; c < 2; c++) {
          List<Trajectory> mine = all.subList(8 * c, 8 * c + 8);
          clients.add(new Thread(() -> {
            try {
              for (Trajectory x : mine) {
                publish(log, x);
                feedback(log, x.getTrajectoryId(), 1.0);
                rewardLoggedAt.put(x.getTrajectoryId(), System.currentTimeMillis());
              }
            } catch (Exception e) {
              failures.incrementAndGet();
            }
          }));
        }
        clients.forEach(Thread::start);
        for (Thread c : clients) {
          c.join();
        }
        assertEquals(0, failures.get());
        await(() -> t.trainer.status().counts().trained() == 16, "all sixteen rewarded trajectories trained");
        assertEquals(1, t.trainer.status().counts().waiting(), "the unrewarded one waits");
      }
      feedback(log, late.getTrajectoryId(), 1.0); // its reward comes while no trainer runs
      try (TrainerFixture.Running t = run(s)) {
        await(() -> t.trainer.status().counts().trained() == 17, "the carried trajectory trained after the restart");
        assertEquals(0, t.trainer.status().counts().waiting());
      }
    }
    AdapterStore store = store();
    Map<String, Long> trainedIn = new HashMap<>();
    Map<Long, Double> startedAt = new HashMap<>();
    List<AdapterStore.Version> versions = store.versions(name);
    for (AdapterStore.Version v : versions.subList(1, versions.size())) {
      startedAt.put(v.version(), v.metrics().get("window_started_at_ms"));
      for (String id : store.ledger(name, v.version()).ids(Ledger.Outcome.TRAINED)) {
        assertEquals(null, trainedIn.put(id, v.version()), id + " trained twice");
      }
    }
    assertEquals(17, trainedIn.size(), "every trajectory trained: " + trainedIn);
    for (Map.Entry<String, Long> e : rewardLoggedAt.entrySet()) {
      // The first window that started after the reward was logged (and acknowledged) must have had it.
      long bound = startedAt.entrySet().stream().filter(w -> w.getValue() > e.getValue()).mapToLong(Map.Entry::getKey).min()
          .orElse(Long.MAX_VALUE);
      assertTrue(trainedIn.get(e.getKey()) <= bound, e.getKey() + " was rewarded before v" + bound + "'s window started, but "
          + "was trained in v" + trainedIn.get(e.getKey()));
    }
    long lateIn = trainedIn.get(late.getTrajectoryId());
    assertTrue(store.ledger(name, lateIn - 1).ids(Ledger.Outcome.CARRIED).contains(late.getTrajectoryId()),
        "the version before it carried it");
  }

  @Test
  void trajectoriesWithInvalidContentAreDeadLetteredWithTheirReasonAndTrainingGoesOn() throws Exception {
    String name = TrainerFixture.name("content");
    Map<String, String> expected = new HashMap<>(); // source -> what the reason must say
    List<String> good;
    try (ExperienceLog log = new ExperienceLog(TrainerFixture.broker.bootstrapServers()); TextTokenizer tok = tokenizer()) {
      Trajectory t = trajectories(tok, name, 1, 71, false).get(0);
      expected.put(publish(log, t.toBuilder().setTrajectoryId("vocab-" + name).setCompletionTokenIds(2, 999999).build()),
          "completion_token_ids[2] = 999999 is outside the vocabulary [0, 320)");
      Trajectory.Builder longer = t.toBuilder().setTrajectoryId("long-" + name).clearPromptTokenIds();
      for (int i = 0; i < 4200; i++) {
        longer.addPromptTokenIds(65 + i % 26);
      }
      expected.put(publish(log, longer.build()), "positions exceed the model's context of 4096");
      expected.put(publish(log, t.toBuilder().setTrajectoryId("nan-" + name).addTriggerDecisions(TriggerDecision.newBuilder()
          .setTokenIndex(1).setProbability(Float.NaN)).build()), "trigger_decisions[0].probability = NaN is not a probability");
      expected.put(publish(log, t.toBuilder().setTrajectoryId("base-" + name).setBaseFingerprint("another-base").build()),
          "base_fingerprint 'another-base' is not the base");
      expected.put(raw(Topics.TRAJECTORIES, "empty", new byte[0]), "empty value (0 bytes): expected a memgen.v1.Trajectory");
      Feedback wrongType = Feedback.newBuilder().setTrajectoryId("x").setReward(1).setSource("h").setSchemaVersion(1).build();
      expected.put(raw(Topics.TRAJECTORIES, "wrong-type", wrongType.toByteArray()),
          "is a memgen.v1.Feedback (schema_version 1), not a memgen.v1.Trajectory");
      good = TrainerFixture.publishTrajectories(log, tok, name, 3, 72);
    }
    try (TrainerFixture.Running t = run(settings(name, 3, Optional.of(Verifier.named("arithmetic"))))) {
      await(() -> t.trainer.status().published() == 1, "v2 from the good trajectories");
    }
    List<ConsumerRecord<String, byte[]>> dead = deadLettersBy(name, Topics.TRAJECTORIES);
    for (Map.Entry<String, String> e : expected.entrySet()) {
      List<ConsumerRecord<String, byte[]>> mine = bySource(dead, e.getKey());
      assertEquals(1, mine.size(), e.getKey() + " (" + e.getValue() + ") dead-lettered once");
      String reason = header(mine.get(0), DeadLetters.REASON_HEADER);
      assertTrue(reason.contains(e.getValue()), reason);
    }
    assertEquals(Set.copyOf(good), Set.copyOf(store().ledger(name, 2).ids(Ledger.Outcome.TRAINED)));
  }

  /**
   * A record that passes validation but makes training fail (a fault validation cannot foresee, injected here) is
   * retried once, then isolated and dead-lettered with the exception's message; the others train.
   */
  @Test
  void aRecordThatStillMakesTrainingFailIsDeadLetteredAfterOneRetry() throws Exception {
    String name = TrainerFixture.name("poison");
    List<Trajectory> good;
    Trajectory poison;
    String poisonSource;
    try (ExperienceLog log = new ExperienceLog(TrainerFixture.broker.bootstrapServers()); TextTokenizer tok = tokenizer()) {
      good = trajectories(tok, name, 3, 81, false);
      poison = trajectories(tok, name, 1, 82, false).get(0);
      poisonSource = publish(log, poison);
      for (Trajectory x : good) {
        publish(log, x);
      }
      for (Trajectory x : good) {
        feedback(log, x.getTrajectoryId(), 1.0);
      }
      feedback(log, poison.getTrajectoryId(), 1.0);
    }
    int[] poisonPrompt = poison.getPromptTokenIdsList().stream().mapToInt(Integer::intValue).toArray();
    AtomicInteger calls = new AtomicInteger();
    try (TrainerFixture.Running t = run(new ContinualTrainer(settings(name, 4, Optional.empty()), real ->
        (from, sft, prompts, steps, grpo, seed, metrics) -> {
          calls.incrementAndGet();
          for (TokenizedExample e : sft) {
            if (Arrays.equals(e.prompt(), poisonPrompt)) {
              throw new IllegalStateException("native error on this example (injected)");
            }
          }
          return real.train(from, sft, prompts, steps, grpo, seed, metrics);
        }))) {
      await(() -> t.trainer.status().published() == 1, "v2 from the three good ones");
    }
    assertEquals(2 + 4 + 1, calls.get(), "the window, its one retry, each of its four alone, the window without the culprit");
    List<ConsumerRecord<String, byte[]>> dead = bySource(deadLettersBy(name, Topics.TRAJECTORIES), poisonSource);
    assertEquals(1, dead.size());
    assertEquals("training failed on this trajectory: java.lang.IllegalStateException: native error on this example "
        + "(injected)", header(dead.get(0), DeadLetters.REASON_HEADER));
    assertEquals(poison.getTrajectoryId(), Trajectory.parseFrom(dead.get(0).value()).getTrajectoryId());
    Ledger v2 = store().ledger(name, 2);
    assertEquals(good.stream().map(Trajectory::getTrajectoryId).collect(Collectors.toSet()),
        Set.copyOf(v2.ids(Ledger.Outcome.TRAINED)));
    assertEquals(List.of(poison.getTrajectoryId()), v2.ids(Ledger.Outcome.DEAD_LETTERED).stream()
        .filter(id -> id.equals(poison.getTrajectoryId())).toList());
  }

  /** A failure no single record explains dead-letters nothing: the window is held back, retried later and later. */
  @Test
  void aWindowThatFailsForNoRecordsFaultBacksOffAndTrainsOnceTheFaultIsGone() throws Exception {
    String name = TrainerFixture.name("backoff");
    AtomicBoolean broken = new AtomicBoolean(true);
    AtomicInteger calls = new AtomicInteger();
    try (ExperienceLog log = new ExperienceLog(TrainerFixture.broker.bootstrapServers()); TextTokenizer tok = tokenizer()) {
      TrainerFixture.publishTrajectories(log, tok, name, 2, 91);
      try (TrainerFixture.Running t = run(new ContinualTrainer(settings(name, 2, Optional.of(Verifier.named("arithmetic"))),
          real -> (from, sft, prompts, steps, grpo, seed, metrics) -> {
            calls.incrementAndGet();
            if (broken.get()) {
              throw new java.io.IOException("No space left on device (injected)");
            }
            return real.train(from, sft, prompts, steps, grpo, seed, metrics);
          }))) {
        await(() -> t.trainer.status().heldBack().contains("next attempt in 1.0 s"), "held back after the first failure");
        assertTrue(t.trainer.status().heldBack().contains("No space left on device"), t.trainer.status().heldBack());
        await(() -> t.trainer.status().heldBack().contains("2 time(s) in a row, next attempt in 2.0 s"), "the back-off grows");
        assertEquals(2 * (2 + 2), calls.get(), "each attempt: the window, its retry, each trajectory alone");
        TrainerFixture.publishTrajectories(log, tok, name, 1, 92);
        await(() -> t.trainer.status().windowTrajectories() == 3, "consumption goes on while the window is held back");
        broken.set(false);
        await(() -> t.trainer.status().published() == 1, "v2 once the fault is gone");
        assertEquals("", t.trainer.status().heldBack());
      }
    }
    assertEquals(0, deadLettersBy(name, Topics.TRAJECTORIES).stream()
        .filter(r -> header(r, DeadLetters.REASON_HEADER).startsWith("training failed")).count());
    assertEquals(3, store().ledger(name, 2).ids(Ledger.Outcome.TRAINED).size());
  }

  /** Garbage in the open window when the trainer dies is not dead-lettered again by the trainer that takes over. */
  @Test
  void garbageInTheOpenWindowIsDeadLetteredOnceAcrossARestart() throws Exception {
    String name = TrainerFixture.name("restart");
    ContinualTrainer.Settings s = settings(name, 2, Optional.of(Verifier.named("arithmetic")));
    List<String> bad = new ArrayList<>();
    List<String> badFeedback = new ArrayList<>();
    try (ExperienceLog log = new ExperienceLog(TrainerFixture.broker.bootstrapServers()); TextTokenizer tok = tokenizer()) {
      try (TrainerFixture.Running t = run(s)) {
        bad.add(garbage(Topics.TRAJECTORIES));
        bad.add(garbage(Topics.TRAJECTORIES));
        badFeedback.add(garbage(Topics.FEEDBACK));
        TrainerFixture.publishTrajectories(log, tok, name, 1, 95); // one rewarded: the window (of 2) stays open
        await(() -> bySource(deadLettersBy(name, Topics.TRAJECTORIES), bad).size() == 2
            && bySource(deadLettersBy(name, Topics.FEEDBACK), badFeedback).size() == 1, "the garbage dead-lettered");
      } // the trainer stops with its window open: nothing of it is in the store, as after a kill -9
      try (TrainerFixture.Running t = run(s)) {
        TrainerFixture.publishTrajectories(log, tok, name, 1, 96);
        await(() -> t.trainer.status().published() == 1, "v2 from the re-read window");
      }
    }
    assertEquals(2, bySource(deadLettersBy(name, Topics.TRAJECTORIES), bad).size(), "each once");
    assertEquals(1, bySource(deadLettersBy(name, Topics.FEEDBACK), badFeedback).size(), "once");
    Ledger v2 = store().ledger(name, 2);
    assertEquals(2, v2.ids(Ledger.Outcome.TRAINED).size());
    assertEquals(2, v2.entries(Ledger.Outcome.DEAD_LETTERED).stream().filter(e -> bad.contains(e.source())).count());
  }

  // ---- helpers

  ContinualTrainer.Settings settings(String name, int window, Optional<Verifier> verifier) {
    return TrainerFixture.settings(tmp, name, window, 100, verifier);
  }

  static TrainerFixture.Running run(ContinualTrainer.Settings s) throws Exception {
    return run(new ContinualTrainer(s));
  }

  static TrainerFixture.Running run(ContinualTrainer trainer) {
    return new TrainerFixture.Running(trainer);
  }

  AdapterStore store() throws java.io.IOException {
    return AdapterStore.open(tmp.resolve("store"));
  }

  static TextTokenizer tokenizer() throws java.io.IOException {
    return TextTokenizer.load(TrainerFixture.model);
  }

  static List<ConsumerRecord<String, byte[]>> bySource(List<ConsumerRecord<String, byte[]>> dead, String source) {
    return bySource(dead, List.of(source));
  }

  static List<ConsumerRecord<String, byte[]>> bySource(List<ConsumerRecord<String, byte[]>> dead, List<String> sources) {
    return dead.stream().filter(r -> sources.contains(header(r, DeadLetters.SOURCE_HEADER))).toList();
  }
}
