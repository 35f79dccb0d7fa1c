package dev.memgen.model.generate;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDArrays;
import ai.djl.ndarray.NDList;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.Shape;
import dev.memgen.model.Decoder;
import dev.memgen.model.Reference;
import dev.memgen.model.KvCache;
import dev.memgen.model.Weaver;
import dev.memgen.model.checkpoint.Checkpoint;
import dev.memgen.model.checkpoint.DType;
import dev.memgen.model.checkpoint.TinyCheckpoint;
import dev.memgen.model.memory.InProcessMemory;
import dev.memgen.model.memory.Memory;
import dev.memgen.model.memory.MemoryManifest;
import dev.memgen.model.memory.TriggerLink;
import dev.memgen.model.memory.WeaverLink;
import dev.memgen.model.text.ChatTemplate;
import dev.memgen.model.text.DelimiterTable;
import dev.memgen.model.text.TextTokenizer;
import java.io.IOException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Set;
import java.util.stream.Collectors;
import java.util.stream.IntStream;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The interleaved MemGen loop: latents go where the rule says (prompt boundary, delimiters, cap, trigger), and the
 * incremental loop (latent K/V appended to the cache, the weaver's own prefix cache) generates exactly what a naive
 * loop generates that recomputes everything from scratch after every insertion.
 */
class MemGenLoopTest {
  @TempDir static Path tmp;
  static Decoder base;
  static Memory memory;
  static Memory hiddenMemory;
  static TextTokenizer tokenizer;
  static NDManager m;

  @BeforeAll
  static void setUp() throws Exception {
    Path dir = tmp.resolve("base");
    TinyCheckpoint.write(dir, TinyCheckpoint.tiny("qwen2"), DType.F32, 1, 21);
    String fingerprint = Checkpoint.open(dir).fingerprint();
    Path mem = tmp.resolve("memory");
    Reference.run("memgen_reference.py", "make-memory", "--model", dir.toString(), "--out", mem.toString(),
        "--prompt-k", "3", "--inference-k", "2", "--r", "4", "--alpha", "8", "--fingerprint", fingerprint, "--seed", "4");
    base = Decoder.load(dir);
    memory = Memory.load(mem, base, fingerprint);
    // The same weights, reading the reasoner's last-layer hidden states instead of its input embeddings.
    Path hiddenMem = tmp.resolve("memory-hidden");
    java.nio.file.Files.createDirectories(hiddenMem);
    java.nio.file.Files.copy(mem.resolve(Memory.TENSORS), hiddenMem.resolve(Memory.TENSORS));
    MemoryManifest mf = MemoryManifest.read(mem);
    new MemoryManifest(mf.version(), mf.baseFingerprint(), mf.hiddenSize(), mf.numLayers(), mf.promptK(), mf.inferenceK(),
        "hidden", mf.weaverLora(), mf.triggerLora(), mf.delimiters(), mf.maxInferenceAug()).write(hiddenMem);
    hiddenMemory = Memory.load(hiddenMem, base, fingerprint);
    tokenizer = TextTokenizer.load(dir);
    m = base.manager().newSubManager();
  }

  @AfterAll
  static void tearDown() {
    m.close();
    memory.close();
    hiddenMemory.close();
    tokenizer.close();
    base.close();
  }

  /** Two ids in three are "delimiters", so a random model meets them often (the model is fixed: deterministic). */
  static DelimiterTable manyDelimiters() {
    return DelimiterTable.ofTokenIds(base.config().vocabSize(), id -> id % 3 != 0);
  }

  static int[] prompt() {
    return tokenizer.encode(ChatTemplate.userPrompt("Q: 12+7-5=?"));
  }

  @Test
  void incrementalLoopEqualsNaiveRecomputation() {
    loopEqualsNaiveRecomputation(memory, false);
  }

  @Test
  void withHiddenStateInputTheIncrementalLoopEqualsNaiveRecomputation() {
    loopEqualsNaiveRecomputation(hiddenMemory, true);
  }

  void loopEqualsNaiveRecomputation(Memory memory, boolean hiddenInput) {
    DelimiterTable delimiters = manyDelimiters();
    InProcessMemory mem = new InProcessMemory(base, memory);
    int cap = 3;
    int[] prompt = prompt();
    Generator.Result result;
    MemGenInterleaver.Trace trace;
    List<float[]> woven = new ArrayList<>();
    try (MemGenInterleaver loop = new MemGenInterleaver(List.of(recording(mem.weaver().open("s"), woven)),
        java.util.Collections.singletonList(null), delimiters,
        new MemGenInterleaver.Options(true, cap, MemGenInterleaver.TriggerMode.INACTIVE, 0.5, 0))) {
      result = new Generator(base).generate(List.of(new Generator.Request(prompt, 24, SamplingParams.GREEDY, Set.of())),
          (row, token, hidden) -> {}, loop).get(0);
      trace = loop.trace(0);
    }
    assertEquals(1 + cap, trace.insertions().size(), "prompt latents + the cap of inference latents: " + trace);
    assertEquals(Weaver.Kind.PROMPT, trace.insertions().get(0).kind());
    assertEquals(prompt.length, trace.insertions().get(0).position());

    // The naive loop: the whole stream (tokens and latents) recomputed from scratch for every token and every weave.
    List<Object> stream = new ArrayList<>();
    Arrays.stream(prompt).forEach(stream::add);
    List<Integer> positions = new ArrayList<>();
    positions.add(stream.size());
    List<float[]> naiveWoven = new ArrayList<>();
    naiveWoven.add(naiveWeave(memory, hiddenInput, stream, Weaver.Kind.PROMPT));
    addRows(stream, naiveWoven.get(0));
    List<Integer> generated = new ArrayList<>();
    int inference = 0;
    for (int t = 0; t < 24; t++) {
      int next = naiveNextToken(stream);
      generated.add(next);
      if (t == 23) {
        break;
      }
      stream.add(next);
      if (delimiters.isDelimiter(next) && inference < cap) {
        positions.add(stream.size());
        naiveWoven.add(naiveWeave(memory, hiddenInput, stream, Weaver.Kind.INFERENCE));
        addRows(stream, naiveWoven.get(naiveWoven.size() - 1));
        inference++;
      }
    }
    assertArrayEquals(generated.stream().mapToInt(Integer::intValue).toArray(), result.tokens());
    assertEquals(positions, trace.insertions().stream().map(MemGenInterleaver.Insertion::position).toList());
    assertEquals(naiveWoven.size(), woven.size());
    for (int i = 0; i < woven.size(); i++) { // the latents themselves, not only the tokens they lead to
      float[] want = naiveWoven.get(i);
      float[] got = woven.get(i);
      double scale = 0;
      for (float v : want) {
        scale = Math.max(scale, Math.abs(v));
      }
      for (int j = 0; j < want.length; j++) {
        assertEquals(want[j], got[j], 1e-4 * scale, "weave " + i + ", value " + j);
      }
    }

    int[] plain = new Generator(base).generate(List.of(new Generator.Request(prompt, 24, SamplingParams.GREEDY, Set.of())))
        .get(0).tokens();
    assertTrue(!Arrays.equals(plain, result.tokens()), "memory changes what the model generates (the test can fail)");
  }

  /** Passes everything to {@code inner} and keeps a copy of each weave's latents. */
  static WeaverLink.Session recording(WeaverLink.Session inner, List<float[]> woven) {
    return new WeaverLink.Session() {
      @Override public int k(Weaver.Kind kind) {
        return inner.k(kind);
      }
      @Override public long adapterVersion() {
        return inner.adapterVersion();
      }
      @Override public void appendTokens(int[] ids) {
        inner.appendTokens(ids);
      }
      @Override public float[] weave(Weaver.Kind kind) {
        float[] latents = inner.weave(kind);
        woven.add(latents.clone());
        return latents;
      }
      @Override public void acceptLatents() {
        inner.acceptLatents();
      }
      @Override public boolean readsHiddenStates() {
        return inner.readsHiddenStates();
      }
      @Override public void appendTokens(int[] ids, float[] hiddenStates) {
        inner.appendTokens(ids, hiddenStates);
      }
      @Override public void acceptLatents(float[] hiddenStates) {
        inner.acceptLatents(hiddenStates);
      }
      @Override public void close() {
        inner.close();
      }
    };
  }

  /** A trigger whose probabilities are scripted, to check the rule's decisions exactly. */
  static final class ScriptedTrigger implements TriggerLink.Session {
    final float[] script;
    int asked;
    final List<Integer> seen = new ArrayList<>();

    ScriptedTrigger(float... script) {
      this.script = script;
    }

    @Override
    public void appendTokens(int[] ids) {
      Arrays.stream(ids).forEach(seen::add);
    }

    @Override
    public float probability() {
      return script[asked++ % script.length];
    }

    @Override
    public void close() {}
  }

  @Test
  void triggerDecidesOnlyAtDelimitersAndTheCapHolds() {
    // Without prompt latents this model repeats itself: make its tokens delimiters except the very first one's id.
    int[] plain = new Generator(base).generate(List.of(new Generator.Request(prompt(), 30, SamplingParams.GREEDY, Set.of())))
        .get(0).tokens();
    int notADelimiter = plain[0];
    DelimiterTable delimiters = DelimiterTable.ofTokenIds(base.config().vocabSize(), id -> id != notADelimiter);
    InProcessMemory mem = new InProcessMemory(base, memory);
    ScriptedTrigger trigger = new ScriptedTrigger(0.9f, 0.1f, 0.7f, 0.2f, 0.6f, 0.95f, 0.99f, 0.99f);
    int[] prompt = prompt();
    Generator.Result result;
    MemGenInterleaver.Trace trace;
    try (MemGenInterleaver loop = new MemGenInterleaver(List.of(mem.weaver().open("s")), List.of(trigger), delimiters,
        new MemGenInterleaver.Options(false, 2, MemGenInterleaver.TriggerMode.THRESHOLD, 0.5, 0))) {
      result = new Generator(base).generate(List.of(new Generator.Request(prompt, 30, SamplingParams.GREEDY, Set.of())),
          (row, token, hidden) -> {}, loop).get(0);
      trace = loop.trace(0);
    }
    int fedDelimiters = (int) Arrays.stream(result.tokens()).limit(result.tokens().length - 1).filter(delimiters::isDelimiter).count();
    assertTrue(fedDelimiters >= 4, "the test needs delimiters: " + fedDelimiters);
    // Consulted at delimiters until the cap of 2 insertions; p >= 0.5 invokes: 0.9 yes, 0.1 no, 0.7 yes -> cap reached.
    assertEquals(List.of(0.9f, 0.1f, 0.7f), trace.decisions().stream().map(MemGenInterleaver.Decision::probability).toList());
    assertEquals(List.of(true, false, true), trace.decisions().stream().map(MemGenInterleaver.Decision::invoke).toList());
    assertEquals(2, trace.insertions().size());
    assertTrue(trace.insertions().stream().allMatch(i -> i.kind() == Weaver.Kind.INFERENCE), "no prompt latents when off");
    assertEquals(1, trace.skips().get(MemGenInterleaver.Skip.TRIGGER_DECLINED));
    assertEquals(fedDelimiters - 3, trace.skips().getOrDefault(MemGenInterleaver.Skip.INSERTION_CAP, 0));
    for (MemGenInterleaver.Decision d : trace.decisions()) {
      assertTrue(delimiters.isDelimiter(result.tokens()[d.tokenIndex() - 1]), "decided right after a delimiter: " + d);
    }
    // The trigger read the prompt and the tokens up to the last consultation, never latents.
    List<Integer> expectedSeen = new ArrayList<>();
    Arrays.stream(prompt).forEach(expectedSeen::add);
    int lastDecision = trace.decisions().get(trace.decisions().size() - 1).tokenIndex();
    Arrays.stream(result.tokens()).limit(lastDecision).forEach(expectedSeen::add);
    assertEquals(expectedSeen, trigger.seen);
  }

  @Test
  void aFailingWeaverIsSkippedAndTheRequestCompletes() {
    WeaverLink.Session broken = new WeaverLink.Session() {
      @Override
      public int k(Weaver.Kind kind) {
        return 2;
      }

      @Override
      public long adapterVersion() {
        return 1;
      }

      @Override
      public void appendTokens(int[] ids) {}

      @Override
      public float[] weave(Weaver.Kind kind) {
        throw new IllegalStateException("weaver is down");
      }

      @Override
      public void acceptLatents() {}

      @Override
      public void close() {}
    };
    int[] prompt = prompt();
    try (MemGenInterleaver loop = new MemGenInterleaver(List.of(broken), java.util.Collections.singletonList(null),
        manyDelimiters(), new MemGenInterleaver.Options(true, 3, MemGenInterleaver.TriggerMode.INACTIVE, 0.5, 0))) {
      int[] tokens = new Generator(base).generate(List.of(new Generator.Request(prompt, 16, SamplingParams.GREEDY, Set.of())),
          (row, token, hidden) -> {}, loop).get(0).tokens();
      int[] plain = new Generator(base).generate(List.of(new Generator.Request(prompt, 16, SamplingParams.GREEDY, Set.of())))
          .get(0).tokens();
      assertArrayEquals(plain, tokens, "without memory at every point, the output is the plain model's");
      MemGenInterleaver.Trace trace = loop.trace(0);
      assertTrue(trace.insertions().isEmpty());
      assertTrue(trace.skips().get(MemGenInterleaver.Skip.WEAVER_UNAVAILABLE) >= 2, trace.toString());
    }
  }

  @org.junit.jupiter.params.ParameterizedTest(name = "padding packed: {0}")
  @org.junit.jupiter.params.provider.ValueSource(booleans = {false, true})
  void aBatchWithMemoryGeneratesWhatEachSequenceGeneratesAlone(boolean packed) {
    long bound = Decoder.packPaddingAbove(packed ? 0 : Long.MAX_VALUE);
    try {
      aBatchWithMemoryGeneratesWhatEachSequenceGeneratesAlone();
    } finally {
      Decoder.packPaddingAbove(bound);
    }
  }

  void aBatchWithMemoryGeneratesWhatEachSequenceGeneratesAlone() {
    DelimiterTable delimiters = manyDelimiters();
    InProcessMemory mem = new InProcessMemory(base, memory);
    List<Generator.Request> requests = List.of(
        new Generator.Request(prompt(), 20, SamplingParams.GREEDY, Set.of()),
        new Generator.Request(new int[] {5, 9, 200, 31}, 14, SamplingParams.GREEDY, Set.of()),
        new Generator.Request(new int[] {77, 78}, 20, new SamplingParams(0.8, 0, 1, 3), Set.of()));
    MemGenInterleaver.Options options = new MemGenInterleaver.Options(true, 3, MemGenInterleaver.TriggerMode.SAMPLE, 0.5, 11);
    List<WeaverLink.Session> weavers = new ArrayList<>();
    List<TriggerLink.Session> triggers = new ArrayList<>();
    for (int b = 0; b < requests.size(); b++) {
      weavers.add(mem.weaver().open("b" + b));
      triggers.add(mem.trigger().open("b" + b));
    }
    try (MemGenInterleaver batch = new MemGenInterleaver(weavers, triggers, delimiters, options)) {
      List<Generator.Result> together = new Generator(base).generate(requests, (row, token, hidden) -> {}, batch);
      for (int b = 0; b < requests.size(); b++) {
        // Alone, with the seed the batch gave this row (options.seed() + row).
        MemGenInterleaver.Options own = new MemGenInterleaver.Options(true, 3, MemGenInterleaver.TriggerMode.SAMPLE, 0.5, 11 + b);
        try (MemGenInterleaver alone = new MemGenInterleaver(List.of(mem.weaver().open("a")), List.of(mem.trigger().open("a")),
            delimiters, own)) {
          int[] tokens = new Generator(base).generate(List.of(requests.get(b)), (row, token, hidden) -> {}, alone).get(0).tokens();
          assertArrayEquals(tokens, together.get(b).tokens(), "row " + b);
          assertEquals(alone.trace(0).insertions().stream().map(MemGenInterleaver.Insertion::position).toList(),
              batch.trace(b).insertions().stream().map(MemGenInterleaver.Insertion::position).toList(), "row " + b);
        }
      }
      long distinctSchedules = java.util.stream.IntStream.range(0, requests.size())
          .mapToObj(b -> batch.trace(b).insertions().stream().map(MemGenInterleaver.Insertion::tokenIndex).toList()).distinct().count();
      assertTrue(distinctSchedules > 1, "rows take latents at different steps (padding is exercised)");
    }
  }

  @Test
  void latentsNeverPushTheSequencePastTheContext() {
    int[] prompt = prompt();
    int maxPositions = base.config().maxPositions();
    int newTokens = maxPositions - prompt.length - (3 + 2 + 1); // room for the prompt latents and one inference block
    InProcessMemory mem = new InProcessMemory(base, memory);
    try (MemGenInterleaver loop = new MemGenInterleaver(List.of(mem.weaver().open("s")), java.util.Collections.singletonList(null),
        manyDelimiters(), new MemGenInterleaver.Options(true, 1000, MemGenInterleaver.TriggerMode.INACTIVE, 0.5, 0))) {
      Generator.Result result = new Generator(base).generate(
          List.of(new Generator.Request(prompt, newTokens, SamplingParams.GREEDY, Set.of())), (row, token, hidden) -> {}, loop).get(0);
      assertEquals(newTokens, result.tokens().length, "the request completes");
      MemGenInterleaver.Trace trace = loop.trace(0);
      assertEquals(List.of(3, 2), trace.insertions().stream().map(MemGenInterleaver.Insertion::k).toList(), trace.toString());
      assertTrue(trace.skips().getOrDefault(MemGenInterleaver.Skip.CONTEXT_FULL, 0) > 0, trace.toString());
      MemGenInterleaver.Insertion last = trace.insertions().get(1);
      int lastPosition = last.position() + last.k() + (newTokens - last.tokenIndex()) - 1;
      assertTrue(lastPosition < maxPositions, "the last token's position " + lastPosition + " < " + maxPositions);
    }
  }

  @Test
  void realTriggerProbabilitiesAreRecorded() {
    DelimiterTable delimiters = manyDelimiters();
    InProcessMemory mem = new InProcessMemory(base, memory);
    try (MemGenInterleaver loop = new MemGenInterleaver(List.of(mem.weaver().open("s")), List.of(mem.trigger().open("s")),
        delimiters, new MemGenInterleaver.Options(true, 5, MemGenInterleaver.TriggerMode.SAMPLE, 0.5, 9))) {
      new Generator(base).generate(List.of(new Generator.Request(prompt(), 20, SamplingParams.GREEDY, Set.of())),
          (row, token, hidden) -> {}, loop);
      MemGenInterleaver.Trace trace = loop.trace(0);
      assertTrue(!trace.decisions().isEmpty());
      for (MemGenInterleaver.Decision d : trace.decisions()) {
        assertTrue(d.probability() > 0 && d.probability() < 1, d.toString());
      }
      long invoked = trace.decisions().stream().filter(MemGenInterleaver.Decision::invoke).count();
      assertEquals(invoked + 1, trace.insertions().size(), "every invocation inserted, plus the prompt latents");
    }
  }

  // ---- the naive reference loop -------------------------------------------------------------------------------

  static void addRows(List<Object> stream, float[] latents) {
    int h = base.config().hiddenSize();
    for (int i = 0; i < latents.length / h; i++) {
      stream.add(Arrays.copyOfRange(latents, i * h, (i + 1) * h));
    }
  }

  /** The stream as input-embedding rows {@code [1, n, h]}: tokens embedded, latents as they are. */
  static NDArray rows(List<Object> stream, NDManager into) {
    NDList parts = new NDList();
    for (Object o : stream) {
      parts.add(o instanceof Integer id ? base.embed(into, new int[][] {{id}}) : into.create((float[]) o, new Shape(1, 1, base.config().hiddenSize())));
    }
    return NDArrays.concat(parts, 1);
  }

  static int naiveNextToken(List<Object> stream) {
    try (NDManager s = m.newSubManager(); KvCache cache = base.newCache(1, stream.size())) {
      boolean[][] valid = new boolean[1][stream.size()];
      Arrays.fill(valid[0], true);
      NDArray hidden = base.forward(cache, rows(stream, s), valid);
      return (int) base.logits(hidden.get("0, -1")).argMax().getLong();
    }
  }

  /**
   * A weave from scratch over the whole stream: its input-embedding rows, or (hidden-state input) the reasoner's
   * final-norm hidden states of the whole stream, recomputed from scratch too.
   */
  static float[] naiveWeave(Memory memory, boolean hiddenInput, List<Object> stream, Weaver.Kind kind) {
    try (NDManager s = m.newSubManager(); Weaver.Session w = memory.weaver().newSession(4);
        KvCache cache = base.newCache(1, stream.size())) {
      NDArray rows = rows(stream, s);
      if (hiddenInput) {
        boolean[][] valid = new boolean[1][stream.size()];
        Arrays.fill(valid[0], true);
        rows = base.forward(cache, rows, valid);
      }
      w.append(rows);
      return w.weave(kind, s).toFloatArray();
    }
  }

  static String show(int[] ids) {
    return IntStream.of(ids).mapToObj(String::valueOf).collect(Collectors.joining(","));
  }
}
