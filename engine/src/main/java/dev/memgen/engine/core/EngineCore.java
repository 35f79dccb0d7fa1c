package dev.memgen.engine.core;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.index.NDIndex;
import ai.djl.ndarray.types.Shape;
import dev.memgen.model.Decoder;
import dev.memgen.model.Engines;
import dev.memgen.model.KvCache;
import dev.memgen.model.generate.Generator;
import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Deque;
import java.util.List;
import java.util.concurrent.CancellationException;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.atomic.AtomicLong;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Continuous batching over one loaded model: a single engine thread owns decoding. At every step it drops cancelled
 * requests, admits waiting ones up to {@link Limits#maxBatch}, prefills one chunk of the joining prompts (each in a
 * cache of its own, so a long prompt costs the running rows at most one chunk per step), splices every finished
 * prompt into a free row of the batch's {@link KvCache}, then runs one batched decode step for all running rows:
 * pick each row's token with its own sampler, hand it to the row's {@link Output}, retire the rows that are done,
 * and feed the rest (with the latent rows their memory inserts) in one forward call. Rows that come and go leave
 * unused slots behind; the cache is repacked when they would cost attention more than the rows it holds.
 *
 * <p>A request's tokens are what it gets decoding alone: every row keeps its own positions and attends only to its
 * own entries, and its sampler is seeded by its own request. The design follows vLLM v1: this class is the engine
 * core loop and its scheduler, {@link PrefixCache} the part of the KV-cache manager that reuses prefixes.
 */
public final class EngineCore implements AutoCloseable {
  private static final Logger LOG = LoggerFactory.getLogger(EngineCore.class);

  /**
   * @param maxBatch rows decoded together
   * @param maxQueue requests that may wait for a row; beyond it {@link #submit} refuses ({@link EngineOverloadedException})
   * @param prefillChunk prompt tokens prefilled per step (across joining requests)
   * @param prefixCacheTokens tokens of finished sequences kept for prefix reuse (0: off)
   */
  public record Limits(int maxBatch, int maxQueue, int prefillChunk, int prefixCacheTokens) {
    public static final Limits DEFAULT = new Limits(16, 64, 256, 8192);

    public Limits {
      if (maxBatch < 1 || maxQueue < 0 || prefillChunk < 1 || prefixCacheTokens < 0) {
        throw new IllegalArgumentException("engine limits need max-batch >= 1, max-queue >= 0, prefill-chunk >= 1 and "
            + "prefix-cache-tokens >= 0, got " + maxBatch + ", " + maxQueue + ", " + prefillChunk + ", " + prefixCacheTokens);
      }
    }
  }

  /** Where a request's output goes. Called on the engine thread: return quickly, never block. */
  public interface Output {
    /** A token chosen for the sequence; return false to end it now (finish reason STOPPED), e.g. on a stop string. */
    boolean onToken(int token);

    /** The sequence ended: its tokens (the stop token included) and why. */
    void onFinished(Generator.Result result);

    /** The sequence ended without a result: cancelled ({@link CancellationException}) or the engine failed. */
    void onFailed(Throwable cause);
  }

  /** A request in the engine. */
  public interface Submission {
    /** Ends the request at the next step; its output gets {@link Output#onFailed} with a CancellationException. */
    void cancel();
  }

  /** What the engine is doing and has done. */
  public record Stats(int running, int prefilling, int waiting, int rows, long steps, long tokens, long prefillTokens,
      long reusedPrefixTokens, long repacks) {}

  private final Decoder decoder;
  private final Limits limits;
  private final int vocab;
  private final int hidden;
  private final LinkedBlockingQueue<Sequence> waiting;
  private final Deque<Sequence> prefilling = new ArrayDeque<>();
  private final PrefixCache prefixes;
  private final NDManager manager;
  private final Thread thread;
  private volatile boolean closed;

  // The batch: engine thread only.
  private KvCache cache;
  private Sequence[] lanes;
  private NDArray lasts; // [rows, hidden]: each row's last final-norm hidden state, which picks its next token
  private final AtomicLong steps = new AtomicLong();
  private final AtomicLong tokens = new AtomicLong();
  private final AtomicLong prefillTokens = new AtomicLong();
  private final AtomicLong reusedTokens = new AtomicLong();
  private final AtomicLong repacks = new AtomicLong();
  private volatile int runningCount;
  private volatile int prefillingCount;

  public EngineCore(Decoder decoder, Limits limits, String name) {
    this.decoder = decoder;
    this.limits = limits;
    this.vocab = decoder.config().vocabSize();
    this.hidden = decoder.config().hiddenSize();
    this.waiting = new LinkedBlockingQueue<>(Math.max(1, limits.maxQueue() + limits.maxBatch()));
    this.manager = decoder.manager().newSubManager();
    this.prefixes = new PrefixCache(limits.prefixCacheTokens());
    this.cache = decoder.newCache(1, 64);
    this.lanes = new Sequence[1];
    this.thread = new Thread(this::loop, name);
    thread.setDaemon(true);
    thread.start();
  }

  public Decoder decoder() {
    return decoder;
  }

  public Limits limits() {
    return limits;
  }

  /**
   * Queues a request; its output hears from the engine thread. Refuses a request the model cannot take (an
   * IllegalArgumentException naming the limit) and, when {@code maxQueue} requests already wait, with
   * {@link EngineOverloadedException}.
   *
   * @param memory the request's own insertion rule (row 0 is this request), or null for none
   */
  public Submission submit(Generator.Request request, Generator.Interleaver memory, Output output) {
    check(request);
    if (closed) {
      throw new IllegalStateException("the engine is closed");
    }
    Sequence s = new Sequence(request, memory, output);
    int queued = waiting.size();
    if (queued >= limits.maxQueue() + Math.max(0, limits.maxBatch() - runningCount - prefillingCount) || !waiting.offer(s)) {
      throw new EngineOverloadedException("the engine is at capacity: " + limits.maxBatch() + " rows running and "
          + limits.maxQueue() + " requests waiting (memgen.engine.max-batch, memgen.engine.max-queue); retry later");
    }
    return s;
  }

  /** Submits and waits: the result, or the failure (a CancellationException when cancelled). */
  public CompletableFuture<Generator.Result> generate(Generator.Request request, Generator.Interleaver memory) {
    CompletableFuture<Generator.Result> done = new CompletableFuture<>();
    Submission s = submit(request, memory, new Output() {
      @Override
      public boolean onToken(int token) {
        return true;
      }

      @Override
      public void onFinished(Generator.Result result) {
        done.complete(result);
      }

      @Override
      public void onFailed(Throwable cause) {
        done.completeExceptionally(cause);
      }
    });
    done.whenComplete((r, e) -> {
      if (done.isCancelled()) {
        s.cancel();
      }
    });
    return done;
  }

  /**
   * Decodes every request, request i with row i of {@code memory} (null: none), as many at a time as the engine
   * admits, and returns the results in order: the engine's continuous batching for a batch job (an evaluation, a
   * rollout), where a static batch would wait for its longest answer.
   */
  public List<Generator.Result> generateAll(List<Generator.Request> requests, Generator.Interleaver memory)
      throws InterruptedException {
    java.util.concurrent.Semaphore room = new java.util.concurrent.Semaphore(limits.maxBatch() + limits.maxQueue());
    List<CompletableFuture<Generator.Result>> futures = new ArrayList<>();
    for (int i = 0; i < requests.size(); i++) {
      room.acquire();
      CompletableFuture<Generator.Result> f = generate(requests.get(i), memory == null ? null : new RowOf(memory, i));
      f.whenComplete((r, e) -> room.release());
      futures.add(f);
    }
    List<Generator.Result> out = new ArrayList<>();
    for (CompletableFuture<Generator.Result> f : futures) {
      try {
        out.add(f.get());
      } catch (java.util.concurrent.ExecutionException e) {
        throw e.getCause() instanceof RuntimeException r ? r : new IllegalStateException(e.getCause());
      }
    }
    return out;
  }

  /** This engine as an evaluation's decoding ({@link #generateAll}): batch jobs through continuous batching. */
  public dev.memgen.model.eval.Evaluator.Decoding decoding() {
    return (requests, memory) -> {
      try {
        return generateAll(requests, memory);
      } catch (InterruptedException e) {
        Thread.currentThread().interrupt();
        throw new IllegalStateException("interrupted while decoding", e);
      }
    };
  }

  /** Row {@code row} of a batch's insertion rule, seen as the rule of a one-row request. */
  private record RowOf(Generator.Interleaver batch, int row) implements Generator.Interleaver {
    @Override
    public boolean wantsHidden() {
      return batch.wantsHidden();
    }

    @Override
    public float[] afterPrompt(int ignored, int[] prompt, int room, float[] hidden) {
      return batch.afterPrompt(row, prompt, room, hidden);
    }

    @Override
    public float[] afterToken(int ignored, int token, float[] hidden) {
      return batch.afterToken(row, token, hidden);
    }

    @Override
    public void inserted(int ignored, float[] hidden) {
      batch.inserted(row, hidden);
    }
  }

  public Stats stats() {
    return new Stats(runningCount, prefillingCount, waiting.size(), lanes.length, steps.get(), tokens.get(),
        prefillTokens.get(), reusedTokens.get(), repacks.get());
  }

  private void check(Generator.Request r) {
    int maxPositions = decoder.config().maxPositions();
    if (r.prompt().length + r.maxNewTokens() > maxPositions) {
      throw new IllegalArgumentException("prompt (" + r.prompt().length + " tokens) + max_new_tokens ("
          + r.maxNewTokens() + ") exceeds the model's max_position_embeddings (" + maxPositions + ")");
    }
    for (int id : r.prompt()) {
      if (id < 0 || id >= vocab) {
        throw new IllegalArgumentException("prompt token id " + id + " is outside the vocabulary [0, " + vocab + ")");
      }
    }
  }

  private void loop() {
    // Decoding splits its matrix-vector products itself (Linear): this thread's libtorch work stays on one thread,
    // whatever a training thread in the same process set for its own.
    Engines.computeThreads(1);
    while (!closed) {
      try {
        if (runningCount == 0 && prefilling.isEmpty()) {
          admit(waiting.take()); // idle: sleep until a request comes
        }
        step();
      } catch (InterruptedException e) {
        break;
      } catch (RuntimeException | Error e) {
        LOG.error("engine step failed; failing every request in it", e);
        failAll(e);
      }
    }
    failAll(new CancellationException("the engine closed"));
  }

  /** One engine step: drop cancelled requests, admit, prefill a chunk, decode one token for every running row. */
  private void step() {
    dropCancelled();
    while (runningCount + prefilling.size() < limits.maxBatch()) {
      Sequence s = waiting.poll();
      if (s == null) {
        break;
      }
      admit(s);
    }
    prefillingCount = prefilling.size();
    prefillChunk();
    decode();
    steps.incrementAndGet();
    maybeRepack();
  }

  private void admit(Sequence s) {
    if (s.cancelled) {
      fail(s, new CancellationException("cancelled"));
      return;
    }
    if (s.request.maxNewTokens() == 0) {
      finish(s, Generator.FinishReason.LENGTH);
      return;
    }
    s.state = Sequence.State.PREFILLING;
    int[] prompt = s.request.prompt();
    if (!s.memory.wantsHidden()) { // a memory that reads the prompt's hidden states needs them computed
      PrefixCache.Hit hit = prefixes.lookup(prompt);
      if (hit != null) {
        s.prefill = hit.cache();
        s.prefilled = hit.length();
        s.reusedPrefix = hit.length();
        reusedTokens.addAndGet(hit.length());
      }
    }
    if (s.prefill == null) {
      s.prefill = decoder.newCache(1, prompt.length + 16);
    }
    prefilling.addLast(s);
  }

  private void dropCancelled() {
    for (int i = 0; i < lanes.length; i++) {
      if (lanes[i] != null && lanes[i].cancelled) {
        Sequence s = lanes[i];
        retire(s);
        fail(s, new CancellationException("cancelled"));
      }
    }
    prefilling.removeIf(s -> {
      if (s.cancelled) {
        fail(s, new CancellationException("cancelled"));
        return true;
      }
      return false;
    });
    waiting.removeIf(s -> {
      if (s.cancelled) {
        fail(s, new CancellationException("cancelled"));
        return true;
      }
      return false;
    });
  }

  /**
   * Prefills up to {@code prefillChunk} prompt tokens, oldest request first, the chunks of every joining prompt in
   * one batched call ({@link Decoder#forwardEach}: each in its own cache); finished prompts join the batch. A memory
   * that reads only the prompt's tokens weaves before that call, so its latent rows go in with the prompt's last
   * chunk instead of in a forward call of their own.
   */
  private void prefillChunk() {
    int budget = limits.prefillChunk();
    List<Sequence> chunked = new ArrayList<>();
    List<Integer> chunkTokens = new ArrayList<>();
    List<Sequence> finishing = new ArrayList<>();
    for (Sequence s : prefilling) { // oldest first, as much as the budget takes: the prompts of one step go together
      if (budget <= 0) {
        break;
      }
      int[] prompt = s.request.prompt();
      int n = Math.min(budget, prompt.length - s.prefilled);
      chunked.add(s);
      chunkTokens.add(n);
      if (s.prefilled + n == prompt.length && !s.memory.wantsHidden()) {
        finishing.add(s);
      }
      budget -= n;
    }
    if (chunked.isEmpty()) {
      return;
    }
    float[][] latents = promptLatents(finishing);
    try (NDManager m = manager.newSubManager()) {
      List<NDArray> rows = new ArrayList<>();
      for (int i = 0; i < chunked.size(); i++) {
        Sequence s = chunked.get(i);
        int n = chunkTokens.get(i);
        NDArray chunk = decoder.embed(m, new int[][] {Arrays.copyOfRange(s.request.prompt(), s.prefilled, s.prefilled + n)});
        int at = finishing.indexOf(s);
        float[] inserted = at < 0 ? null : latents[at];
        if (inserted != null) {
          s.plainEntries = s.request.prompt().length;
          chunk = chunk.concat(m.create(inserted, new Shape(1, latentRows(inserted), hidden)), 1);
        }
        rows.add(chunk);
      }
      List<NDArray> states = decoder.forwardEach(chunked.stream().map(s -> s.prefill).toList(), rows, m);
      List<Sequence> done = new ArrayList<>();
      for (int i = 0; i < chunked.size(); i++) {
        Sequence s = chunked.get(i);
        NDArray h = states.get(i);
        int n = chunkTokens.get(i);
        if (s.memory.wantsHidden()) {
          s.promptHidden = concat(s.promptHidden, h.toFloatArray());
        }
        s.prefilled += n;
        prefillTokens.addAndGet(n);
        if (s.prefilled == s.request.prompt().length) {
          setLast(s, h.get(0, h.getShape().get(1) - 1)); // the last token's state, or the last latent's
          done.add(s);
        }
      }
      afterHiddenPrompts(done.stream().filter(s -> s.memory.wantsHidden()).toList());
      for (Sequence s : done) {
        prefilling.remove(s);
        join(s);
      }
    }
    prefillingCount = prefilling.size();
  }

  /**
   * The latent rows each sequence's memory inserts after its prompt (null: none), asked of the memories of the prompts
   * done in this step at once (one weave pass).
   */
  private float[][] promptLatents(List<Sequence> sequences) {
    float[][] answers = new float[sequences.size()][];
    List<Integer> withMemory = new ArrayList<>();
    List<Generator.Interleaver.Prompt> prompts = new ArrayList<>();
    for (int i = 0; i < sequences.size(); i++) {
      Sequence s = sequences.get(i);
      if (!s.hasMemory()) {
        continue;
      }
      int[] prompt = s.request.prompt();
      int room = decoder.config().maxPositions() - prompt.length - s.request.maxNewTokens();
      prompts.add(s.memory instanceof RowOf r ? new Generator.Interleaver.Prompt(r.batch(), r.row(), prompt, room, s.promptHidden)
          : new Generator.Interleaver.Prompt(s.memory, 0, prompt, room, s.promptHidden));
      s.promptHidden = null;
      withMemory.add(i);
    }
    if (prompts.isEmpty()) {
      return answers;
    }
    float[][] asked = Generator.Interleaver.askAfterPrompts(prompts);
    for (int j = 0; j < withMemory.size(); j++) {
      answers[withMemory.get(j)] = asked[j];
    }
    return answers;
  }

  /**
   * For memories that read the prompt's hidden states: they weave once the prompt is computed, and their latent rows
   * go into each sequence's own cache before it joins the batch.
   */
  private void afterHiddenPrompts(List<Sequence> done) {
    float[][] answers = promptLatents(done);
    for (int i = 0; i < done.size(); i++) {
      float[] rows = answers[i];
      if (rows == null) {
        continue;
      }
      Sequence s = done.get(i);
      int k = latentRows(rows);
      s.plainEntries = s.request.prompt().length;
      boolean[][] valid = new boolean[1][k];
      Arrays.fill(valid[0], true);
      try (NDManager m = manager.newSubManager()) {
        NDArray h = decoder.forward(s.prefill, m.create(rows, new Shape(1, k, hidden)), valid);
        s.memory.inserted(0, h.toFloatArray());
        setLast(s, h.get(0, k - 1));
      }
    }
  }

  /** Puts a prefilled sequence into a free row of the batch, growing the batch if every row is taken. */
  private void join(Sequence s) {
    int lane = freeLane();
    if (lane < 0) {
      int rows = Math.min(limits.maxBatch(), Math.max(lanes.length * 2, runningCount + 1));
      int[] keep = new int[rows];
      for (int i = 0; i < rows; i++) {
        keep[i] = i < lanes.length ? i : -1;
      }
      repack(keep);
      lane = freeLane();
    }
    cache.splice(lane, s.prefill, 0);
    s.prefill.close();
    s.prefill = null;
    s.lane = lane;
    s.state = Sequence.State.RUNNING;
    s.spliced = System.nanoTime();
    lanes[lane] = s;
    if (lasts == null) {
      lasts = manager.zeros(new Shape(lanes.length, hidden));
    }
    lasts.set(new NDIndex().addIndices(lane), s.last);
    s.last.close();
    s.last = null;
    runningCount++;
  }

  private int freeLane() {
    for (int i = 0; i < lanes.length; i++) {
      if (lanes[i] == null) {
        return i;
      }
    }
    return -1;
  }

  /** One decode step for every running row. */
  private void decode() {
    List<Sequence> live = running();
    if (live.isEmpty()) {
      return;
    }
    try (NDManager m = manager.newSubManager()) {
      int[] next = choose(live, m);
      List<Sequence> going = new ArrayList<>();
      for (int i = 0; i < live.size(); i++) {
        Sequence s = live.get(i);
        s.tokens.add(next[i]);
        tokens.incrementAndGet();
        boolean more;
        try {
          more = s.output.onToken(next[i]);
        } catch (RuntimeException e) { // a consumer that fails (a client gone) ends its own request only
          LOG.debug("output failed; ending its request", e);
          retire(s);
          fail(s, e);
          continue;
        }
        if (s.request.stopTokens().contains(next[i])) {
          retire(s);
          finish(s, Generator.FinishReason.STOP_TOKEN);
        } else if (s.tokens.size() >= s.request.maxNewTokens()) {
          retire(s);
          finish(s, Generator.FinishReason.LENGTH);
        } else if (!more) {
          retire(s);
          finish(s, Generator.FinishReason.STOPPED);
        } else {
          going.add(s);
        }
      }
      if (!going.isEmpty()) {
        forward(going, m);
      }
    }
  }

  /**
   * Each row's next token from its last hidden state: one head over every row (free rows too: cheaper than picking
   * rows out), one argmax for an all-greedy batch, else per-row samplers.
   */
  private int[] choose(List<Sequence> live, NDManager m) {
    NDArray logits = decoder.logits(lasts); // [rows, vocab], in the engine's manager
    logits.attach(m);
    int[] next = new int[live.size()];
    if (live.stream().allMatch(s -> s.request.sampling().greedy())) {
      long[] argmax = logits.argMax(1).toLongArray();
      for (int i = 0; i < next.length; i++) {
        next[i] = (int) argmax[live.get(i).lane];
      }
      return next;
    }
    float[] all = logits.toFloatArray();
    for (int i = 0; i < next.length; i++) {
      next[i] = live.get(i).sampler.sample(all, live.get(i).lane * vocab, vocab);
    }
    return next;
  }

  /** Feeds the rows their tokens and the latent rows their memory inserts after them. */
  private void forward(List<Sequence> going, NDManager m) {
    int rows = lanes.length;
    int[][] ids = new int[rows][1];
    boolean[][] valid = new boolean[rows][1];
    for (int[] r : ids) {
      r[0] = -1;
    }
    for (Sequence s : going) {
      ids[s.lane][0] = s.tokens.get(s.tokens.size() - 1);
      valid[s.lane][0] = true;
    }
    NDArray embeds = decoder.embed(m, ids);
    boolean readsHidden = going.stream().anyMatch(s -> s.memory.wantsHidden());
    if (readsHidden) {
      // A memory that reads the token's hidden state decides after it is computed: tokens first, then latents.
      NDArray h = decoder.forward(cache, embeds, valid);
      float[] all = h.toFloatArray(); // [rows, 1, hidden]
      replaceLasts(h.squeeze(1));
      float[][] inserts = afterTokens(going, s -> Arrays.copyOfRange(all, s.lane * hidden, (s.lane + 1) * hidden));
      if (Arrays.stream(inserts).anyMatch(r -> r != null)) {
        markLatents(going, inserts);
        insert(inserts, m);
      }
      return;
    }
    float[][] inserts = afterTokens(going, s -> null);
    markLatents(going, inserts);
    int n = 0;
    for (float[] r : inserts) {
      n = r == null ? n : Math.max(n, latentRows(r));
    }
    if (n == 0) {
      replaceLasts(decoder.forward(cache, embeds, valid).squeeze(1));
      return;
    }
    // The token and its latents in one call: rows with fewer latents pad with masked slots.
    float[] flat = new float[rows * n * hidden];
    boolean[][] all = new boolean[rows][1 + n];
    for (int b = 0; b < rows; b++) {
      all[b][0] = valid[b][0];
      if (inserts[b] != null) {
        System.arraycopy(inserts[b], 0, flat, b * n * hidden, inserts[b].length);
        Arrays.fill(all[b], 1, 1 + inserts[b].length / hidden, true);
      }
    }
    NDArray h = decoder.forward(cache, embeds.concat(m.create(flat, new Shape(rows, n, hidden)), 1), all);
    long[] at = new long[rows * hidden]; // each row's last new slot: its token's, or its last latent's
    for (int b = 0; b < rows; b++) {
      java.util.Arrays.fill(at, b * hidden, (b + 1) * hidden, inserts[b] == null ? 0 : inserts[b].length / hidden);
    }
    replaceLasts(h.gather(m.create(at, new Shape(rows, 1, hidden)), 1).squeeze(1));
  }

  /**
   * Latent rows after each row's token, asked of every row's memory at once: the rows that reach an insertion point
   * in this step consult their triggers in one pass and weave in one pass ({@link Generator.Interleaver#askAfterTokens}).
   */
  private float[][] afterTokens(List<Sequence> going, java.util.function.Function<Sequence, float[]> tokenHidden) {
    float[][] inserts = new float[lanes.length][];
    List<Sequence> withMemory = going.stream().filter(Sequence::hasMemory).toList();
    if (withMemory.isEmpty()) {
      return inserts;
    }
    List<Generator.Interleaver.At> rows = new ArrayList<>();
    for (Sequence s : withMemory) {
      int token = s.tokens.get(s.tokens.size() - 1);
      rows.add(s.memory instanceof RowOf r ? new Generator.Interleaver.At(r.batch(), r.row(), token, tokenHidden.apply(s))
          : new Generator.Interleaver.At(s.memory, 0, token, tokenHidden.apply(s)));
    }
    float[][] answers = Generator.Interleaver.askAfterTokens(rows);
    for (int i = 0; i < withMemory.size(); i++) {
      inserts[withMemory.get(i).lane] = answers[i];
    }
    return inserts;
  }

  /** Rows whose stream gets its first latents now: only the entries before them are plain tokens (prefix reuse). */
  private static void markLatents(List<Sequence> going, float[][] inserts) {
    for (Sequence s : going) {
      if (inserts[s.lane] != null && s.plainEntries < 0) {
        s.plainEntries = s.request.prompt().length + s.tokens.size();
      }
    }
  }

  /** Appends each row's latent rows (masked padding for rows with fewer) after their tokens went in. */
  private void insert(float[][] inserts, NDManager m) {
    int rows = lanes.length;
    int n = 0;
    for (float[] r : inserts) {
      n = r == null ? n : Math.max(n, latentRows(r));
    }
    float[] flat = new float[rows * n * hidden];
    boolean[][] valid = new boolean[rows][n];
    for (int b = 0; b < rows; b++) {
      if (inserts[b] != null) {
        System.arraycopy(inserts[b], 0, flat, b * n * hidden, inserts[b].length);
        Arrays.fill(valid[b], 0, inserts[b].length / hidden, true);
      }
    }
    NDArray h = decoder.forward(cache, m.create(flat, new Shape(rows, n, hidden)), valid);
    float[] all = h.toFloatArray(); // [rows, n, hidden]
    for (int b = 0; b < rows; b++) {
      if (inserts[b] != null) {
        Sequence s = lanes[b];
        int k = inserts[b].length / hidden;
        s.memory.inserted(0, Arrays.copyOfRange(all, b * n * hidden, b * n * hidden + k * hidden));
        lasts.set(new NDIndex().addIndices(b), h.get(b, k - 1));
      }
    }
  }

  private int latentRows(float[] rows) {
    if (rows.length == 0 || rows.length % hidden != 0) {
      throw new IllegalArgumentException("latent rows must be k * " + hidden + " floats, got " + rows.length);
    }
    return rows.length / hidden;
  }

  private void replaceLasts(NDArray next) {
    next.attach(manager);
    if (lasts != null) {
      lasts.close();
    }
    lasts = next;
  }

  private void setLast(Sequence s, NDArray row) {
    if (s.last != null) {
      s.last.close();
    }
    row.attach(manager);
    s.last = row;
  }

  private List<Sequence> running() {
    List<Sequence> out = new ArrayList<>();
    for (Sequence s : lanes) {
      if (s != null) {
        out.add(s);
      }
    }
    return out;
  }

  /** Takes a running sequence out of the batch; its keys and values go to the prefix cache first. */
  private void retire(Sequence s) {
    if (s.lane < 0) {
      return;
    }
    if (prefixes.enabled()) {
      prefixes.store(s, cache);
    }
    cache.clearRow(s.lane);
    lanes[s.lane] = null;
    s.lane = -1;
    runningCount--;
  }

  /**
   * Repacks the batch's cache when its slots are mostly unused (rows came and went) or when most rows are free: the
   * live rows keep their order and their entries, packed to the front.
   */
  private void maybeRepack() {
    int live = runningCount;
    int longest = 0;
    for (int i = 0; i < lanes.length; i++) {
      if (lanes[i] != null) {
        longest = Math.max(longest, cache.entries(i));
      }
    }
    boolean sparse = cache.length() > 2 * longest + 64;
    boolean oversized = lanes.length > 1 && live <= lanes.length / 4;
    if (!sparse && !oversized) {
      return;
    }
    int rows = oversized ? Math.max(1, Integer.highestOneBit(Math.max(1, live) * 2 - 1)) : lanes.length;
    int[] keep = new int[rows];
    Arrays.fill(keep, -1);
    int j = 0;
    for (int i = 0; i < lanes.length; i++) {
      if (lanes[i] != null) {
        keep[j++] = i;
      }
    }
    repack(keep);
  }

  /** Rebuilds the cache with row i holding old row {@code keep[i]} (-1: empty). */
  private void repack(int[] keep) {
    KvCache next = cache.repack(keep, 64);
    if (lasts != null) {
      long[] rowsOf = new long[keep.length];
      for (int i = 0; i < keep.length; i++) {
        rowsOf[i] = Math.max(keep[i], 0); // an empty row's stale state is never read
      }
      try (NDManager m = manager.newSubManager()) {
        replaceLasts(lasts.get(m.create(rowsOf)));
      }
    }
    Sequence[] moved = new Sequence[keep.length];
    for (int i = 0; i < keep.length; i++) {
      if (keep[i] >= 0 && keep[i] < lanes.length && lanes[keep[i]] != null) {
        moved[i] = lanes[keep[i]];
        moved[i].lane = i;
      }
    }
    cache.close();
    cache = next;
    lanes = moved;
    repacks.incrementAndGet();
  }

  private void finish(Sequence s, Generator.FinishReason reason) {
    s.state = Sequence.State.FINISHED;
    s.release();
    try {
      s.output.onFinished(s.result(reason));
    } catch (RuntimeException e) {
      LOG.debug("output failed on finish", e);
    }
  }

  private void fail(Sequence s, Throwable cause) {
    s.state = Sequence.State.FINISHED;
    s.release();
    try {
      s.output.onFailed(cause);
    } catch (RuntimeException e) {
      LOG.debug("output failed on failure", e);
    }
  }

  /** After a failed step nothing in flight can be trusted: fail every request and start from an empty batch. */
  private void failAll(Throwable cause) {
    for (Sequence s : running()) {
      fail(s, cause);
    }
    for (Sequence s : prefilling) {
      fail(s, cause);
    }
    prefilling.clear();
    if (closed) {
      Sequence s;
      while ((s = waiting.poll()) != null) {
        fail(s, cause);
      }
    }
    cache.close();
    cache = decoder.newCache(1, 64);
    lanes = new Sequence[1];
    if (lasts != null) {
      lasts.close();
      lasts = null;
    }
    runningCount = 0;
    prefillingCount = 0;
  }

  private static float[] concat(float[] a, float[] b) {
    if (a == null) {
      return b;
    }
    float[] out = Arrays.copyOf(a, a.length + b.length);
    System.arraycopy(b, 0, out, a.length, b.length);
    return out;
  }

  @Override
  public void close() {
    closed = true;
    thread.interrupt();
    try {
      thread.join(10_000);
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
    }
    prefixes.close();
    cache.close();
    manager.close();
  }
}
