package dev.memgen.rpc;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;

import dev.memgen.model.Weaver;
import dev.memgen.model.memory.InProcessMemory;
import dev.memgen.model.memory.WeaverLink;
import io.grpc.ManagedChannel;
import io.grpc.Server;
import java.nio.file.Path;
import java.time.Duration;
import java.util.Random;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** A service's warm-up: synthetic generations through its own handler, bounded, leaving nothing behind. */
class WarmUpTest {
  @TempDir static Path tmp;
  static Fixture fx;

  /** Calls one synthetic generation makes when the context has room: the prompt's, then one per insertion. */
  static final int CALLS_PER_SESSION = WarmUp.INSERTIONS + 1;

  @BeforeAll
  static void setUp() throws Exception {
    fx = new Fixture(tmp);
  }

  @AfterAll
  static void tearDown() {
    fx.close();
  }

  @Test
  void theWeaverMakesTheCallsItIsAllowedAndThenServesAsIfNothingHappened() throws Exception {
    try (WeaverService weaver = new WeaverService(fx.base, fx.memory, fx.fingerprint, "default", ServiceLimits.DEFAULT)) {
      WarmUp.Report r = weaver.warmUp(Duration.ofMinutes(2), 25);
      assertEquals(25, r.calls());
      assertEquals(3, r.sessions(), "25 calls at " + CALLS_PER_SESSION + " per synthetic generation");
      assertEquals(0, weaver.openSessions(), "every synthetic session is closed");

      // A real session afterwards weaves exactly what an in-process weaver does.
      Server server = Fixture.server(0, weaver);
      ManagedChannel channel = Fixture.channel(server.getPort());
      int[] ids = new Random(4).ints(40, 0, fx.base.config().vocabSize()).toArray();
      RemoteWeaver remote = new RemoteWeaver(channel, fx.fingerprint, fx.base.config().hiddenSize(), "",
          CallDeadline.of(Duration.ofSeconds(30)));
      try (WeaverLink.Session overGrpc = remote.open("after-warm-up");
          WeaverLink.Session inProcess = new InProcessMemory(fx.base, fx.memory).newWeaverSession()) {
        for (WeaverLink.Session s : new WeaverLink.Session[] {overGrpc, inProcess}) {
          s.appendTokens(ids);
        }
        assertArrayEquals(inProcess.weave(Weaver.Kind.PROMPT), overGrpc.weave(Weaver.Kind.PROMPT));
      } finally {
        channel.shutdownNow();
        server.shutdownNow().awaitTermination();
      }
    }
  }

  @Test
  void theTriggerMakesTheCallsItIsAllowed() {
    try (TriggerService trigger = new TriggerService(fx.base, fx.memory, fx.fingerprint, "default", 0.5,
        ServiceLimits.DEFAULT)) {
      WarmUp.Report r = trigger.warmUp(Duration.ofMinutes(2), CALLS_PER_SESSION + 1);
      assertEquals(CALLS_PER_SESSION + 1, r.calls());
      assertEquals(2, r.sessions());
      assertEquals(0, trigger.openSessions());
    }
  }

  @Test
  void theCallsReachTheServiceAndARefusalEndsTheWarmUp() {
    // Appends of at most 40 rows: the prompt's 32 tokens pass, the next 46 are refused (INVALID_ARGUMENT).
    try (TriggerService trigger = new TriggerService(fx.base, fx.memory, fx.fingerprint, "default", 0.5,
        new ServiceLimits(4, 0, 40))) {
      assertEquals(1, trigger.warmUp(Duration.ofMinutes(2), 20).calls());
      assertEquals(0, trigger.openSessions());
    }
  }

  @Test
  void aWeaverThatReadsHiddenStatesIsSentRows() {
    try (WeaverService weaver = new WeaverService(fx.base, fx.hiddenMemory, fx.fingerprint, "default",
        ServiceLimits.DEFAULT)) {
      // Without rows the service would refuse the first append (it needs the reasoner's hidden states): 0 calls.
      assertEquals(CALLS_PER_SESSION, weaver.warmUp(Duration.ofMinutes(2), CALLS_PER_SESSION).calls());
    }
  }

  @Test
  void syntheticSessionsStopAtTheSessionLengthLimit() {
    // 100 rows: the prompt (32 tokens + 3 latents) and one insertion (46 + 2) fit, a second would not.
    try (WeaverService weaver = new WeaverService(fx.base, fx.memory, fx.fingerprint, "default",
        new ServiceLimits(4, 100, 8192))) {
      WarmUp.Report r = weaver.warmUp(Duration.ofMinutes(2), 6);
      assertEquals(6, r.calls());
      assertEquals(3, r.sessions(), "two calls per synthetic generation");
    }
  }

  @Test
  void aSessionLengthTooShortForThePromptEndsTheWarmUp() {
    try (TriggerService trigger = new TriggerService(fx.base, fx.memory, fx.fingerprint, "default", 0.5,
        new ServiceLimits(4, WarmUp.PROMPT_TOKENS - 1, 8192))) {
      WarmUp.Report r = trigger.warmUp(Duration.ofMinutes(2), 100);
      assertEquals(0, r.calls());
      assertEquals(1, r.sessions(), "one session tried, not new ones until the budget runs out");
    }
  }

  @Test
  void noBudgetMeansNoWarmUp() {
    try (TriggerService trigger = new TriggerService(fx.base, fx.memory, fx.fingerprint, "default", 0.5,
        ServiceLimits.DEFAULT)) {
      assertEquals(new WarmUp.Report(0, 0, Duration.ZERO), trigger.warmUp(Duration.ZERO, 100));
      assertEquals(0, trigger.warmUp(Duration.ofSeconds(5), 0).calls());
    }
  }

  @Test
  void aWarmUpThatFailsStopsWithoutThrowing() {
    TriggerService trigger = new TriggerService(fx.base, fx.memory, fx.fingerprint, "default", 0.5,
        ServiceLimits.DEFAULT);
    trigger.close(); // its model thread is gone: every message is refused
    assertEquals(0, trigger.warmUp(Duration.ofSeconds(30), 5).calls());
    WeaverService weaver = new WeaverService(fx.base, fx.memory, fx.fingerprint, "default", ServiceLimits.DEFAULT);
    weaver.close(); // the weaver asks how its adapter reads rows first: that is refused too
    assertEquals(0, weaver.warmUp(Duration.ofSeconds(30), 5).calls());
  }

  @Test
  void aClientWarmsUpThePathToARemoteServiceToo() throws Exception {
    try (Fixture.Served served = fx.serve(0, ServiceLimits.DEFAULT)) {
      ManagedChannel channel = Fixture.channel(served.port());
      try {
        RemoteWeaver weaver = new RemoteWeaver(channel, fx.fingerprint, fx.base.config().hiddenSize(), "",
            CallDeadline.of(Duration.ofSeconds(30)));
        RemoteTrigger trigger = new RemoteTrigger(channel, fx.fingerprint, "", CallDeadline.of(Duration.ofSeconds(30)));
        int vocab = fx.base.config().vocabSize();
        int maxLength = fx.base.config().maxPositions();
        assertEquals(15, WarmUp.weaver("weaver", weaver::open, vocab, fx.base.config().hiddenSize(), maxLength,
            Duration.ofMinutes(2), 15).calls());
        assertEquals(15, WarmUp.trigger("trigger", trigger::open, vocab, Fixture.PROMPT_K, Fixture.INFERENCE_K,
            maxLength, Duration.ofMinutes(2), 15).calls());
      } finally {
        channel.shutdownNow();
      }
    }
  }
}
