package dev.memgen.trainer;

import static dev.memgen.trainer.TrainerFixture.await;
import static dev.memgen.trainer.TrainerFixture.broker;
import static dev.memgen.trainer.TrainerFixture.feedback;
import static dev.memgen.trainer.TrainerFixture.model;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.memgen.log.ExperienceLog;
import dev.memgen.log.Topics;
import dev.memgen.log.store.AdapterStore;
import dev.memgen.log.store.Ledger;
import dev.memgen.model.text.TextTokenizer;
import dev.memgen.proto.v1.Trajectory;
import java.io.IOException;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.Set;
import java.util.TreeSet;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Trainers sharing adapters: the store fences a trainer that no longer owns its adapter, and two members of a
 * {@link TrainerGroup} split the adapters between them and hand them over when one leaves, every trajectory trained
 * once. (The same with trainer-service processes and a SIGKILL: {@code ScaledTrainersTest} in deploy/.)
 */
class TrainerGroupTest {
  private static final io.opentelemetry.api.trace.Tracer NO_TRACES =
      io.opentelemetry.api.OpenTelemetry.noop().getTracer("test");

  @TempDir Path tmp;

  @Test
  void aTrainerThatNoLongerOwnsItsAdapterCannotStoreAVersion() throws Exception {
    String name = TrainerFixture.name("fenced");
    ContinualTrainer.Settings owner = TrainerFixture.settings(tmp, name, 3, 100, Optional.empty());
    ContinualTrainer.Settings stale = owner.forAdapter(name, tmp.resolve("work-stale"));
    List<String> ids;
    try (ExperienceLog log = new ExperienceLog(broker.bootstrapServers()); TextTokenizer tok = TextTokenizer.load(model)) {
      ids = publish(log, tok, name, 3, 41);
    }
    // Both start from v1 (as a member that stalled past its session and the one that took its adapter over do).
    ContinualTrainer late = new ContinualTrainer(stale);
    AdapterStore store = AdapterStore.open(owner.storeDir());
    try (TrainerFixture.Running t = new TrainerFixture.Running(new ContinualTrainer(owner))) {
      await(() -> TrainerFixture.versions(store, name) == 2, "the owner stores v2");
    }
    Throwable[] failure = new Throwable[1];
    Thread thread = new Thread(() -> {
      try {
        late.run();
      } catch (Throwable e) {
        failure[0] = e;
      }
    });
    thread.start();
    thread.join(120_000);
    late.release();
    assertTrue(failure[0] != null, "the stale trainer stops instead of publishing");
    assertInstanceOf(AdapterStore.VersionConflictException.class, failure[0].getCause(), String.valueOf(failure[0]));
    assertTrue(failure[0].getMessage().contains(name + " v2 was published by another trainer"), failure[0].getMessage());
    assertEquals(List.of(1L, 2L), store.versions(name).stream().map(AdapterStore.Version::version).toList());
    assertEquals(new TreeSet<>(ids), new TreeSet<>(store.ledger(name, 2).ids(Ledger.Outcome.TRAINED)));
  }

  @Test
  void twoMembersSplitTheAdaptersAndOneTakesAllOverWhenTheOtherLeaves() throws Exception {
    List<String> adapters = onBothPartitions(TrainerFixture.name("g"));
    ContinualTrainer.Settings template = TrainerFixture.settings(tmp, adapters.get(0), 3, 100, Optional.empty());
    TrainerGroup.Settings group = new TrainerGroup.Settings(template, adapters, Duration.ofSeconds(6));
    TrainerGroup first = new TrainerGroup(new TrainerGroup.Settings(template.forAdapter(adapters.get(0),
        tmp.resolve("work-first")), adapters, Duration.ofSeconds(6)), "first", NO_TRACES);
    TrainerGroup second = new TrainerGroup(group, "second", NO_TRACES);
    Thread firstThread = new Thread(first::run);
    Thread secondThread = new Thread(second::run);
    firstThread.start();
    secondThread.start();
    AdapterStore store = AdapterStore.open(template.storeDir());
    Map<String, Set<String>> sent = new java.util.HashMap<>();
    try (ExperienceLog log = new ExperienceLog(broker.bootstrapServers()); TextTokenizer tok = TextTokenizer.load(model)) {
      await(() -> running(first) + running(second) == 3 && running(first) > 0 && running(second) > 0,
          "the two members split the three adapters");
      Set<String> both = new HashSet<>(first.owned().keySet());
      both.retainAll(second.owned().keySet());
      assertEquals(Set.of(), both, "no adapter is trained by both");
      Map<String, List<String>> unrewarded = new java.util.HashMap<>();
      for (String a : adapters) {
        sent.computeIfAbsent(a, k -> new TreeSet<>()).addAll(publish(log, tok, a, 3, 50 + adapters.indexOf(a)));
        unrewarded.put(a, publish(log, tok, a, 2, 70 + adapters.indexOf(a), false)); // carried: no reward yet
        sent.get(a).addAll(unrewarded.get(a));
      }
      await(() -> adapters.stream().allMatch(a -> TrainerFixture.versions(store, a) >= 2), "every adapter trains a version");

      first.close(); // leaves the group: its window in progress finishes, then its adapters move
      firstThread.join(120_000);
      await(() -> running(second) == 3, "the second member takes every adapter over: " + second.owned());
      for (String a : adapters) { // the carried ones' rewards come after the hand-over
        for (String id : unrewarded.get(a)) {
          feedback(log, id, 1.0);
        }
        sent.get(a).addAll(publish(log, tok, a, 3, 60 + adapters.indexOf(a)));
      }
      await(() -> adapters.stream().allMatch(a -> trained(store, a).size() >= sent.get(a).size()),
          "every trajectory trained");
    } finally {
      first.close();
      second.close();
      firstThread.join(120_000);
      secondThread.join(120_000);
    }
    for (String a : adapters) {
      List<String> ids = trained(store, a);
      assertEquals(sent.get(a), new TreeSet<>(ids), a);
      assertEquals(ids.size(), new HashSet<>(ids).size(), a + ": none trained twice");
      for (AdapterStore.Version v : store.versions(a)) {
        assertEquals(v.version() - 1, v.parent(), a + ": a single line of parents");
      }
    }
  }

  /** Three adapter names whose streams are on both of the fixture's two partitions, so each member gets one or two. */
  private static List<String> onBothPartitions(String prefix) {
    List<String> out = new ArrayList<>();
    Set<Integer> partitions = new HashSet<>();
    for (int i = 0; out.size() < 3; i++) {
      String name = prefix + "-" + i;
      int p = Topics.partitionOf(name, 2);
      if (partitions.add(p) || partitions.size() == 2) {
        out.add(name);
      }
    }
    return out;
  }

  private static int running(TrainerGroup g) {
    return (int) g.owned().values().stream().filter(Optional::isPresent).count();
  }

  /** {@code n} rewarded trajectories of {@code adapter}, keyed by adapter as the reasoner keys them. */
  private static List<String> publish(ExperienceLog log, TextTokenizer tok, String adapter, int n, long seed) throws Exception {
    return publish(log, tok, adapter, n, seed, true);
  }

  private static List<String> publish(ExperienceLog log, TextTokenizer tok, String adapter, int n, long seed, boolean reward)
      throws Exception {
    List<String> ids = new ArrayList<>();
    for (Trajectory t : TrainerFixture.trajectories(tok, adapter, n, seed, true)) {
      log.publish(Topics.TRAJECTORIES, adapter, t).get();
      if (reward) {
        feedback(log, t.getTrajectoryId(), 1.0);
      }
      ids.add(t.getTrajectoryId());
    }
    return ids;
  }

  private static List<String> trained(AdapterStore store, String adapter) {
    try {
      List<String> ids = new ArrayList<>();
      for (AdapterStore.Version v : store.versions(adapter)) {
        ids.addAll(store.ledger(adapter, v.version()).ids(Ledger.Outcome.TRAINED));
      }
      return ids;
    } catch (IOException e) {
      throw new IllegalStateException(e);
    }
  }
}
