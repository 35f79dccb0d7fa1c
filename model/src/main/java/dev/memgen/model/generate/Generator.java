package dev.memgen.model.generate;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDArrays;
import ai.djl.ndarray.NDList;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.index.NDIndex;
import ai.djl.ndarray.types.Shape;
import dev.memgen.model.Decoder;
import dev.memgen.model.KvCache;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Set;

/**
 * Batched autoregressive decoding with a KV cache. Prompts of different lengths prefill together (padding
 * masked out); then every step feeds each live row its last token. A row stops on its own (a stop token or its
 * token budget), and the batch ends when every row has. An {@link Interleaver} may splice extra rows (latent
 * memory) into any row's stream after its prompt and after any token; they go into the cache in one batched call,
 * never by re-prefilling.
 */
public final class Generator {
  private final Decoder decoder;

  public Generator(Decoder decoder) {
    this.decoder = decoder;
  }

  /** One sequence to continue. */
  public record Request(int[] prompt, int maxNewTokens, SamplingParams sampling, Set<Integer> stopTokens) {
    public Request {
      if (prompt.length == 0) {
        throw new IllegalArgumentException("empty prompt");
      }
      if (maxNewTokens < 0) {
        throw new IllegalArgumentException("max_new_tokens must be >= 0, got " + maxNewTokens);
      }
    }
  }

  /**
   * Why a row ended: a stop token, its budget, or (in the serving engine) its consumer, e.g. when an OpenAI stop
   * string appeared in the text.
   */
  public enum FinishReason { STOP_TOKEN, LENGTH, STOPPED }

  /** The generated tokens (the stop token included when one ended the row) and why the row ended. */
  public record Result(int[] tokens, FinishReason reason, long prefillNanos, long decodeNanos) {}

  /** Sees every token as it is chosen, with the final-norm hidden state that produced it when asked for. */
  public interface Listener {
    default boolean wantsHidden() {
      return false;
    }

    /** @param hidden the last-layer hidden state whose logits chose {@code token}, or null */
    void onToken(int row, int token, float[] hidden);
  }

  /**
   * Splices extra input rows (latent memory) into a row's stream: after its prompt and after any token. The rows
   * are appended to the KV cache in one batched call, take positions, and the last of them predicts the row's next
   * token. Implementations decide where (MemGen: the prompt boundary and delimiters) and produce the rows.
   *
   * <p>An interleaver that {@link #wantsHidden() wants hidden states} also gets the reasoner's final-norm hidden
   * state of every row of the stream: the prompt's and each token's as they are computed, the inserted rows' right
   * after their insertion ({@link #inserted}). Otherwise those arguments are null and nothing is copied.
   */
  public interface Interleaver {
    Interleaver NONE = new Interleaver() {
      @Override
      public float[] afterPrompt(int row, int[] prompt, int room, float[] hidden) {
        return null;
      }

      @Override
      public float[] afterToken(int row, int token, float[] hidden) {
        return null;
      }
    };

    default boolean wantsHidden() {
      return false;
    }

    /**
     * Rows {@code [k * hidden]} (row-major) to insert after row {@code row}'s prompt, or null for none.
     *
     * @param room how many rows the row may take in all (now and after later tokens) without its last token's
     *     position passing the model's context: {@code max_position_embeddings - prompt - max_new_tokens}
     * @param hidden the prompt's hidden states {@code [prompt * hidden]}, or null
     */
    float[] afterPrompt(int row, int[] prompt, int room, float[] hidden);

    /** Rows to insert right after {@code token} (whose hidden state is {@code hidden}, or null) went into row {@code row}. */
    float[] afterToken(int row, int token, float[] hidden);

    /** The rows just inserted into row {@code row} produced these hidden states {@code [k * hidden]}. */
    default void inserted(int row, float[] hidden) {}

    /** Row {@code row} of {@code memory} has just taken {@code token} (with its hidden state, or null). */
    record At(Interleaver memory, int row, int token, float[] hidden) {}

    /** Row {@code row} of {@code memory} has just been prefilled with {@code prompt}; see {@link #afterPrompt}. */
    record Prompt(Interleaver memory, int row, int[] prompt, int room, float[] hidden) {}

    /**
     * Interleavers of one family can be asked together: {@link #afterTokens} and {@link #afterPrompts} of one of them
     * take rows of any. The default family is the interleaver alone.
     */
    default Object family() {
      return this;
    }

    /**
     * {@link #afterToken} for several rows at once, rows of interleavers of this one's family: where memory can, the
     * work of rows that reach an insertion point in the same step runs together (MemGen: one trigger pass and one weave
     * pass for all of them). Entry i is for {@code rows.get(i)}. The default asks row by row.
     */
    default float[][] afterTokens(List<At> rows) {
      float[][] out = new float[rows.size()][];
      for (int i = 0; i < rows.size(); i++) {
        At a = rows.get(i);
        out[i] = a.memory().afterToken(a.row(), a.token(), a.hidden());
      }
      return out;
    }

    /** {@link #afterPrompt} for several rows at once, as {@link #afterTokens}. */
    default float[][] afterPrompts(List<Prompt> rows) {
      float[][] out = new float[rows.size()][];
      for (int i = 0; i < rows.size(); i++) {
        Prompt p = rows.get(i);
        out[i] = p.memory().afterPrompt(p.row(), p.prompt(), p.room(), p.hidden());
      }
      return out;
    }

    /** Asks rows of any interleavers: each family's rows together ({@link #afterTokens}); entry i for rows.get(i). */
    static float[][] askAfterTokens(List<At> rows) {
      return byFamily(rows, At::memory, (first, group) -> first.afterTokens(group));
    }

    /** Asks prompts of any interleavers: each family's together ({@link #afterPrompts}); entry i for rows.get(i). */
    static float[][] askAfterPrompts(List<Prompt> rows) {
      return byFamily(rows, Prompt::memory, (first, group) -> first.afterPrompts(group));
    }

    private static <T> float[][] byFamily(List<T> rows, java.util.function.Function<T, Interleaver> memory,
        java.util.function.BiFunction<Interleaver, List<T>, float[][]> ask) {
      java.util.Map<Object, List<Integer>> families = new java.util.LinkedHashMap<>();
      for (int i = 0; i < rows.size(); i++) {
        families.computeIfAbsent(memory.apply(rows.get(i)).family(), f -> new ArrayList<>()).add(i);
      }
      float[][] out = new float[rows.size()][];
      for (List<Integer> family : families.values()) {
        float[][] answers = ask.apply(memory.apply(rows.get(family.get(0))), family.stream().map(rows::get).toList());
        for (int j = 0; j < family.size(); j++) {
          out[family.get(j)] = answers[j];
        }
      }
      return out;
    }
  }

  public List<Result> generate(List<Request> requests) {
    return generate(requests, (row, token, hidden) -> {});
  }

  public List<Result> generate(List<Request> requests, Listener listener) {
    return generate(requests, listener, Interleaver.NONE);
  }

  public List<Result> generate(List<Request> requests, Listener listener, Interleaver interleaver) {
    int batch = requests.size();
    int vocab = decoder.config().vocabSize();
    int longest = requests.stream().mapToInt(r -> r.prompt().length).max().orElse(0);
    int budget = requests.stream().mapToInt(Request::maxNewTokens).max().orElse(0);
    int maxPositions = decoder.config().maxPositions();
    for (Request r : requests) {
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
    Sampler[] samplers = requests.stream().map(r -> new Sampler(r.sampling())).toArray(Sampler[]::new);
    boolean allGreedy = requests.stream().allMatch(r -> r.sampling().greedy());
    List<List<Integer>> out = new ArrayList<>();
    FinishReason[] reasons = new FinishReason[batch];
    boolean[] done = new boolean[batch];
    for (int b = 0; b < batch; b++) {
      out.add(new ArrayList<>());
      if (requests.get(b).maxNewTokens() == 0) {
        done[b] = true;
        reasons[b] = FinishReason.LENGTH;
      }
    }

    try (NDManager m = decoder.manager().newSubManager();
        KvCache cache = decoder.newCache(batch, longest + budget)) {
      long t0 = System.nanoTime();
      int[][] ids = new int[batch][longest];
      boolean[][] valid = new boolean[batch][longest];
      for (int b = 0; b < batch; b++) {
        Arrays.fill(ids[b], -1);
        int[] p = requests.get(b).prompt();
        System.arraycopy(p, 0, ids[b], 0, p.length);
        Arrays.fill(valid[b], 0, p.length, true);
      }
      NDArray prefilled = decoder.forward(cache, decoder.embed(m, ids), valid);
      NDArray last = lastRows(prefilled, requests);
      boolean wantsHidden = interleaver.wantsHidden();
      int width = decoder.config().hiddenSize();
      float[] promptHidden = wantsHidden ? prefilled.toFloatArray() : null; // [batch, longest, h]
      float[][] inserts = new float[batch][];
      List<Interleaver.Prompt> prompts = new ArrayList<>();
      for (int b = 0; b < batch; b++) {
        int len = requests.get(b).prompt().length;
        if (!done[b]) {
          prompts.add(new Interleaver.Prompt(interleaver, b, requests.get(b).prompt(), maxPositions - len
              - requests.get(b).maxNewTokens(), wantsHidden ? Arrays.copyOfRange(promptHidden, b * longest * width,
              (b * longest + len) * width) : null));
        }
      }
      float[][] answers = prompts.isEmpty() ? new float[0][] : interleaver.afterPrompts(prompts);
      for (int i = 0; i < prompts.size(); i++) {
        inserts[prompts.get(i).row()] = answers[i];
      }
      last = insert(cache, last, inserts, m, interleaver);
      long t1 = System.nanoTime();
      for (int step = 0; step < budget && !allDone(done); step++) {
        try (NDManager s = m.newSubManager()) {
          last.attach(s);
          int[] next = choose(decoder.logits(last), samplers, done, allGreedy, vocab);
          float[] hidden = listener.wantsHidden() ? last.toFloatArray() : null;
          int[][] stepIds = new int[batch][1];
          boolean[][] stepValid = new boolean[batch][1];
          for (int b = 0; b < batch; b++) {
            stepIds[b][0] = -1;
            if (done[b]) {
              continue;
            }
            Request r = requests.get(b);
            out.get(b).add(next[b]);
            listener.onToken(b, next[b], hidden == null ? null : Arrays.copyOfRange(hidden, b * hidden.length / batch,
                (b + 1) * hidden.length / batch));
            if (r.stopTokens().contains(next[b])) {
              done[b] = true;
              reasons[b] = FinishReason.STOP_TOKEN;
            } else if (out.get(b).size() >= r.maxNewTokens()) {
              done[b] = true;
              reasons[b] = FinishReason.LENGTH;
            } else {
              stepIds[b][0] = next[b];
              stepValid[b][0] = true;
            }
          }
          if (allDone(done)) {
            break;
          }
          if (wantsHidden) {
            // The interleaver needs each token's hidden state before it decides: forward the tokens, then the latents.
            NDArray h = decoder.forward(cache, decoder.embed(s, stepIds), stepValid);
            last = h.get(new NDIndex(":, 0"));
            float[] stepHidden = last.toFloatArray(); // [batch, h]
            askAfterTokens(interleaver, stepIds, stepValid, b -> Arrays.copyOfRange(stepHidden, b * width, (b + 1) * width),
                inserts);
            boolean any = Arrays.stream(inserts).anyMatch(r -> r != null);
            if (any) {
              last = insert(cache, last, inserts, s, interleaver);
            }
          } else {
            // The decision needs only the token: the token and its latents go into the cache in one forward call.
            askAfterTokens(interleaver, stepIds, stepValid, b -> null, inserts);
            last = step(cache, decoder.embed(s, stepIds), stepValid, inserts, s);
          }
          last.attach(m);
        }
      }
      long t2 = System.nanoTime();
      List<Result> results = new ArrayList<>();
      for (int b = 0; b < batch; b++) {
        results.add(new Result(out.get(b).stream().mapToInt(Integer::intValue).toArray(),
            reasons[b] == null ? FinishReason.LENGTH : reasons[b], t1 - t0, t2 - t1));
      }
      return results;
    }
  }

  /** Every live row's latents after its token, asked of the interleaver all at once, into {@code inserts}. */
  private static void askAfterTokens(Interleaver interleaver, int[][] ids, boolean[][] live,
      java.util.function.IntFunction<float[]> hidden, float[][] inserts) {
    List<Interleaver.At> rows = new ArrayList<>();
    for (int b = 0; b < ids.length; b++) {
      inserts[b] = null;
      if (live[b][0]) {
        rows.add(new Interleaver.At(interleaver, b, ids[b][0], hidden.apply(b)));
      }
    }
    if (rows.isEmpty()) {
      return;
    }
    float[][] answers = interleaver.afterTokens(rows);
    for (int i = 0; i < rows.size(); i++) {
      inserts[rows.get(i).row()] = answers[i];
    }
  }

  /**
   * Appends each row's latent rows (none for a null entry; rows with fewer are padded with masked slots) in one
   * forward call, and returns the new last hidden state per row: the last inserted row's where rows went in,
   * {@code last}'s otherwise.
   */
  private NDArray insert(KvCache cache, NDArray last, float[][] rows, NDManager m, Interleaver interleaver) {
    int batch = rows.length;
    int hidden = decoder.config().hiddenSize();
    int n = 0;
    for (float[] r : rows) {
      if (r != null) {
        if (r.length == 0 || r.length % hidden != 0) {
          throw new IllegalArgumentException("latent rows must be k * " + hidden + " floats, got " + r.length);
        }
        n = Math.max(n, r.length / hidden);
      }
    }
    if (n == 0) {
      return last;
    }
    float[] flat = new float[batch * n * hidden];
    boolean[][] valid = new boolean[batch][n];
    for (int b = 0; b < batch; b++) {
      if (rows[b] != null) {
        System.arraycopy(rows[b], 0, flat, b * n * hidden, rows[b].length);
        Arrays.fill(valid[b], 0, rows[b].length / hidden, true);
      }
    }
    NDArray h = decoder.forward(cache, m.create(flat, new Shape(batch, n, hidden)), valid);
    if (interleaver.wantsHidden()) {
      float[] all = h.toFloatArray(); // [batch, n, hidden]
      for (int b = 0; b < batch; b++) {
        if (rows[b] != null) {
          interleaver.inserted(b, Arrays.copyOfRange(all, b * n * hidden, b * n * hidden + rows[b].length));
        }
      }
    }
    NDList next = new NDList();
    for (int b = 0; b < batch; b++) {
      next.add(rows[b] == null ? last.get(b) : h.get(new NDIndex("{}, {}", b, rows[b].length / hidden - 1)));
    }
    return NDArrays.stack(next);
  }

  /**
   * One decode step: each live row's token, followed by its latent rows if it has any, in one forward call (rows with
   * fewer are padded with masked slots). Returns each row's last hidden state: its last latent's, or its token's.
   */
  private NDArray step(KvCache cache, NDArray tokens, boolean[][] tokenValid, float[][] latents, NDManager m) {
    int batch = latents.length;
    int hidden = decoder.config().hiddenSize();
    int n = 0;
    for (float[] r : latents) {
      if (r != null) {
        if (r.length == 0 || r.length % hidden != 0) {
          throw new IllegalArgumentException("latent rows must be k * " + hidden + " floats, got " + r.length);
        }
        n = Math.max(n, r.length / hidden);
      }
    }
    if (n == 0) {
      return decoder.forward(cache, tokens, tokenValid).get(new NDIndex(":, 0"));
    }
    float[] flat = new float[batch * n * hidden];
    boolean[][] valid = new boolean[batch][1 + n];
    int[] lastIndex = new int[batch];
    for (int b = 0; b < batch; b++) {
      valid[b][0] = tokenValid[b][0];
      if (latents[b] != null) {
        System.arraycopy(latents[b], 0, flat, b * n * hidden, latents[b].length);
        Arrays.fill(valid[b], 1, 1 + latents[b].length / hidden, true);
        lastIndex[b] = latents[b].length / hidden;
      }
    }
    NDArray rows = tokens.concat(m.create(flat, new Shape(batch, n, hidden)), 1);
    NDArray h = decoder.forward(cache, rows, valid);
    NDList next = new NDList();
    for (int b = 0; b < batch; b++) {
      next.add(h.get(new NDIndex("{}, {}", b, lastIndex[b])));
    }
    return NDArrays.stack(next);
  }

  /** The hidden state at each row's last prompt token: {@code [batch, hidden]}. */
  private static NDArray lastRows(NDArray hidden, List<Request> requests) {
    NDList rows = new NDList();
    for (int b = 0; b < requests.size(); b++) {
      rows.add(hidden.get(new NDIndex("{}, {}", b, requests.get(b).prompt().length - 1)));
    }
    return NDArrays.stack(rows);
  }

  private static int[] choose(NDArray logits, Sampler[] samplers, boolean[] done, boolean allGreedy, int vocab) {
    int batch = samplers.length;
    int[] next = new int[batch];
    if (allGreedy) {
      long[] argmax = logits.argMax(1).toLongArray(); // read back b ids, not b * vocab logits
      for (int b = 0; b < batch; b++) {
        next[b] = (int) argmax[b];
      }
      return next;
    }
    float[] all = logits.toFloatArray();
    for (int b = 0; b < batch; b++) {
      if (!done[b]) {
        next[b] = samplers[b].sample(all, b * vocab, vocab);
      }
    }
    return next;
  }

  private static boolean allDone(boolean[] done) {
    for (boolean d : done) {
      if (!d) {
        return false;
      }
    }
    return true;
  }
}
