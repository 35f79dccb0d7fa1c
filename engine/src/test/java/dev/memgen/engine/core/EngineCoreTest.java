package dev.memgen.engine.core;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.memgen.model.Decoder;
import dev.memgen.model.checkpoint.Checkpoint;
import dev.memgen.model.checkpoint.DType;
import dev.memgen.model.checkpoint.TinyCheckpoint;
import dev.memgen.model.generate.Generator;
import dev.memgen.model.generate.MemGenInterleaver;
import dev.memgen.model.generate.SamplingParams;
import dev.memgen.model.memory.InProcessMemory;
import dev.memgen.model.memory.LoraConfig;
import dev.memgen.model.memory.Memory;
import dev.memgen.model.memory.MemoryManifest;
import dev.memgen.model.text.DelimiterTable;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Set;
import java.util.SplittableRandom;
import java.util.concurrent.CancellationException;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.function.Supplier;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Continuous batching changes when a request's rows are computed, never what they compute: every request gets
 * exactly the tokens it gets decoding alone, whatever joins and leaves the batch around it, with and without memory,
 * greedy or seeded sampling, with a reused prefix or without.
 */
class EngineCoreTest {
  @TempDir static Path tmp;
  static Decoder base;
  static InProcessMemory memory;
  static InProcessMemory hiddenMemory;

  @BeforeAll
  static void setUp() throws Exception {
    Path dir = tmp.resolve("base");
    TinyCheckpoint.write(dir, TinyCheckpoint.tiny("qwen2"), DType.F32, 1, 7);
    Checkpoint ckpt = Checkpoint.open(dir);
    base = Decoder.load(dir);
    memory = new InProcessMemory(base, Memory.load(memory(ckpt, "embeddings"), base, ckpt.fingerprint()));
    hiddenMemory = new InProcessMemory(base, Memory.load(memory(ckpt, "hidden"), base, ckpt.fingerprint()));
  }

  private static Path memory(Checkpoint ckpt, String input) throws Exception {
    Path out = tmp.resolve("memory-" + input);
    LoraConfig lora = new LoraConfig(4, 8, LoraConfig.REFERENCE.targets(), 0.0);
    Memory.init(out, ckpt.config(), new MemoryManifest(1, ckpt.fingerprint(), ckpt.config().hiddenSize(),
        ckpt.config().numLayers(), 3, 2, input, lora, lora, DelimiterTable.DEFAULT, 3), 5);
    return out;
  }

  @AfterAll
  static void tearDown() {
    base.close();
  }

  /** Two ids in three are delimiters, so a random model meets many insertion points. */
  static MemGenInterleaver interleaver(InProcessMemory mem) {
    return MemGenInterleaver.inProcess(mem, 1, DelimiterTable.ofTokenIds(base.config().vocabSize(), id -> id % 3 != 0),
        new MemGenInterleaver.Options(true, 3, MemGenInterleaver.TriggerMode.INACTIVE, 0.5, 0));
  }

  static List<Generator.Request> requests(int n, long seed) {
    SplittableRandom r = new SplittableRandom(seed);
    int vocab = base.config().vocabSize();
    List<Generator.Request> out = new ArrayList<>();
    for (int i = 0; i < n; i++) {
      int[] prompt = r.ints(3 + r.nextInt(40), 0, vocab).toArray();
      if (i % 3 == 1) { // an agent's next turn: an earlier prompt and more, so a prefix cache has something to reuse
        int[] earlier = out.get(i - 1).prompt();
        int[] longer = java.util.Arrays.copyOf(earlier, earlier.length + prompt.length);
        System.arraycopy(prompt, 0, longer, earlier.length, prompt.length);
        prompt = longer;
      }
      SamplingParams sampling = i % 3 == 2 ? new SamplingParams(0.9, 0, 0.95, 100 + i) : SamplingParams.GREEDY;
      Set<Integer> stops = i % 4 == 1 ? Set.of(r.nextInt(vocab), r.nextInt(vocab), r.nextInt(vocab)) : Set.of();
      out.add(new Generator.Request(prompt, 1 + r.nextInt(30), sampling, stops));
    }
    return out;
  }

  static Generator.Result alone(Generator.Request req, Generator.Interleaver memory) {
    return new Generator(base).generate(List.of(req), (row, token, hidden) -> {}, memory).get(0);
  }

  /** Submits every request, a few at a time while earlier ones run, and waits for all. */
  static List<Generator.Result> throughEngine(EngineCore engine, List<Generator.Request> reqs,
      Supplier<Generator.Interleaver> memory) throws Exception {
    List<CompletableFuture<Generator.Result>> futures = new ArrayList<>();
    for (int i = 0; i < reqs.size(); i++) {
      if (i % 3 == 1) { // the next turn comes once the previous one is answered; others join a running batch
        futures.get(i - 1).get(60, TimeUnit.SECONDS);
      }
      futures.add(engine.generate(reqs.get(i), memory.get()));
    }
    List<Generator.Result> out = new ArrayList<>();
    for (CompletableFuture<Generator.Result> f : futures) {
      out.add(f.get(60, TimeUnit.SECONDS));
    }
    return out;
  }

  @org.junit.jupiter.params.ParameterizedTest(name = "prefix cache of {0} tokens")
  @org.junit.jupiter.params.provider.ValueSource(ints = {0, 4096})
  void everyRequestGetsTheTokensItGetsAlone(int prefixCacheTokens) throws Exception {
    List<Generator.Request> reqs = requests(14, 1);
    try (EngineCore engine = new EngineCore(base, new EngineCore.Limits(4, 64, 16, prefixCacheTokens), "test-engine")) {
      List<Generator.Result> batched = throughEngine(engine, reqs, () -> null);
      for (int i = 0; i < reqs.size(); i++) {
        Generator.Result a = alone(reqs.get(i), Generator.Interleaver.NONE);
        assertArrayEquals(a.tokens(), batched.get(i).tokens(), "request " + i);
        assertEquals(a.reason(), batched.get(i).reason(), "request " + i);
      }
      EngineCore.Stats s = engine.stats();
      assertTrue(s.repacks() > 0, "rows joined and left, so the cache was grown or repacked: " + s);
      assertTrue(s.steps() < reqs.stream().mapToInt(Generator.Request::maxNewTokens).sum(),
          "rows were decoded together: " + s);
      assertTrue(prefixCacheTokens == 0 ? s.reusedPrefixTokens() == 0 : s.reusedPrefixTokens() > 0, s.toString());
    }
  }

  @Test
  void withMemoryEveryRequestGetsTheTokensAndInsertionsItGetsAlone() throws Exception {
    for (InProcessMemory mem : List.of(memory, hiddenMemory)) {
      List<Generator.Request> reqs = requests(8, 2);
      List<MemGenInterleaver> loops = new ArrayList<>();
      try (EngineCore engine = new EngineCore(base, new EngineCore.Limits(3, 64, 8, 0), "test-engine")) {
        List<Generator.Result> batched = throughEngine(engine, reqs, () -> {
          MemGenInterleaver l = interleaver(mem);
          loops.add(l);
          return l;
        });
        for (int i = 0; i < reqs.size(); i++) {
          try (MemGenInterleaver l = interleaver(mem)) {
            Generator.Result a = alone(reqs.get(i), l);
            assertArrayEquals(a.tokens(), batched.get(i).tokens(), "request " + i);
            assertTrue(l.trace(0).matches(loops.get(i).trace(0), 1e-5f), "request " + i + ": " + l.trace(0) + " vs "
                + loops.get(i).trace(0));
            assertTrue(!l.trace(0).insertions().isEmpty());
          }
        }
      } finally {
        loops.forEach(MemGenInterleaver::close);
      }
    }
  }

  @Test
  void aCachedTurnPrefillsOnlyItsNewTokensAndGivesTheSameTokens() throws Exception {
    int vocab = base.config().vocabSize();
    int[] turn1 = new SplittableRandom(3).ints(60, 0, vocab).toArray();
    try (EngineCore engine = new EngineCore(base, new EngineCore.Limits(4, 8, 32, 4096), "test-engine")) {
      Generator.Result first = engine.generate(new Generator.Request(turn1, 12, SamplingParams.GREEDY, Set.of()), null)
          .get(60, TimeUnit.SECONDS);
      // The next turn re-sends the conversation: the first prompt, the answer, and a new message.
      int[] turn2 = new int[turn1.length + first.tokens().length + 9];
      System.arraycopy(turn1, 0, turn2, 0, turn1.length);
      System.arraycopy(first.tokens(), 0, turn2, turn1.length, first.tokens().length);
      for (int i = turn1.length + first.tokens().length; i < turn2.length; i++) {
        turn2[i] = (i * 7) % vocab;
      }
      Generator.Request next = new Generator.Request(turn2, 16, SamplingParams.GREEDY, Set.of());
      long prefilledBefore = engine.stats().prefillTokens();
      Generator.Result cached = engine.generate(next, null).get(60, TimeUnit.SECONDS);
      EngineCore.Stats s = engine.stats();
      int reusable = turn1.length + first.tokens().length - 1; // every token fed in turn 1 (not its last)
      assertEquals(reusable, s.reusedPrefixTokens(), "the first turn's stream was reused");
      assertEquals(turn2.length - reusable, s.prefillTokens() - prefilledBefore, "only the new tokens were prefilled");
      assertArrayEquals(alone(next, Generator.Interleaver.NONE).tokens(), cached.tokens(), "same tokens as uncached");
    }
  }

  @Test
  void aFullEngineRefusesWithAMessageNamingTheLimits() throws Exception {
    Generator.Request longOne = new Generator.Request(new int[] {1, 2, 3}, 200, SamplingParams.GREEDY, Set.of());
    try (EngineCore engine = new EngineCore(base, new EngineCore.Limits(1, 1, 16, 0), "test-engine")) {
      List<CompletableFuture<Generator.Result>> accepted = new ArrayList<>();
      EngineOverloadedException refused = null;
      for (int i = 0; i < 5 && refused == null; i++) {
        try {
          accepted.add(engine.generate(longOne, null));
        } catch (EngineOverloadedException e) {
          refused = e;
        }
      }
      assertTrue(refused != null, "one row and one queue slot cannot take five requests at once");
      assertTrue(refused.getMessage().contains("memgen.engine.max-queue"), refused.getMessage());
      for (CompletableFuture<Generator.Result> f : accepted) {
        assertEquals(200, f.get(60, TimeUnit.SECONDS).tokens().length, "accepted requests still complete");
      }
    }
  }

  @Test
  void cancelledAndStoppedRequestsFreeTheirRowsAndLeaveTheOthersAlone() throws Exception {
    Generator.Request req = new Generator.Request(new int[] {5, 6, 7, 8}, 40, SamplingParams.GREEDY, Set.of());
    int[] expected = alone(req, Generator.Interleaver.NONE).tokens();
    try (EngineCore engine = new EngineCore(base, new EngineCore.Limits(4, 8, 16, 0), "test-engine")) {
      CountDownLatch started = new CountDownLatch(1);
      CompletableFuture<Throwable> failure = new CompletableFuture<>();
      EngineCore.Submission doomed = engine.submit(req, null, new EngineCore.Output() {
        @Override
        public boolean onToken(int token) {
          started.countDown();
          return true;
        }

        @Override
        public void onFinished(Generator.Result result) {
          failure.complete(null);
        }

        @Override
        public void onFailed(Throwable cause) {
          failure.complete(cause);
        }
      });
      CompletableFuture<Generator.Result> survivor = engine.generate(req, null);
      List<Integer> seen = new ArrayList<>();
      CompletableFuture<Generator.Result> stopped = new CompletableFuture<>();
      engine.submit(req, null, new EngineCore.Output() {
        @Override
        public boolean onToken(int token) {
          seen.add(token);
          return seen.size() < 5; // a consumer that saw what it wanted (a stop string) ends its request
        }

        @Override
        public void onFinished(Generator.Result result) {
          stopped.complete(result);
        }

        @Override
        public void onFailed(Throwable cause) {
          stopped.completeExceptionally(cause);
        }
      });
      CompletableFuture<Generator.Result> throwing = new CompletableFuture<>();
      engine.submit(req, null, new EngineCore.Output() {
        @Override
        public boolean onToken(int token) {
          throw new IllegalStateException("the client went away");
        }

        @Override
        public void onFinished(Generator.Result result) {
          throwing.complete(result);
        }

        @Override
        public void onFailed(Throwable cause) {
          throwing.completeExceptionally(cause);
        }
      });
      started.await(60, TimeUnit.SECONDS);
      doomed.cancel();
      assertInstanceOf(CancellationException.class, failure.get(60, TimeUnit.SECONDS));
      Generator.Result s = stopped.get(60, TimeUnit.SECONDS);
      assertEquals(Generator.FinishReason.STOPPED, s.reason());
      assertArrayEquals(java.util.Arrays.copyOf(expected, 5), s.tokens());
      ExecutionException e = assertThrows(ExecutionException.class, () -> throwing.get(60, TimeUnit.SECONDS));
      assertTrue(e.getCause().getMessage().contains("went away"));
      assertArrayEquals(expected, survivor.get(60, TimeUnit.SECONDS).tokens(), "the other request is unaffected");
      assertEquals(0, engine.stats().running());
    }
  }

  @Test
  void requestsTheModelCannotTakeAreRefusedAtSubmission() {
    try (EngineCore engine = new EngineCore(base, EngineCore.Limits.DEFAULT, "test-engine")) {
      int max = base.config().maxPositions();
      IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> engine.generate(
          new Generator.Request(new int[] {1}, max, SamplingParams.GREEDY, Set.of()), null));
      assertTrue(e.getMessage().contains("max_position_embeddings"), e.getMessage());
      e = assertThrows(IllegalArgumentException.class, () -> engine.generate(
          new Generator.Request(new int[] {base.config().vocabSize()}, 4, SamplingParams.GREEDY, Set.of()), null));
      assertTrue(e.getMessage().contains("outside the vocabulary"), e.getMessage());
    }
  }

  @Test
  void aBatchJobThroughTheEngineEqualsOneStaticBatch() throws Exception {
    List<Generator.Request> reqs = requests(10, 4);
    DelimiterTable delimiters = DelimiterTable.ofTokenIds(base.config().vocabSize(), id -> id % 3 != 0);
    MemGenInterleaver.Options options = new MemGenInterleaver.Options(true, 3, MemGenInterleaver.TriggerMode.INACTIVE, 0.5, 0);
    try (EngineCore engine = new EngineCore(base, new EngineCore.Limits(3, 2, 32, 0), "test-engine");
        MemGenInterleaver viaEngine = MemGenInterleaver.inProcess(memory, reqs.size(), delimiters, options);
        MemGenInterleaver staticBatch = MemGenInterleaver.inProcess(memory, reqs.size(), delimiters, options)) {
      List<Generator.Result> got = engine.generateAll(reqs, viaEngine); // more requests than rows + queue: it waits
      List<Generator.Result> want = new Generator(base).generate(reqs, (row, token, hidden) -> {}, staticBatch);
      for (int i = 0; i < reqs.size(); i++) {
        assertArrayEquals(want.get(i).tokens(), got.get(i).tokens(), "request " + i);
        assertTrue(staticBatch.trace(i).matches(viaEngine.trace(i), 1e-5f), "request " + i + ": " + staticBatch.trace(i)
            + " vs " + viaEngine.trace(i));
      }
    }
  }
}
