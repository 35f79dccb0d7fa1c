package dev.memgen.weaver;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.memgen.log.AdapterLog;
import dev.memgen.log.ExperienceLog;
import dev.memgen.log.Topics;
import dev.memgen.log.store.AdapterStore;
import dev.memgen.model.Decoder;
import dev.memgen.model.Weaver;
import dev.memgen.model.checkpoint.Checkpoint;
import dev.memgen.model.memory.InProcessMemory;
import dev.memgen.model.memory.Memory;
import dev.memgen.model.memory.WeaverLink;
import dev.memgen.proto.v1.AdapterComponent;
import dev.memgen.proto.v1.AdapterPublished;
import dev.memgen.proto.v1.DescribeRequest;
import dev.memgen.proto.v1.WeaverGrpc;
import dev.memgen.rpc.AdapterFollower;
import dev.memgen.rpc.AdapterHost;
import dev.memgen.rpc.AdapterTopicResource;
import dev.memgen.rpc.CallDeadline;
import dev.memgen.rpc.RemoteWeaver;
import dev.memgen.rpc.ServiceLimits;
import dev.memgen.rpc.TinyMemory;
import dev.memgen.rpc.WeaverService;
import io.grpc.ManagedChannel;
import io.grpc.ManagedChannelBuilder;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import io.quarkus.arc.Arc;
import io.quarkus.grpc.runtime.GrpcServer;
import io.quarkus.test.common.WithTestResource;
import io.quarkus.test.junit.QuarkusTest;
import io.quarkus.value.registry.ValueRegistry;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.Arrays;
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
 * Hot swap end to end: versions published to the adapter store and announced on a real broker's memgen.adapters
 * topic, followed by the running service, checked over real gRPC against what each version weaves in-process. Each
 * test uses its own adapter name, so the order they run in does not matter.
 */
@QuarkusTest
@WithTestResource(AdapterTopicResource.class)
class HotSwapTest {
  static final int[] PREFIX = {72, 105, 33, 7};
  static final int[] MORE = {44, 3, 250};

  @ConfigProperty(name = "memgen.model.dir") String modelDir;
  @ConfigProperty(name = "memgen.memory.dir") String memoryDir;

  static Decoder reasoner; // the reference side's own copy of the base
  static String fingerprint;
  static String bootstrap;
  static ExperienceLog log;
  static Path work;

  AdapterStore store;
  ManagedChannel channel;

  @BeforeEach
  void connect() throws Exception {
    // Read here rather than injected: Quarkus checks injected properties of every test class in whichever app starts,
    // and the other tests' apps have no broker.
    bootstrap = ConfigProvider.getConfig().getValue("memgen.log.bootstrap", String.class);
    String storeDir = ConfigProvider.getConfig().getValue("memgen.adapters.store", String.class);
    if (reasoner == null) {
      reasoner = Decoder.load(Path.of(modelDir));
      fingerprint = Checkpoint.open(Path.of(modelDir)).fingerprint();
      log = new ExperienceLog(bootstrap);
      work = Files.createTempDirectory("memgen-hot-swap-test");
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
    return Arc.container().instance(WeaverModel.class).get().follower().orElseThrow();
  }

  /** Writes a fresh memory (weights from {@code seed}) and publishes it as the next version of {@code name}. */
  AdapterStore.Version publish(String name, long seed, String baseFingerprint) throws Exception {
    long next = store.latest(name).map(v -> v.version() + 1).orElse(1L);
    Path dir = work.resolve(name + "-" + next);
    TinyMemory.write(Path.of(modelDir), dir, TinyMemory.everyCharacter(), next, seed);
    AdapterStore.Version v = store.publish(name, dir, next - 1, baseFingerprint, Map.of("accuracy_b", 0.5),
        Map.of("memgen.trajectories-0", 10 * next));
    assertEquals(next, v.version());
    return v;
  }

  AdapterStore.Version publish(String name, long seed) throws Exception {
    return publish(name, seed, fingerprint);
  }

  /** Where version {@code version} of {@code name} was written (the starting memory is "default" v1). */
  Path dirOf(String name, long version) {
    return name.equals("default") && version == 1 ? Path.of(memoryDir) : work.resolve(name + "-" + version);
  }

  /** Announces {@code v} on the adapters topic and waits until the service has acted on it; returns what it did. */
  AdapterFollower.Event announce(AdapterStore.Version v, long rolledBackFrom, String reason) throws Exception {
    AdapterPublished a = AdapterLog.announcement(store, v, AdapterComponent.WEAVER, List.of(), rolledBackFrom, reason);
    long offset = log.publish(Topics.ADAPTERS, AdapterLog.key(a.getAdapterName(), a.getComponent()), a)
        .get(30, TimeUnit.SECONDS).offset();
    long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(30);
    while (System.nanoTime() < deadline) {
      for (AdapterFollower.Event e : follower().status().recent()) {
        if (e.offset() == offset) {
          return e;
        }
      }
      Thread.sleep(20);
    }
    throw new AssertionError("the weaver did not act on " + v.name() + " v" + v.version() + " (offset " + offset
        + ") within 30 s: " + follower().status());
  }

  WeaverLink.Session session(String adapter, String id) {
    return new RemoteWeaver(channel, fingerprint, reasoner.config().hiddenSize(), adapter,
        CallDeadline.of(Duration.ofSeconds(30))).open(id);
  }

  long describe(String adapter) {
    return WeaverGrpc.newBlockingStub(channel).withDeadlineAfter(10, TimeUnit.SECONDS)
        .describe(DescribeRequest.newBuilder().setAdapterName(adapter).build()).getAdapterVersion();
  }

  /** What the memory in {@code dir} weaves in-process for PREFIX (prompt latents), then, those accepted, for MORE. */
  static float[][] inProcess(Path dir) {
    try (Memory m = Memory.load(dir, reasoner, fingerprint)) {
      InProcessMemory.WeaverSession s = new InProcessMemory(reasoner, m).newWeaverSession();
      try {
        s.appendTokens(PREFIX);
        float[] first = s.weave(Weaver.Kind.PROMPT);
        s.acceptLatents();
        s.appendTokens(MORE);
        return new float[][] {first, s.weave(Weaver.Kind.INFERENCE)};
      } finally {
        s.close();
      }
    }
  }

  /** Opens a session on {@code adapter}, checks both its weaves against {@code want}, and returns its version. */
  long weavesLike(String adapter, float[][] want) {
    WeaverLink.Session s = session(adapter, "check-" + adapter);
    try {
      s.appendTokens(PREFIX);
      assertArrayEquals(want[0], s.weave(Weaver.Kind.PROMPT));
      s.acceptLatents();
      s.appendTokens(MORE);
      assertArrayEquals(want[1], s.weave(Weaver.Kind.INFERENCE));
      return s.adapterVersion();
    } finally {
      s.close();
    }
  }

  @Test
  void aRestartedWeaverCatchesUpWithTheLatestAnnouncementOfEachAdapter() throws Exception {
    AdapterStore.Version l1 = publish("late", 91);
    AdapterStore.Version l2 = publish("late", 92);
    announce(l1, 0, "window");
    announce(l2, 0, "window");
    // A second weaver over the same base, started now, as after a restart: it reads the topic from its beginning.
    Path start = Path.of(memoryDir);
    try (WeaverService restarted = new WeaverService(reasoner, fingerprint, ServiceLimits.DEFAULT, 4, "default",
            Memory.load(start, reasoner, fingerprint), start);
        AdapterFollower f = new AdapterFollower(bootstrap, store, work.resolve("restart-cache"), restarted,
            AdapterComponent.WEAVER)) {
      f.start();
      assertTrue(f.awaitCatchUp(Duration.ofSeconds(30)), f.status().toString());
      List<AdapterFollower.Event> events = f.status().recent();
      // Only the last announcement of each adapter is acted on: "late" v1, superseded, is never even copied.
      List<AdapterFollower.Event> late = events.stream().filter(e -> e.name().equals("late")).toList();
      assertEquals(1, late.size(), events.toString());
      assertEquals(2, late.get(0).version());
      assertTrue(late.get(0).loaded(), late.get(0).toString());
      assertEquals(events.size(), events.stream().map(AdapterFollower.Event::name).distinct().count(), events.toString());
      AdapterHost.Adapter current = restarted.adapters().stream()
          .filter(a -> a.name().equals("late") && a.current()).findFirst().orElseThrow();
      assertEquals(2, current.version());
      assertEquals(store.recordSha256("late", 2), current.sha256());
      long defaultNow = describe(""); // whatever the other tests announced, both weavers agree on it
      assertEquals(defaultNow, restarted.adapters().stream()
          .filter(a -> a.name().equals("default") && a.current()).findFirst().orElseThrow().version());
    }
    assertEquals(2, describe("late"));
    assertEquals(2, weavesLike("late", inProcess(dirOf("late", 2))));
  }

  @Test
  void anAnnouncedVersionServesNewSessionsWhileOpenOnesKeepTheirs() throws Exception {
    float[][] want1 = inProcess(dirOf("default", 1));
    WeaverLink.Session before = session("", "before");
    before.appendTokens(PREFIX);
    assertArrayEquals(want1[0], before.weave(Weaver.Kind.PROMPT));
    assertEquals(1, before.adapterVersion());

    AdapterStore.Version v2 = publish("default", 42);
    AdapterFollower.Event e = announce(v2, 0, "window");
    assertTrue(e.loaded(), e.toString());
    assertTrue(e.detail().contains("swapped in (was v1)"), e.detail());
    assertEquals(2, describe(""));

    float[][] want2 = inProcess(dirOf("default", 2));
    assertFalse(Arrays.equals(want1[0], want2[0]), "the versions must weave differently for this test to mean anything");
    assertEquals(2, weavesLike("", want2));

    // The session opened before the swap still weaves with version 1.
    before.acceptLatents();
    before.appendTokens(MORE);
    assertArrayEquals(want1[1], before.weave(Weaver.Kind.INFERENCE));
    assertEquals(1, before.adapterVersion());
    before.close();
  }

  @Test
  void aCorruptedVersionIsRefusedByFileAndThePreviousOneServes() throws Exception {
    AdapterStore.Version v1 = publish("corrupt", 51);
    assertTrue(announce(v1, 0, "window").loaded());
    AdapterStore.Version v2 = publish("corrupt", 52);
    Path blob = store.root().resolve("blobs").resolve("sha256").resolve(v2.files().get(Memory.TENSORS));
    byte[] bytes = Files.readAllBytes(blob);
    bytes[bytes.length - 1] ^= 0x55; // one flipped byte in the last weight
    Files.write(blob, bytes);
    long refusedBefore = follower().status().refused();

    AdapterFollower.Event e = announce(v2, 0, "window");
    assertFalse(e.loaded(), e.toString());
    assertTrue(e.detail().contains("file " + Memory.TENSORS + " is corrupted") && e.detail().contains("still serving v1"),
        e.detail());
    assertEquals(refusedBefore + 1, follower().status().refused());
    assertEquals(1, describe("corrupt"));
    assertEquals(1, weavesLike("corrupt", inProcess(dirOf("corrupt", 1))));
  }

  @Test
  void aVersionForAnotherBaseIsRefused() throws Exception {
    // The files are a valid memory for this base: only the announcement's fingerprint can stop it.
    AdapterStore.Version v = publish("foreign", 61, "sha256:another-base");
    AdapterFollower.Event e = announce(v, 0, "window");
    assertFalse(e.loaded(), e.toString());
    assertTrue(e.detail().contains("another base model") && e.detail().contains("'sha256:another-base'"), e.detail());
    StatusRuntimeException unknown = assertThrows(StatusRuntimeException.class, () -> describe("foreign"));
    assertEquals(Status.Code.NOT_FOUND, unknown.getStatus().getCode());
    long current = describe(""); // and the service goes on serving
    assertEquals(current, weavesLike("", inProcess(dirOf("default", current))));
  }

  @Test
  void aRollbackAnnouncementGivesNewSessionsTheOlderVersion() throws Exception {
    AdapterStore.Version v1 = publish("rollback", 81);
    AdapterStore.Version v2 = publish("rollback", 82);
    assertTrue(announce(v1, 0, "window").loaded());
    assertTrue(announce(v2, 0, "window").loaded());
    WeaverLink.Session held = session("rollback", "held"); // pins v2 across the rollback
    held.appendTokens(PREFIX);
    float[][] want2 = inProcess(dirOf("rollback", 2));
    assertArrayEquals(want2[0], held.weave(Weaver.Kind.PROMPT));

    AdapterFollower.Event e = announce(v1, 2, "rollback: bad answers");
    assertTrue(e.loaded() && e.detail().contains("a rollback from v2"), e.toString());
    assertEquals(1, describe("rollback"));
    assertEquals(1, weavesLike("rollback", inProcess(dirOf("rollback", 1))));
    held.acceptLatents();
    held.appendTokens(MORE);
    assertArrayEquals(want2[1], held.weave(Weaver.Kind.INFERENCE));
    assertEquals(2, held.adapterVersion());
    held.close();
  }
}
