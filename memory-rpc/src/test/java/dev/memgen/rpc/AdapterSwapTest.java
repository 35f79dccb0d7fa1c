package dev.memgen.rpc;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.memgen.model.Decoder;
import dev.memgen.model.Weaver;
import dev.memgen.model.memory.InProcessMemory;
import dev.memgen.model.memory.Memory;
import dev.memgen.model.memory.WeaverLink;
import dev.memgen.model.text.DelimiterTable;
import dev.memgen.proto.v1.DescribeRequest;
import dev.memgen.proto.v1.WeaverGrpc;
import io.grpc.ManagedChannel;
import io.grpc.Server;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.function.BooleanSupplier;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * A weaver serving several named adapters while their versions change (real gRPC on loopback): sessions opened after
 * an install get the new version and its latents, open ones keep weaving with the version they pinned; a version that
 * does not load changes nothing; past the resident bound the least recently used name is unloaded, its native memory
 * freed only once its last session has closed.
 */
class AdapterSwapTest {
  static final String SHA = "0".repeat(64); // install wants a record hash; these directories are not from a store
  static final int[] PREFIX = {72, 105, 33, 7};
  static final int[] MORE = {44, 3, 250};

  @TempDir static Path tmp;
  static Fixture fx;
  static Decoder reasoner; // the reference side's own copy of the base, as in another process
  static Path v1;
  static Path v2;
  static Path b1;
  static Path c1;

  final List<AutoCloseable> open = new ArrayList<>();
  ManagedChannel channel; // to the service of the running test

  @BeforeAll
  static void setUp() throws IOException {
    fx = new Fixture(tmp);
    reasoner = Decoder.load(fx.baseDir);
    v1 = write("v1", 1, 101);
    v2 = write("v2", 2, 102);
    b1 = write("b1", 1, 201);
    c1 = write("c1", 1, 301);
  }

  @AfterAll
  static void tearDown() {
    reasoner.close();
    fx.close();
  }

  @AfterEach
  void closeAll() throws Exception {
    for (int i = open.size() - 1; i >= 0; i--) {
      open.get(i).close();
    }
  }

  static Path write(String dir, long version, long seed) throws IOException {
    Path out = tmp.resolve(dir);
    TinyMemory.write(fx.baseDir, out, DelimiterTable.DEFAULT, version, seed);
    return out;
  }

  /** A service (default adapter from {@code dir}, owned) behind its own server, and a channel to it. */
  WeaverService serve(Path dir, int maxResident) throws IOException {
    WeaverService service = new WeaverService(fx.base, fx.fingerprint, ServiceLimits.DEFAULT, maxResident, "a",
        Memory.load(dir, fx.base, fx.fingerprint), dir);
    Server server = Fixture.server(0, service);
    ManagedChannel channel = Fixture.channel(server.getPort());
    open.add(service);
    open.add(() -> server.shutdownNow().awaitTermination(5, TimeUnit.SECONDS));
    open.add(() -> channel.shutdownNow().awaitTermination(5, TimeUnit.SECONDS));
    this.channel = channel;
    return service;
  }

  WeaverLink.Session remote(String adapter, String id) {
    return new RemoteWeaver(channel, fx.fingerprint, fx.base.config().hiddenSize(), adapter,
        CallDeadline.of(Duration.ofSeconds(30))).open(id);
  }

  /** What memory {@code dir} weaves in-process for PREFIX (prompt latents), then, those accepted, MORE (inference). */
  static float[][] inProcess(Path dir) {
    try (Memory m = Memory.load(dir, reasoner, fx.fingerprint)) {
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

  static void await(String what, BooleanSupplier condition) throws InterruptedException {
    long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(10);
    while (!condition.getAsBoolean()) {
      assertTrue(System.nanoTime() < deadline, "timed out waiting until " + what);
      Thread.sleep(10);
    }
  }

  static boolean released(Memory m) {
    return m.tensors().values().iterator().next().isReleased();
  }

  static AdapterHost.Adapter row(WeaverService s, String name, boolean current) {
    return s.adapters().stream().filter(a -> a.name().equals(name) && a.current() == current).findFirst().orElse(null);
  }

  long describe(String name) {
    return WeaverGrpc.newBlockingStub(channel).withDeadlineAfter(10, TimeUnit.SECONDS)
        .describe(DescribeRequest.newBuilder().setAdapterName(name).build()).getAdapterVersion();
  }

  @Test
  void newSessionsGetTheInstalledVersionWhileOpenOnesKeepTheirs() throws Exception {
    WeaverService service = serve(v1, 4);
    float[][] want1 = inProcess(v1);
    float[][] want2 = inProcess(v2);
    assertFalse(Arrays.equals(want1[0], want2[0]), "the two versions must weave differently for this test to mean anything");

    WeaverLink.Session before = remote("", "before");
    before.appendTokens(PREFIX);
    assertArrayEquals(want1[0], before.weave(Weaver.Kind.PROMPT));
    assertEquals(1, before.adapterVersion());
    Memory first = service.adapters.loaded("a").memory;

    AdapterHost.Installed done = service.install("a", 2, SHA, v2);
    assertTrue(done.swapped(), done.toString());
    assertEquals(1, done.previous());
    assertEquals(2, describe(""));

    // The session opened before the swap goes on with version 1, past the swap.
    before.acceptLatents();
    before.appendTokens(MORE);
    assertArrayEquals(want1[1], before.weave(Weaver.Kind.INFERENCE));
    assertFalse(released(first), "version 1 must stay loaded while a session weaves with it");
    assertEquals(1, row(service, "a", false).sessions());

    WeaverLink.Session after = remote("a", "after");
    after.appendTokens(PREFIX);
    assertArrayEquals(want2[0], after.weave(Weaver.Kind.PROMPT));
    assertEquals(2, after.adapterVersion());
    after.acceptLatents();
    after.appendTokens(MORE);
    assertArrayEquals(want2[1], after.weave(Weaver.Kind.INFERENCE));

    before.close();
    await("version 1's last session has closed", () -> row(service, "a", false) == null);
    assertTrue(released(first), "version 1's native memory must be freed with its last session");
    after.close();
    await("every session has closed", () -> service.openSessions() == 0);

    // Installing the same version again is a no-op; a version that does not load changes nothing.
    assertTrue(service.install("a", 2, SHA, v2).alreadyCurrent());
    Path broken = tmp.resolve("broken");
    Files.createDirectories(broken);
    Files.copy(v2.resolve("manifest.json"), broken.resolve("manifest.json"));
    Files.write(broken.resolve(Memory.TENSORS), new byte[] {1, 2, 3});
    IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> service.install("a", 3, SHA, broken));
    assertTrue(e.getMessage().contains("'a' v3") && e.getMessage().contains(broken.toString()), e.getMessage());
    assertEquals(2, describe("a"));
    WeaverLink.Session still = remote("", "still");
    still.appendTokens(PREFIX);
    assertArrayEquals(want2[0], still.weave(Weaver.Kind.PROMPT));
    assertEquals(2, still.adapterVersion());
    still.close();
  }

  @Test
  void evictsTheLeastRecentlyUsedNameButNeverUnderAnOpenSession() throws Exception {
    WeaverService service = serve(v1, 2);
    assertFalse(service.install("b", 1, SHA, b1).swapped()); // b and c are checked, not kept loaded: no session wants them
    service.install("c", 1, SHA, c1);
    assertFalse(row(service, "b", true).loaded());
    float[][] wantA = inProcess(v1);

    WeaverLink.Session sa = remote("a", "sa");
    sa.appendTokens(PREFIX);
    assertArrayEquals(wantA[0], sa.weave(Weaver.Kind.PROMPT));
    WeaverLink.Session sb = remote("b", "sb"); // loaded on demand: a and b resident, a the least recently used
    sb.appendTokens(PREFIX);
    assertArrayEquals(inProcess(b1)[0], sb.weave(Weaver.Kind.PROMPT));
    sb.close();
    await("sb has closed", () -> service.openSessions() == 1);
    Memory memA = service.adapters.loaded("a").memory;
    Memory memB = service.adapters.loaded("b").memory;

    WeaverLink.Session sc = remote("c", "sc"); // a third name: a is unloaded, but sa still weaves with it
    sc.appendTokens(PREFIX);
    sc.weave(Weaver.Kind.PROMPT);
    assertFalse(row(service, "a", true).loaded());
    assertEquals(1, row(service, "a", false).sessions());
    assertEquals(2, service.adapters().stream().filter(a -> a.loaded() && a.current()).count());
    assertFalse(released(memA), "an unloaded version must stay in memory under an open session");
    sa.acceptLatents();
    sa.appendTokens(MORE);
    assertArrayEquals(wantA[1], sa.weave(Weaver.Kind.INFERENCE));

    sa.close();
    await("a's last session has closed", () -> row(service, "a", false) == null);
    assertTrue(released(memA), "the unloaded version's memory must be freed with its last session");

    // a is loaded again from its directory when asked for; b, now the least recently used and idle, is freed at once.
    WeaverLink.Session again = remote("a", "again");
    again.appendTokens(PREFIX);
    assertArrayEquals(wantA[0], again.weave(Weaver.Kind.PROMPT));
    assertTrue(released(memB));
    assertFalse(row(service, "b", true).loaded());
    assertNotNull(service.adapters.loaded("c"));
    again.close();
    sc.close();

    StatusRuntimeException unknown = assertThrows(StatusRuntimeException.class, () -> describe("zzz"));
    assertEquals(Status.Code.NOT_FOUND, unknown.getStatus().getCode());
    assertTrue(unknown.getStatus().getDescription().contains("'a', 'b', 'c'"), unknown.getStatus().getDescription());
  }
}
