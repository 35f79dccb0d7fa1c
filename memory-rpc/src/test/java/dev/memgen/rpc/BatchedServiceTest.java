package dev.memgen.rpc;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.memgen.model.Weaver;
import dev.memgen.model.memory.InProcessMemory;
import dev.memgen.model.memory.Memory;
import dev.memgen.model.text.DelimiterTable;
import io.grpc.ManagedChannel;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.Executor;
import java.util.concurrent.TimeUnit;
import java.util.function.IntSupplier;
import java.util.function.Supplier;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * weaver-service and trigger-service run the Weaves and Decides of concurrent sessions as one batched pass, with
 * sessions pinned to two versions of the adapter in the same pass (per-row LoRA): every session gets what it gets
 * from the same memory in process, alone.
 */
class BatchedServiceTest {
  @TempDir static Path tmp;
  static Fixture fx;
  static Memory v3;

  @BeforeAll
  static void setUp() throws Exception {
    fx = new Fixture(tmp);
    TinyMemory.write(fx.baseDir, tmp.resolve("v3"), DelimiterTable.DEFAULT, 3, 6);
    v3 = Memory.load(tmp.resolve("v3"), fx.base, fx.fingerprint);
  }

  @AfterAll
  static void tearDown() {
    v3.close();
    fx.close();
  }

  static final int[][] FIRST = {{1, 2, 3}, {4, 5, 6, 7, 8}, {9, 10}, {11, 12, 13, 14}};
  static final int[][] SECOND = {{20, 21}, {22}, {23, 24, 25}, {26}};

  /** Waits until everything queued on the model thread so far has run. */
  static void drain(Executor model) throws Exception {
    CompletableFuture.runAsync(() -> {}, model).get(30, TimeUnit.SECONDS);
  }

  /** Runs every call at once while the model thread is held, so that they all reach it before any runs. */
  static <T> List<T> together(Executor model, IntSupplier queued, int messagesPerCall, List<Supplier<T>> calls)
      throws Exception {
    CountDownLatch hold = new CountDownLatch(1);
    model.execute(() -> {
      try {
        hold.await(30, TimeUnit.SECONDS);
      } catch (InterruptedException e) {
        Thread.currentThread().interrupt();
      }
    });
    List<CompletableFuture<T>> running = calls.stream().map(CompletableFuture::supplyAsync).toList();
    // Every call's messages (here three: its two buffered appends, latents and tokens, then its weave or decide) cross
    // loopback and queue behind the held task, one task each; on a loaded machine some take a while, so wait for all
    // of them, not for a fixed time.
    RemoteMemoryTest.waitFor(() -> queued.getAsInt() >= messagesPerCall * calls.size());
    hold.countDown();
    List<T> out = new ArrayList<>();
    for (CompletableFuture<T> f : running) {
      out.add(f.get(30, TimeUnit.SECONDS));
    }
    return out;
  }

  @Test
  void concurrentWeavesOnTwoVersionsAreOnePass() throws Exception {
    try (Fixture.Served served = fx.serve(0, ServiceLimits.DEFAULT)) {
      ManagedChannel channel = Fixture.channel(served.port());
      try {
        RemoteWeaver weaver = new RemoteWeaver(channel, fx.fingerprint, fx.base.config().hiddenSize(), "",
            CallDeadline.of(Duration.ofSeconds(30)));
        List<RemoteWeaver.Session> sessions = new ArrayList<>();
        List<Memory> versions = new ArrayList<>();
        for (int i = 0; i < FIRST.length; i++) {
          if (i == 2) { // sessions 0 and 1 keep v2; 2 and 3 open on v3
            served.weaver().install("default", 3, "sha256-of-the-record", tmp.resolve("v3"));
          }
          RemoteWeaver.Session s = weaver.open("s" + i);
          s.appendTokens(FIRST[i]);
          s.weave(Weaver.Kind.PROMPT);
          s.acceptLatents();
          s.appendTokens(SECOND[i]);
          sessions.add(s);
          versions.add(i < 2 ? fx.memory : v3);
        }
        drain(served.weaver().modelExecutor()); // the setup's last pass answers before it is counted: let it finish
        PendingPasses.Passes before = served.weaver().passes();
        List<float[]> remote = together(served.weaver().modelExecutor(), served.weaver()::modelQueue, 3,
            sessions.stream().<Supplier<float[]>>map(s -> () -> s.weave(Weaver.Kind.INFERENCE)).toList());
        PendingPasses.Passes after = served.weaver().passes();
        assertEquals(1, after.passes() - before.passes(), "one pass");
        assertEquals(4, after.items() - before.items(), "carrying the four Weaves");
        for (int i = 0; i < sessions.size(); i++) {
          assertEquals(i < 2 ? 2 : 3, sessions.get(i).adapterVersion());
          InProcessMemory.WeaverSession alone = new InProcessMemory(fx.base, versions.get(i)).newWeaverSession();
          alone.appendTokens(FIRST[i]);
          alone.weave(Weaver.Kind.PROMPT);
          alone.acceptLatents();
          alone.appendTokens(SECOND[i]);
          float[] expected = alone.weave(Weaver.Kind.INFERENCE);
          alone.close();
          assertEquals(expected.length, remote.get(i).length);
          for (int j = 0; j < expected.length; j++) {
            assertEquals(expected[j], remote.get(i)[j], 1e-5 * (1 + Math.abs(expected[j])), "session " + i + ", value " + j);
          }
          sessions.get(i).close();
        }
        RemoteMemoryTest.waitFor(() -> served.weaver().openSessions() == 0);
      } finally {
        channel.shutdownNow();
      }
    }
  }

  @Test
  void concurrentDecidesAreOnePass() throws Exception {
    try (Fixture.Served served = fx.serve(0, ServiceLimits.DEFAULT)) {
      ManagedChannel channel = Fixture.channel(served.port());
      try {
        RemoteTrigger trigger = new RemoteTrigger(channel, fx.fingerprint, "", CallDeadline.of(Duration.ofSeconds(30)));
        List<RemoteTrigger.Session> sessions = new ArrayList<>();
        for (int i = 0; i < FIRST.length; i++) {
          RemoteTrigger.Session s = trigger.open("t" + i);
          s.appendTokens(FIRST[i]);
          s.probability();
          s.appendLatents(2);
          s.appendTokens(SECOND[i]);
          sessions.add(s);
        }
        drain(served.trigger().modelExecutor());
        PendingPasses.Passes before = served.trigger().passes();
        List<Float> remote = together(served.trigger().modelExecutor(), served.trigger()::modelQueue, 3,
            sessions.stream().<Supplier<Float>>map(s -> s::probability).toList());
        PendingPasses.Passes after = served.trigger().passes();
        assertEquals(1, after.passes() - before.passes(), "one pass");
        assertEquals(4, after.items() - before.items(), "carrying the four Decides");
        for (int i = 0; i < sessions.size(); i++) {
          InProcessMemory.TriggerSession alone = new InProcessMemory(fx.base, fx.memory).newTriggerSession();
          alone.appendTokens(FIRST[i]);
          alone.appendTokens(SECOND[i]);
          assertEquals(alone.probability(), remote.get(i), 1e-5, "session " + i);
          alone.close();
          sessions.get(i).close();
        }
      } finally {
        channel.shutdownNow();
      }
    }
  }
}
