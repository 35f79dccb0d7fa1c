package dev.memgen.rpc;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTimeoutPreemptively;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.memgen.model.Decoder;
import dev.memgen.model.Weaver;
import dev.memgen.model.generate.Generator;
import dev.memgen.model.generate.MemGenInterleaver;
import dev.memgen.model.generate.SamplingParams;
import dev.memgen.model.memory.InProcessMemory;
import dev.memgen.model.memory.TriggerLink;
import dev.memgen.model.memory.WeaverLink;
import dev.memgen.model.text.DelimiterTable;
import dev.memgen.proto.v1.WeaverGrpc;
import dev.memgen.proto.v1.WeaverReply;
import dev.memgen.proto.v1.WeaverRequest;
import io.grpc.ManagedChannel;
import io.grpc.Server;
import io.grpc.netty.shaded.io.grpc.netty.NettyServerBuilder;
import io.grpc.stub.StreamObserver;
import java.net.InetSocketAddress;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Random;
import java.util.Set;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The generate loop over gRPC (real Netty on loopback): the same tokens and the same insertions as in-process, and
 * when the weaver dies, stalls or comes back, the request still completes and memory resumes.
 */
class RemoteMemoryTest {
  @TempDir static Path tmp;
  static Fixture fx;
  static Decoder reasoner; // the reasoner's own copy of the base, as in a separate process
  static DelimiterTable delimiters;

  @BeforeAll
  static void setUp() throws Exception {
    fx = new Fixture(tmp);
    reasoner = Decoder.load(fx.baseDir);
    // Four ids in five are "delimiters", so a random model meets them often.
    delimiters = DelimiterTable.ofTokenIds(reasoner.config().vocabSize(), id -> id % 5 != 0);
  }

  @AfterAll
  static void tearDown() {
    reasoner.close();
    fx.close();
  }

  record Run(List<int[]> tokens, List<MemGenInterleaver.Trace> traces) {}

  static List<Generator.Request> requests(SamplingParams sampling, int newTokens) {
    Random r = new Random(11);
    List<Generator.Request> out = new ArrayList<>();
    for (int len : new int[] {9, 5}) {
      out.add(new Generator.Request(r.ints(len, 0, 256).toArray(), newTokens, sampling, Set.of()));
    }
    return out;
  }

  static Run generate(WeaverLink weaver, TriggerLink trigger, List<Generator.Request> requests,
      MemGenInterleaver.Options options, Generator.Listener listener) {
    List<WeaverLink.Session> ws = new ArrayList<>();
    List<TriggerLink.Session> ts = new ArrayList<>();
    for (int b = 0; b < requests.size(); b++) {
      ws.add(weaver.open("s" + b));
      ts.add(trigger.open("s" + b));
    }
    try (MemGenInterleaver loop = new MemGenInterleaver(ws, ts, delimiters, options)) {
      List<Generator.Result> results = new Generator(reasoner).generate(requests, listener, loop);
      List<MemGenInterleaver.Trace> traces = new ArrayList<>();
      for (int b = 0; b < requests.size(); b++) {
        traces.add(loop.trace(b));
      }
      return new Run(results.stream().map(Generator.Result::tokens).toList(), traces);
    }
  }

  static MemGenInterleaver.Options sampled(long seed) {
    return new MemGenInterleaver.Options(true, 3, MemGenInterleaver.TriggerMode.SAMPLE, 0.5, seed);
  }

  @Test
  void grpcGivesTheSameTokensAndInsertionsAsInProcess() throws Exception {
    InProcessMemory local = new InProcessMemory(reasoner, fx.memory);
    try (Fixture.Served served = fx.serve(0, ServiceLimits.DEFAULT)) {
      ManagedChannel channel = Fixture.channel(served.port());
      try {
        RemoteWeaver weaver = new RemoteWeaver(channel, fx.fingerprint, reasoner.config().hiddenSize(), "", CallDeadline.of(Duration.ofSeconds(30)));
        RemoteTrigger trigger = new RemoteTrigger(channel, fx.fingerprint, "", CallDeadline.of(Duration.ofSeconds(30)));
        for (SamplingParams sampling : List.of(SamplingParams.GREEDY, new SamplingParams(0.9, 40, 0.95, 17L))) {
          List<Generator.Request> reqs = requests(sampling, 40);
          Run inProcess = generate(local.weaver(), local.trigger(), reqs, sampled(5), (row, t, h) -> {});
          Run remote = generate(weaver, trigger, reqs, sampled(5), (row, t, h) -> {});
          for (int b = 0; b < reqs.size(); b++) {
            assertArrayEquals(inProcess.tokens().get(b), remote.tokens().get(b), "row " + b + ", " + sampling);
            assertTrue(inProcess.traces().get(b).matches(remote.traces().get(b), 1e-5f),
                "row " + b + ", " + sampling + ": " + inProcess.traces().get(b) + " vs " + remote.traces().get(b));
          }
          MemGenInterleaver.Trace t = remote.traces().get(0);
          assertTrue(t.insertions().size() >= 2 && t.decisions().stream().anyMatch(d -> !d.invoke()),
              "the case exercises inference insertions and declined decisions: " + t);
          assertTrue(t.skips().getOrDefault(MemGenInterleaver.Skip.WEAVER_UNAVAILABLE, 0) == 0, t.toString());
          assertEquals(fx.memory.manifest().version(), t.triggerVersion(), "the trigger's version, told by its service");
        }
        waitFor(() -> served.weaver().openSessions() == 0 && served.trigger().openSessions() == 0);
      } finally {
        channel.shutdownNow();
      }
    }
  }

  @Test
  void aWeaverReadingHiddenStatesGetsThemOverGrpcAndWeavesAsInProcess() throws Exception {
    InProcessMemory local = new InProcessMemory(reasoner, fx.hiddenMemory);
    try (Fixture.Served served = fx.serve(0, ServiceLimits.DEFAULT, fx.hiddenMemory)) {
      ManagedChannel channel = Fixture.channel(served.port());
      try {
        RemoteWeaver remote = new RemoteWeaver(channel, fx.fingerprint, reasoner.config().hiddenSize(), "", CallDeadline.of(Duration.ofSeconds(30)));
        WeaverLink hidden = id -> remote.open(id, true);
        InProcessMemory embeddingsLocal = new InProcessMemory(reasoner, fx.memory);
        MemGenInterleaver.Options always = new MemGenInterleaver.Options(true, 3, MemGenInterleaver.TriggerMode.INACTIVE, 0.5, 0);
        List<Generator.Request> reqs = requests(SamplingParams.GREEDY, 30);
        Run inProcess = generate(local.weaver(), local.trigger(), reqs, always, (row, t, h) -> {});
        Run overGrpc = generate(hidden, local.trigger(), reqs, always, (row, t, h) -> {});
        Run embeddings = generate(embeddingsLocal.weaver(), local.trigger(), reqs, always, (row, t, h) -> {});
        for (int b = 0; b < reqs.size(); b++) {
          assertArrayEquals(inProcess.tokens().get(b), overGrpc.tokens().get(b), "row " + b);
          assertTrue(inProcess.traces().get(b).matches(overGrpc.traces().get(b), 1e-5f),
              "row " + b + ": " + inProcess.traces().get(b) + " vs " + overGrpc.traces().get(b));
          assertTrue(overGrpc.traces().get(b).insertions().size() >= 2, overGrpc.traces().get(b).toString());
        }
        assertTrue(!Arrays.deepEquals(inProcess.tokens().toArray(), embeddings.tokens().toArray()),
            "reading hidden states is not reading embeddings (the test can fail)");
        // Sessions that do not send hidden states are refused by this weaver.
        WeaverLink.Session wrong = remote.open("wrong", false);
        wrong.appendTokens(new int[] {1, 2});
        MemoryUnavailableException e = assertThrows(MemoryUnavailableException.class, () -> wrong.weave(Weaver.Kind.PROMPT));
        assertTrue(e.getMessage().contains("LAST_HIDDEN_STATES"), e.getMessage());
      } finally {
        channel.shutdownNow();
      }
    }
  }

  @Test
  void killingTheWeaverMidGenerationStillCompletesAndMemoryResumesWhenItIsBack() throws Exception {
    Fixture.Served served = fx.serve(0, ServiceLimits.DEFAULT);
    int port = served.port();
    ManagedChannel channel = Fixture.channel(port);
    try {
      RemoteWeaver weaver = new RemoteWeaver(channel, fx.fingerprint, reasoner.config().hiddenSize(), "", CallDeadline.of(Duration.ofSeconds(30)));
      RemoteTrigger trigger = new RemoteTrigger(channel, fx.fingerprint, "", CallDeadline.of(Duration.ofSeconds(30)));
      MemGenInterleaver.Options always = new MemGenInterleaver.Options(true, 50, MemGenInterleaver.TriggerMode.INACTIVE, 0.5, 0);
      List<Generator.Request> reqs = requests(SamplingParams.GREEDY, 60).subList(0, 1);
      int[] seen = {0};
      Run run = generate(weaver, trigger, reqs, always, (row, token, hidden) -> {
        if (++seen[0] == 20) {
          served.close(); // the weaver's process dies mid-generation
        }
      });
      assertEquals(60, run.tokens().get(0).length, "the request completed");
      MemGenInterleaver.Trace t = run.traces().get(0);
      assertTrue(t.insertions().stream().anyMatch(i -> i.tokenIndex() < 20), "memory worked before the kill: " + t);
      assertTrue(t.insertions().stream().allMatch(i -> i.tokenIndex() <= 20), "and not after: " + t);
      assertTrue(t.skips().getOrDefault(MemGenInterleaver.Skip.WEAVER_UNAVAILABLE, 0) > 0, "skips counted: " + t);

      try (Fixture.Served back = fx.serve(port, ServiceLimits.DEFAULT)) {
        Thread.sleep(5500); // past the longest backoff (5 s)
        Run again = generate(weaver, trigger, reqs, always, (row, token, hidden) -> {});
        MemGenInterleaver.Trace t2 = again.traces().get(0);
        assertTrue(t2.insertions().size() > 5 && !t2.skips().containsKey(MemGenInterleaver.Skip.WEAVER_UNAVAILABLE),
            "reconnected: " + t2);
      }
    } finally {
      channel.shutdownNow();
    }
  }

  @Test
  void aSessionThatLostItsWeaverReplaysItsSequenceToTheNewOne() throws Exception {
    InProcessMemory local = new InProcessMemory(reasoner, fx.memory);
    Fixture.Served served = fx.serve(0, ServiceLimits.DEFAULT);
    int port = served.port();
    ManagedChannel channel = Fixture.channel(port);
    try (WeaverLink.Session here = local.weaver().open("here")) {
      RemoteWeaver remote = new RemoteWeaver(channel, fx.fingerprint, reasoner.config().hiddenSize(), "", CallDeadline.of(Duration.ofSeconds(30)));
      WeaverLink.Session there = remote.open("there");
      for (WeaverLink.Session s : List.of(here, there)) {
        s.appendTokens(new int[] {5, 6, 7});
        s.weave(Weaver.Kind.PROMPT);
        s.acceptLatents();
        s.appendTokens(new int[] {8, 9});
        s.weave(Weaver.Kind.INFERENCE);
        s.acceptLatents();
      }
      served.close();
      there.appendTokens(new int[] {10});
      assertThrows(MemoryUnavailableException.class, () -> there.weave(Weaver.Kind.INFERENCE), "the weaver is gone");
      try (Fixture.Served back = fx.serve(port, ServiceLimits.DEFAULT)) {
        Thread.sleep(300); // past the first backoff
        here.appendTokens(new int[] {10});
        float[] expected = here.weave(Weaver.Kind.INFERENCE);
        float[] replayed = there.weave(Weaver.Kind.INFERENCE); // a new stream: tokens and latent rows replayed
        assertEquals(expected.length, replayed.length);
        for (int i = 0; i < expected.length; i++) {
          assertEquals(expected[i], replayed[i], 1e-4 * (1 + Math.abs(expected[i])), "latent value " + i);
        }
        there.close();
      }
    } finally {
      channel.shutdownNow();
    }
  }

  @Test
  void aStalledWeaverCostsTheDeadlineAndNothingMore() throws Exception {
    // A peer that accepts session streams and never answers: what a wedged weaver looks like from the reasoner.
    Server stalled = NettyServerBuilder.forAddress(new InetSocketAddress("127.0.0.1", 0))
        .addService(new WeaverGrpc.WeaverImplBase() {
          @Override
          public StreamObserver<WeaverRequest> session(StreamObserver<WeaverReply> out) {
            return new StreamObserver<>() {
              @Override public void onNext(WeaverRequest r) {}
              @Override public void onError(Throwable t) {}
              @Override public void onCompleted() {}
            };
          }
        }).build().start();
    ManagedChannel channel = Fixture.channel(stalled.getPort());
    try {
      RemoteWeaver weaver = new RemoteWeaver(channel, fx.fingerprint, reasoner.config().hiddenSize(), "", CallDeadline.of(Duration.ofMillis(300)));
      InProcessMemory local = new InProcessMemory(reasoner, fx.memory);
      MemGenInterleaver.Options always = new MemGenInterleaver.Options(true, 50, MemGenInterleaver.TriggerMode.INACTIVE, 0.5, 0);
      List<Generator.Request> reqs = requests(SamplingParams.GREEDY, 40).subList(0, 1);
      Run run = assertTimeoutPreemptively(Duration.ofSeconds(60),
          () -> generate(weaver, local.trigger(), reqs, always, (row, token, hidden) -> {}));
      assertEquals(40, run.tokens().get(0).length);
      MemGenInterleaver.Trace t = run.traces().get(0);
      assertEquals(List.of(), t.insertions());
      int[] tokens = run.tokens().get(0);
      long points = 1 + java.util.stream.IntStream.range(0, tokens.length - 1).filter(i -> delimiters.isDelimiter(tokens[i])).count();
      assertEquals(points, (long) t.skips().getOrDefault(MemGenInterleaver.Skip.WEAVER_UNAVAILABLE, 0),
          "every insertion point skipped (the first after the deadline, the rest at once): " + t);
      int[] plain = new Generator(reasoner).generate(reqs).get(0).tokens();
      assertArrayEquals(plain, run.tokens().get(0), "without memory the loop is plain decoding");
    } finally {
      channel.shutdownNow();
      stalled.shutdownNow();
    }
  }

  static void waitFor(java.util.function.BooleanSupplier condition) throws InterruptedException {
    long end = System.nanoTime() + TimeUnit.SECONDS.toNanos(10);
    while (!condition.getAsBoolean()) {
      if (System.nanoTime() > end) {
        throw new AssertionError("condition not met within 10 s");
      }
      Thread.sleep(20);
    }
  }
}
