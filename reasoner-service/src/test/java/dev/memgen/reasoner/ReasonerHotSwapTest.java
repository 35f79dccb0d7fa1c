package dev.memgen.reasoner;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.memgen.log.AdapterLog;
import dev.memgen.log.ExperienceLog;
import dev.memgen.log.Topics;
import dev.memgen.log.store.AdapterStore;
import dev.memgen.model.checkpoint.Checkpoint;
import dev.memgen.proto.v1.AdapterComponent;
import dev.memgen.proto.v1.AdapterPublished;
import dev.memgen.proto.v1.Trajectory;
import dev.memgen.rpc.AdapterFollower;
import dev.memgen.rpc.AdapterTopicResource;
import dev.memgen.rpc.TinyMemory;
import io.quarkus.arc.Arc;
import io.quarkus.test.junit.QuarkusTest;
import io.quarkus.test.junit.QuarkusTestProfile;
import io.quarkus.test.junit.TestProfile;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.common.TopicPartition;
import org.eclipse.microprofile.config.ConfigProvider;
import org.eclipse.microprofile.config.inject.ConfigProperty;
import org.junit.jupiter.api.Test;

/**
 * A reasoner with embedded memory and an adapter store follows the adapters topic of a real broker as the services
 * do: after a TRIGGER announcement of v2 and a WEAVER announcement of v3, its generations are recorded with weaver v3
 * and trigger v2 (each component swapped apart).
 */
@QuarkusTest
@TestProfile(ReasonerHotSwapTest.Following.class)
class ReasonerHotSwapTest {
  public static class Following implements QuarkusTestProfile {
    @Override
    public List<TestResourceEntry> testResources() {
      return List.of(new TestResourceEntry(AdapterTopicResource.class));
    }

    @Override
    public Map<String, String> getConfigOverrides() {
      // The trigger is consulted at every delimiter and always says yes: every generation records its version.
      return Map.of("memgen.trigger.mode", "threshold", "memgen.trigger.threshold", "0");
    }
  }

  @ConfigProperty(name = "memgen.model.dir") String modelDir;

  @Test
  void generationsUseTheAnnouncedWeaverAndTriggerVersions() throws Exception {
    String bootstrap = ConfigProvider.getConfig().getValue("memgen.log.bootstrap", String.class);
    AdapterStore store = AdapterStore.open(Path.of(ConfigProvider.getConfig().getValue("memgen.adapters.store", String.class)));
    List<AdapterFollower> followers = Arc.container().instance(ReasonerMemoryConfig.class).get().followers();
    assertEquals(2, followers.size(), "one follower for the weaver, one for the trigger");

    Trajectory before = generate(bootstrap);
    assertEquals(1, before.getWeaverVersion());
    assertEquals(1, before.getTriggerVersion());

    String fingerprint = Checkpoint.open(Path.of(modelDir)).fingerprint();
    Path work = Files.createTempDirectory("memgen-reasoner-hot-swap");
    for (long v = 2; v <= 3; v++) {
      Path dir = work.resolve("v" + v);
      TinyMemory.write(Path.of(modelDir), dir, TinyMemory.everyCharacter(), v, 40 + v);
      store.publish("default", dir, v - 1, fingerprint, Map.of(), Map.of());
    }
    try (ExperienceLog log = new ExperienceLog(bootstrap)) {
      long last = 0;
      for (Map.Entry<AdapterComponent, Long> e : Map.of(AdapterComponent.TRIGGER, 2L, AdapterComponent.WEAVER, 3L).entrySet()) {
        AdapterPublished a = AdapterLog.announcement(store, store.get("default", e.getValue()), e.getKey(), List.of(), 0, "window");
        last = Math.max(last, log.publish(Topics.ADAPTERS, AdapterLog.key("default", e.getKey()), a)
            .get(30, TimeUnit.SECONDS).offset());
      }
      for (AdapterFollower f : followers) {
        assertTrue(f.awaitPast(last, Duration.ofSeconds(30)), "not followed within 30 s: " + f.status());
      }
    }
    Trajectory after = generate(bootstrap);
    assertEquals(3, after.getWeaverVersion(), "the announced weaver");
    assertEquals(2, after.getTriggerVersion(), "the announced trigger");
  }

  /** One generation over gRPC, and its trajectory record read back from the broker. */
  static Trajectory generate(String bootstrap) throws Exception {
    String id = ReasonerWithMemoryTest.generate(ReasonerWithMemoryTest.chat(12, true)).finished().getTrajectoryId();
    try (KafkaConsumer<String, byte[]> c = ExperienceLog.consumer(bootstrap, "reasoner-hot-swap-test", null)) {
      TopicPartition tp = new TopicPartition(Topics.TRAJECTORIES, 0);
      c.assign(List.of(tp));
      c.seekToBeginning(List.of(tp));
      long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(60);
      while (System.nanoTime() < deadline) {
        for (ConsumerRecord<String, byte[]> r : c.poll(Duration.ofMillis(500))) {
          Trajectory t = Trajectory.parseFrom(r.value());
          if (t.getTrajectoryId().equals(id)) {
            return t;
          }
        }
      }
    }
    throw new AssertionError("trajectory " + id + " never reached " + Topics.TRAJECTORIES);
  }
}
