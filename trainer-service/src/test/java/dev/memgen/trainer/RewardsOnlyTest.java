package dev.memgen.trainer;

import static dev.memgen.trainer.TrainerFixture.await;
import static dev.memgen.trainer.TrainerFixture.publish;
import static dev.memgen.trainer.TrainerFixture.trajectories;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.memgen.log.AdapterLog;
import dev.memgen.log.ExperienceLog;
import dev.memgen.log.Topics;
import dev.memgen.log.store.AdapterStore;
import dev.memgen.log.store.Ledger;
import dev.memgen.model.Decoder;
import dev.memgen.model.checkpoint.Checkpoint;
import dev.memgen.model.memory.Memory;
import dev.memgen.model.text.TextTokenizer;
import dev.memgen.model.train.TokenizedExample;
import dev.memgen.proto.v1.AdapterComponent;
import dev.memgen.proto.v1.AdapterPublished;
import dev.memgen.proto.v1.Feedback;
import dev.memgen.proto.v1.Trajectory;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.Set;
import java.util.UUID;
import java.util.stream.Collectors;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * What the trainer learns from when production gives rewards and rarely answers, on a real broker: a correction in
 * feedback becomes the SFT target of its trajectory's prompt, and with rollouts on, prompts whose logged answers all
 * earned nothing are rolled out with the serving memory and the rollouts the verifier rewards are trained on — each
 * trajectory still in exactly one version.
 */
class RewardsOnlyTest {
  @TempDir Path tmp;

  /** Judges any prompt of the task suite; rewards an answer whose first character is below 'A' (digits, say). */
  static final Verifier LOW_FIRST_CHARACTER = new Verifier() {
    @Override
    public String name() {
      return "low-first-character";
    }

    @Override
    public Optional<String> expected(String prompt) {
      return prompt.contains("Q") ? Optional.of("") : Optional.empty();
    }

    @Override
    public double score(String completion, String expected) {
      return !completion.isEmpty() && completion.charAt(0) < 'A' ? 1 : 0;
    }
  };

  @Test
  void aCorrectionInFeedbackBecomesTheSftTargetOfItsPrompt() throws Exception {
    String name = TrainerFixture.name("correct");
    List<List<TokenizedExample>> seen = Collections.synchronizedList(new ArrayList<>());
    try (ExperienceLog log = new ExperienceLog(TrainerFixture.broker.bootstrapServers()); TextTokenizer tok = tokenizer()) {
      List<Trajectory> ts = trajectories(tok, name, 2, 61, false);
      Trajectory wrong = ts.get(0).toBuilder().clearCompletionTokenIds()
          .addAllCompletionTokenIds(ids(tok.encode("1+1=3.\\boxed{3}"))).build();
      Trajectory right = ts.get(1);
      publish(log, wrong);
      publish(log, right);
      String correction = "1+1=2.\\boxed{2}";
      log.publish(Topics.FEEDBACK, wrong.getTrajectoryId(), Feedback.newBuilder().setTrajectoryId(wrong.getTrajectoryId())
          .setReward(0).setSource("human").setCorrectedAnswer(correction).setFeedbackId(UUID.randomUUID().toString())
          .setSchemaVersion(1).build()).get();
      TrainerFixture.feedback(log, right.getTrajectoryId(), 1);
      ContinualTrainer.Settings s = TrainerFixture.settings(tmp, name, 2, 100, Optional.empty());
      try (TrainerFixture.Running t = new TrainerFixture.Running(new ContinualTrainer(s,
          real -> (from, sft, prompts, steps, grpo, seed, metrics) -> {
            seen.add(List.copyOf(sft));
            return real.train(from, sft, prompts, steps, grpo, seed, metrics);
          }))) {
        await(() -> t.trainer.status().published() == 1, "v2 from the corrected and the rewarded trajectory");
      }
      assertEquals(1, seen.size(), "one training run");
      List<TokenizedExample> targets = seen.get(0);
      TokenizedExample want = TokenizedExample.of(tok, tok.decode(ids(wrong.getPromptTokenIdsList()), false), correction);
      TokenizedExample own = new TokenizedExample(ids(right.getPromptTokenIdsList()), ids(right.getCompletionTokenIdsList()));
      assertEquals(2, targets.size(), "the correction and the rewarded answer; the wrong answer is not a target");
      assertTrue(targets.stream().anyMatch(e -> same(e, want)), "the correction is an SFT target");
      assertTrue(targets.stream().anyMatch(e -> same(e, own)), "the rewarded answer is an SFT target");
      Ledger v2 = AdapterStore.open(tmp.resolve("store")).ledger(name, 2);
      assertEquals(Set.of(wrong.getTrajectoryId(), right.getTrajectoryId()), Set.copyOf(v2.ids(Ledger.Outcome.TRAINED)));
      assertTrue(v2.entries(Ledger.Outcome.TRAINED).stream()
          .anyMatch(e -> e.trajectoryId().equals(wrong.getTrajectoryId()) && e.detail().contains("correction")), v2.toString());
    }
  }

  @Test
  void promptsWhoseAnswersEarnedNothingLearnFromTheirRewardedRollouts() throws Exception {
    String name = TrainerFixture.name("rollouts");
    List<List<TokenizedExample>> seen = Collections.synchronizedList(new ArrayList<>());
    List<Trajectory> ts;
    try (ExperienceLog log = new ExperienceLog(TrainerFixture.broker.bootstrapServers()); TextTokenizer tok = tokenizer()) {
      ts = new ArrayList<>();
      for (Trajectory t : trajectories(tok, name, 4, 62, false)) { // every logged answer starts with 'Z': reward 0
        ts.add(t.toBuilder().clearCompletionTokenIds().addAllCompletionTokenIds(ids(tok.encode("Z9"))).build());
      }
      for (Trajectory t : ts) {
        publish(log, t);
      }
      ContinualTrainer.Settings s = TrainerFixture.settings(tmp, name, 4, 100, Optional.of(LOW_FIRST_CHARACTER))
          .withRollouts(new ContinualTrainer.Rollouts(4, 4, 1.0, 2));
      try (TrainerFixture.Running t = new TrainerFixture.Running(new ContinualTrainer(s,
          real -> (from, sft, prompts, steps, grpo, seed, metrics) -> {
            seen.add(List.copyOf(sft));
            return real.train(from, sft, prompts, steps, grpo, seed, metrics);
          }))) {
        await(() -> t.trainer.status().published() == 1, "v2 from the rewarded rollouts");
      }
      assertEquals(1, seen.size());
      List<TokenizedExample> targets = seen.get(0);
      assertTrue(!targets.isEmpty());
      Set<String> prompts = ts.stream().map(x -> x.getPromptTokenIdsList().toString()).collect(Collectors.toSet());
      for (TokenizedExample e : targets) {
        String text = tok.decode(e.answer(), true);
        assertEquals(1.0, LOW_FIRST_CHARACTER.score(text, ""), "every target earned the reward: '" + text + "'");
        assertTrue(prompts.contains(ids(e.prompt()).toString()), "every target answers a logged prompt");
      }
      assertTrue(targets.size() <= 2 * ts.size(), "at most 2 distinct rollouts per prompt");
    }
    AdapterStore store = AdapterStore.open(tmp.resolve("store"));
    Ledger v2 = store.ledger(name, 2);
    Set<String> all = ts.stream().map(Trajectory::getTrajectoryId).collect(Collectors.toSet());
    Set<String> trained = Set.copyOf(v2.ids(Ledger.Outcome.TRAINED));
    Set<String> judged = Set.copyOf(v2.ids(Ledger.Outcome.LOW_REWARD));
    assertTrue(!trained.isEmpty(), v2.toString());
    assertEquals(all, union(trained, judged), "each trajectory has one outcome: trained (a rollout earned it) or judged");
    // Other tests' records share the broker (garbage among them, dead-lettered by every trainer): count this test's.
    assertEquals(ts.size(), v2.entries().stream().filter(e -> all.contains(e.trajectoryId())).count(), "one outcome each: " + v2);
    for (Ledger.Entry e : v2.entries(Ledger.Outcome.TRAINED)) {
      assertTrue(e.detail().matches(".*rollouts [1-8]/8 rewarded.*"), e.detail());
    }
    for (Ledger.Entry e : v2.entries(Ledger.Outcome.LOW_REWARD)) {
      assertTrue(e.detail().contains("rollouts 0/8 rewarded"), e.detail());
    }
    assertTrue(store.get(name, 2).metrics().get("rollout_accuracy") > 0, "the version records what the rollouts earned");
  }

  /**
   * The trigger learned in the loop: a window whose logged answers all earned nothing teaches the weaver nothing, but
   * its verifiable prompts train the trigger (the weaver frozen); the version is announced for the trigger and for
   * the weaver, its weaver tensors are v1's bit for bit and its trigger tensors are not.
   */
  @Test
  void theTriggerIsTrainedWithTheWeaverFrozenAndAnnouncedAsATriggerVersion() throws Exception {
    String name = TrainerFixture.name("trigger");
    List<Trajectory> ts = new ArrayList<>();
    try (ExperienceLog log = new ExperienceLog(TrainerFixture.broker.bootstrapServers()); TextTokenizer tok = tokenizer()) {
      for (Trajectory t : trajectories(tok, name, 3, 64, false)) { // every logged answer starts with 'Z': reward 0
        ts.add(t.toBuilder().clearCompletionTokenIds().addAllCompletionTokenIds(ids(tok.encode("Z9"))).build());
      }
      for (Trajectory t : ts) {
        publish(log, t);
      }
    }
    ContinualTrainer.Settings s = TrainerFixture.settings(tmp, name, 3, 100, Optional.of(LOW_FIRST_CHARACTER),
        TrainerFixture.everyCharacterMemory).withTrigger(new ContinualTrainer.TriggerTraining(3, 2, 2, 5e-2, 0.1, 0.5));
    try (TrainerFixture.Running t = new TrainerFixture.Running(new ContinualTrainer(s))) {
      await(() -> t.trainer.status().published() == 1, "v2 from the trigger's training");
    }
    AdapterStore store = AdapterStore.open(tmp.resolve("store"));
    AdapterStore.Version v2 = store.get(name, 2);
    assertEquals(3.0, v2.metrics().get("trigger_rl_steps"), v2.metrics().toString());
    assertTrue(v2.metrics().containsKey("eval_invocation_rate"), "gated with the trigger deciding: " + v2.metrics());
    Map<String, AdapterPublished> announced = AdapterLog.current(TrainerFixture.broker.bootstrapServers(), Duration.ofSeconds(30));
    assertEquals(2, announced.get(AdapterLog.key(name, AdapterComponent.TRIGGER)).getVersion(), "a trigger version");
    assertEquals(2, announced.get(AdapterLog.key(name, AdapterComponent.WEAVER)).getVersion(), "the line of versions");

    Map<String, float[]> before = tensors(store, name, 1);
    Map<String, float[]> after = tensors(store, name, 2);
    assertEquals(before.keySet(), after.keySet());
    int changed = 0;
    for (String tensor : before.keySet()) {
      boolean same = java.util.Arrays.equals(before.get(tensor), after.get(tensor));
      if (tensor.startsWith("weaver.")) {
        assertTrue(same, tensor + " changed: the weaver is frozen while the trigger trains");
      } else if (!same) {
        changed++;
      }
    }
    assertTrue(changed > 0, "the trigger's tensors must change");
    Ledger ledger = store.ledger(name, 2);
    Set<String> all = ts.stream().map(Trajectory::getTrajectoryId).collect(Collectors.toSet());
    assertEquals(all, Set.copyOf(ledger.ids(Ledger.Outcome.TRAINED)), ledger.toString());
    assertTrue(ledger.entries(Ledger.Outcome.TRAINED).stream().allMatch(e -> e.detail().contains("trigger rl")), ledger.toString());
  }

  /** Every tensor of version {@code v} of {@code name}, as floats. */
  Map<String, float[]> tensors(AdapterStore store, String name, long v) throws Exception {
    Path dir = tmp.resolve("check-" + v);
    store.materialize(name, v, store.recordSha256(name, v), dir);
    Map<String, float[]> out = new java.util.TreeMap<>();
    try (Decoder base = Decoder.load(TrainerFixture.model);
        Memory m = Memory.load(dir, base, Checkpoint.open(TrainerFixture.model).fingerprint())) {
      m.tensors().forEach((k, t) -> out.put(k, t.toFloatArray()));
    }
    return out;
  }

  /** A trainer that fell behind trains version after version of at most max-window, the rest carried to the next. */
  @Test
  void aWindowTrainsAtMostMaxWindowAndTheRestWaitsForTheNext() throws Exception {
    String name = TrainerFixture.name("capped");
    List<String> ids;
    try (ExperienceLog log = new ExperienceLog(TrainerFixture.broker.bootstrapServers()); TextTokenizer tok = tokenizer()) {
      ids = TrainerFixture.publishTrajectories(log, tok, name, 5, 63);
    }
    ContinualTrainer.Settings d = TrainerFixture.settings(tmp, name, 2, 100, Optional.of(Verifier.named("arithmetic")));
    ContinualTrainer.Intake i = d.intake();
    ContinualTrainer.Settings s = d.withIntake(new ContinualTrainer.Intake(i.rewardHorizon(), i.maxWaiting(),
        i.dedupHorizon(), i.maxTrajectoryTokens(), 2));
    try (TrainerFixture.Running t = new TrainerFixture.Running(new ContinualTrainer(s))) {
      await(() -> t.trainer.status().published() == 2, "v2 and v3, two trajectories each");
      // One rewarded trajectory is less than a window (2) and max-window-wait is an hour: the trainer collects, idle.
      await(() -> t.trainer.status().activity().equals("collecting") && t.trainer.status().counts().waiting() == 1,
          "the fifth waiting for a window of its own");
      assertEquals(2, t.trainer.status().published(), "the fifth is in no version");
    }
    AdapterStore store = AdapterStore.open(tmp.resolve("store"));
    Ledger v2 = store.ledger(name, 2);
    Ledger v3 = store.ledger(name, 3);
    Set<String> first = Set.copyOf(v2.ids(Ledger.Outcome.TRAINED));
    Set<String> second = Set.copyOf(v3.ids(Ledger.Outcome.TRAINED));
    assertEquals(2, first.size(), v2.toString());
    assertEquals(2, second.size(), v3.toString());
    assertTrue(java.util.Collections.disjoint(first, second), "trained once");
    Set<String> rest = new java.util.HashSet<>(ids);
    rest.removeAll(first);
    assertEquals(rest, Set.copyOf(v2.ids(Ledger.Outcome.CARRIED)), "v2 carries the other three");
    rest.removeAll(second);
    assertEquals(rest, Set.copyOf(v3.ids(Ledger.Outcome.CARRIED)), "v3 carries the last one");
    assertEquals(1, rest.size());
  }

  static Set<String> union(Set<String> a, Set<String> b) {
    Set<String> u = new java.util.HashSet<>(a);
    u.addAll(b);
    return u;
  }

  static boolean same(TokenizedExample a, TokenizedExample b) {
    return java.util.Arrays.equals(a.prompt(), b.prompt()) && java.util.Arrays.equals(a.answer(), b.answer());
  }

  static int[] ids(List<Integer> l) {
    return l.stream().mapToInt(Integer::intValue).toArray();
  }

  static List<Integer> ids(int[] a) {
    return java.util.Arrays.stream(a).boxed().toList();
  }

  static TextTokenizer tokenizer() throws java.io.IOException {
    return TextTokenizer.load(TrainerFixture.model);
  }
}
