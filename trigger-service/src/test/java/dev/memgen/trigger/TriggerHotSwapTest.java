package dev.memgen.trigger;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.memgen.log.AdapterLog;
import dev.memgen.log.ExperienceLog;
import dev.memgen.log.Topics;
import dev.memgen.log.store.AdapterStore;
import dev.memgen.model.Decoder;
import dev.memgen.model.checkpoint.Checkpoint;
import dev.memgen.model.memory.InProcessMemory;
import dev.memgen.model.memory.Memory;
import dev.memgen.model.memory.TriggerLink;
import dev.memgen.proto.v1.AdapterComponent;
import dev.memgen.proto.v1.AdapterPublished;
import dev.memgen.rpc.AdapterFollower;
import dev.memgen.rpc.AdapterTopicResource;
import dev.memgen.rpc.CallDeadline;
import dev.memgen.rpc.RemoteTrigger;
import dev.memgen.rpc.TinyMemory;
import io.grpc.ManagedChannel;
import io.grpc.ManagedChannelBuilder;
import io.quarkus.arc.Arc;
import io.quarkus.grpc.runtime.GrpcServer;
import io.quarkus.test.common.WithTestResource;
import io.quarkus.test.junit.QuarkusTest;
import io.quarkus.value.registry.ValueRegistry;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import org.eclipse.microprofile.config.ConfigProvider;
import org.eclipse.microprofile.config.inject.ConfigProperty;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

/**
 * Trigger hot swap end to end, as weaver-service's: versions published to the adapter store and announced as TRIGGER
 * on a real broker's memgen.adapters topic are followed by the running trigger-service; checked over real gRPC against
 * each version's in-process probabilities. A session opened before a swap keeps deciding with its version.
 */
@QuarkusTest
@WithTestResource(AdapterTopicResource.class)
class TriggerHotSwapTest {
  static final int[] PREFIX = {72, 105, 33, 7};
  static final int[] MORE = {44, 3, 250, 46};

  @ConfigProperty(name = "memgen.model.dir") String modelDir;
  @ConfigProperty(name = "memgen.memory.dir") String memoryDir;

  static Decoder reasoner; // the reference side's own copy of the base
  static String fingerprint;
  static ExperienceLog log;
  static Path work;

  AdapterStore store;
  ManagedChannel channel;

  @BeforeEach
  void connect() throws Exception {
    // Read here rather than injected: the other tests' apps have no broker (see weaver-service's HotSwapTest).
    String bootstrap = ConfigProvider.getConfig().getValue("memgen.log.bootstrap", String.class);
    String storeDir = ConfigProvider.getConfig().getValue("memgen.adapters.store", String.class);
    if (reasoner == null) {
      reasoner = Decoder.load(Path.of(modelDir));
      fingerprint = Checkpoint.open(Path.of(modelDir)).fingerprint();
      log = new ExperienceLog(bootstrap);
      work = Files.createTempDirectory("memgen-trigger-hot-swap-test");
    }
    store = AdapterStore.open(Path.of(storeDir));
    int port = Arc.container().instance(ValueRegistry.class).get().get(GrpcServer.GRPC_PORT);
    channel = ManagedChannelBuilder.forAddress("127.0.0.1", port).usePlaintext().build();
  }

  @AfterEach
  void disconnect() throws InterruptedException {
    channel.shutdownNow().awaitTermination(5, TimeUnit.SECONDS);
  }

  @AfterAll
  static void release() {
    if (reasoner != null) {
      log.close();
      reasoner.close();
    }
  }

  static AdapterFollower follower() {
    return Arc.container().instance(TriggerModel.class).get().follower().orElseThrow();
  }

  Path publish(String name, long seed) throws Exception {
    long next = store.latest(name).map(v -> v.version() + 1).orElse(1L);
    Path dir = work.resolve(name + "-" + next);
    TinyMemory.write(Path.of(modelDir), dir, TinyMemory.everyCharacter(), next, seed);
    assertEquals(next, store.publish(name, dir, next - 1, fingerprint, Map.of(), Map.of()).version());
    return dir;
  }

  AdapterFollower.Event announce(String name, long version, AdapterComponent component) throws Exception {
    AdapterPublished a = AdapterLog.announcement(store, store.get(name, version), component, List.of(), 0, "window");
    long offset = log.publish(Topics.ADAPTERS, AdapterLog.key(name, component), a).get(30, TimeUnit.SECONDS).offset();
    if (!follower().awaitPast(offset, Duration.ofSeconds(30))) {
      throw new AssertionError("the trigger did not get past offset " + offset + " within 30 s: " + follower().status());
    }
    return follower().status().recent().stream().filter(e -> e.offset() == offset).findFirst().orElse(null);
  }

  TriggerLink.Session session(String id) {
    return new RemoteTrigger(channel, fingerprint, "", CallDeadline.of(Duration.ofSeconds(30))).open(id);
  }

  /** P(invoke) of the memory in {@code dir}, in-process, after PREFIX and after PREFIX + MORE. */
  static float[] inProcess(Path dir) {
    try (Memory m = Memory.load(dir, reasoner, fingerprint)) {
      InProcessMemory.TriggerSession s = new InProcessMemory(reasoner, m).newTriggerSession();
      try {
        s.appendTokens(PREFIX);
        float first = s.probability();
        s.appendTokens(MORE);
        return new float[] {first, s.probability()};
      } finally {
        s.close();
      }
    }
  }

  @Test
  void anAnnouncedTriggerVersionDecidesNewSessionsWhileOpenOnesKeepTheirs() throws Exception {
    float[] want1 = inProcess(Path.of(memoryDir));
    TriggerLink.Session before = session("before");
    before.appendTokens(PREFIX);
    assertEquals(want1[0], before.probability());
    assertEquals(1, before.adapterVersion());

    Path v2 = publish("default", 42);
    AdapterFollower.Event e = announce("default", 2, AdapterComponent.TRIGGER);
    assertTrue(e != null && e.loaded() && e.detail().contains("swapped in (was v1)"), String.valueOf(e));

    float[] want2 = inProcess(v2);
    assertNotEquals(want1[0], want2[0], "the versions must decide differently for this test to mean anything");
    TriggerLink.Session after = session("after");
    after.appendTokens(PREFIX);
    assertEquals(want2[0], after.probability());
    assertEquals(2, after.adapterVersion());
    after.appendTokens(MORE);
    assertEquals(want2[1], after.probability());
    after.close();

    // The session opened before the swap still decides with version 1.
    before.appendTokens(MORE);
    assertEquals(want1[1], before.probability());
    assertEquals(1, before.adapterVersion());
    before.close();

    // A weaver announcement is not the trigger's: ignored, and the trigger stays on v2.
    long ignored = follower().status().ignored();
    publish("default", 43);
    assertEquals(null, announce("default", 3, AdapterComponent.WEAVER));
    assertEquals(ignored + 1, follower().status().ignored());
    TriggerLink.Session still = session("still");
    still.appendTokens(PREFIX);
    assertEquals(want2[0], still.probability());
    assertEquals(2, still.adapterVersion());
    still.close();
  }
}
