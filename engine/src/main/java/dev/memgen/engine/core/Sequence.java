package dev.memgen.engine.core;

import ai.djl.ndarray.NDArray;
import dev.memgen.model.KvCache;
import dev.memgen.model.generate.Generator;
import dev.memgen.model.generate.Sampler;
import java.util.ArrayList;
import java.util.List;

/**
 * One request inside the engine: waiting, then prefilling in a cache of its own, then a row of the running batch,
 * then finished. Touched only by the engine thread, except {@link #cancelled}.
 */
final class Sequence implements EngineCore.Submission {
  enum State { WAITING, PREFILLING, RUNNING, FINISHED }

  final Generator.Request request;
  final Generator.Interleaver memory;
  final EngineCore.Output output;
  final Sampler sampler;
  final long submitted = System.nanoTime();
  final List<Integer> tokens = new ArrayList<>();
  volatile boolean cancelled;

  State state = State.WAITING;
  KvCache prefill; // the prompt's cache while prefilling; spliced into the batch's cache, then closed
  int prefilled; // prompt tokens in the cache so far (a reused prefix counts)
  float[] promptHidden; // the prompt's hidden states, for a memory that reads them
  int reusedPrefix; // prompt tokens whose keys and values came from the prefix cache
  int plainEntries = -1; // cache entries before the first latent row (-1: none went in yet)
  NDArray last; // the final-norm hidden state that picks the next token
  int lane = -1; // the row of the batch's cache, while running
  long spliced; // when the prompt was done and the row joined the batch

  Sequence(Generator.Request request, Generator.Interleaver memory, EngineCore.Output output) {
    this.request = request;
    this.memory = memory == null ? Generator.Interleaver.NONE : memory;
    this.output = output;
    this.sampler = new Sampler(request.sampling());
  }

  @Override
  public void cancel() {
    cancelled = true;
  }

  /** The leading cache entries that are plain tokens, and those tokens: what a later turn may reuse. */
  int[] plainTokens() {
    int[] prompt = request.prompt();
    int n = plainEntries >= 0 ? plainEntries : prompt.length + Math.max(0, tokens.size() - 1); // the last token is never fed
    int[] out = java.util.Arrays.copyOf(prompt, n);
    for (int i = prompt.length; i < n; i++) {
      out[i] = tokens.get(i - prompt.length);
    }
    return out;
  }

  boolean hasMemory() {
    return memory != Generator.Interleaver.NONE;
  }

  /** Frees what the sequence holds in native memory. */
  void release() {
    if (prefill != null) {
      prefill.close();
      prefill = null;
    }
    if (last != null) {
      last.close();
      last = null;
    }
  }

  Generator.Result result(Generator.FinishReason reason) {
    long now = System.nanoTime();
    long joined = spliced == 0 ? now : spliced;
    return new Generator.Result(tokens.stream().mapToInt(Integer::intValue).toArray(), reason, joined - submitted,
        now - joined);
  }
}
