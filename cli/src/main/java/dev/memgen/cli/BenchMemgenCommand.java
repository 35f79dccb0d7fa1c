package dev.memgen.cli;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDArrays;
import ai.djl.ndarray.NDList;
import ai.djl.ndarray.NDManager;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.memgen.model.Decoder;
import dev.memgen.model.KvCache;
import dev.memgen.model.ModelConfig;
import dev.memgen.model.Weaver;
import dev.memgen.model.checkpoint.Checkpoint;
import dev.memgen.model.generate.Generator;
import dev.memgen.model.generate.SamplingParams;
import dev.memgen.model.memory.InProcessMemory;
import dev.memgen.model.memory.LoraConfig;
import dev.memgen.model.memory.Memory;
import dev.memgen.model.memory.MemoryManifest;
import dev.memgen.model.memory.TriggerLink;
import dev.memgen.model.memory.WeaverLink;
import dev.memgen.rpc.CallDeadline;
import dev.memgen.rpc.ReasonerMemory;
import dev.memgen.rpc.RemoteTrigger;
import dev.memgen.rpc.RemoteWeaver;
import dev.memgen.rpc.WarmUp;
import io.grpc.ManagedChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Random;
import java.util.Set;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

/**
 * Decode throughput with latent memory against without, at a fixed insertion rate: the incremental MemGen loop
 * (latent K/V appended to the cache, the weaver's own prefix cache) with the weaver and trigger in this process and
 * as separate processes over gRPC, and the reference code's strategy (drop the cache and re-prefill the whole
 * sequence at every insertion, the weaver and trigger re-reading the whole prefix, and no cache at all once the
 * insertion cap is reached: {@code reasoner.generate(use_cache=False)} in the reference's {@code generate}). That last
 * part dominates long answers, so the same strategy with a cached tail is measured too, as a harder baseline. All
 * measured side by side, run by run.
 */
@Command(name = "memgen", mixinStandardHelpOptions = true,
    description = "Measure decode tokens/s: vanilla, MemGen in-process, MemGen over gRPC (weaver and trigger as "
        + "separate processes on loopback), and the re-prefill strategy (medians).")
final class BenchMemgenCommand implements Callable<Integer> {
  /** How long the warm-up of the gRPC path may take, per service. */
  private static final Duration GRPC_WARM_UP = Duration.ofSeconds(60);

  @Option(names = "--model", required = true, description = "Hugging Face checkpoint directory") Path model;

  @Option(names = "--memory", description = "memory directory (default: a fresh one with --k latents)") Path memory;

  @Option(names = "--k", defaultValue = "8", description = "latent rows per insertion for the fresh memory (default ${DEFAULT-VALUE})") int k;

  @Option(names = "--new-tokens", defaultValue = "256", description = "tokens generated per run (default ${DEFAULT-VALUE})") int newTokens;

  @Option(names = "--insertions", defaultValue = "5", description = "inference insertions per run (default ${DEFAULT-VALUE})") int insertions;

  @Option(names = "--runs", defaultValue = "3", description = "measured runs (default ${DEFAULT-VALUE})") int runs;

  @Option(names = "--warmup", defaultValue = "3",
      description = "unmeasured runs first, for the JIT (the gRPC path is also warmed up on its own: "
          + "--grpc-warm-up-calls; default ${DEFAULT-VALUE})")
  int warmup;

  // A run makes only a few calls per service, so warm-up runs alone would leave the gRPC path (this JVM's clients,
  // the sockets, the services' handlers) partly interpreted for hundreds of runs. Measured on the tiny model: after
  // 600 calls a weave over gRPC took 6.4-7.0 ms, after 5000 calls 5.0 ms (in process: 2.7-3.3 ms).
  @Option(names = "--grpc-warm-up-calls", defaultValue = "5000",
      description = "synthetic calls per service that warm up the gRPC path before any run, so that the runs measure "
          + "the steady state of a service that has been serving a while (at most 60 s per service; "
          + "default ${DEFAULT-VALUE})")
  int grpcWarmUpCalls;

  @Option(names = "--grpc", negatable = true, defaultValue = "true", fallbackValue = "true",
      description = "also measure the weaver and trigger as separate processes over gRPC (default: yes; --no-grpc skips)")
  boolean grpc;

  @Override
  public Integer call() throws Exception {
    if (newTokens < 2 || insertions < 0 || runs < 1 || k < 1 || warmup < 0 || grpcWarmUpCalls < 0) {
      throw new IllegalArgumentException("need --new-tokens >= 2, --insertions >= 0, --runs >= 1, --warmup >= 0, --k >= 1, "
          + "--grpc-warm-up-calls >= 0");
    }
    String fingerprint = Checkpoint.open(model).fingerprint();
    try (Decoder decoder = Decoder.load(model)) {
      Path memDir = memory;
      if (memDir == null) {
        memDir = Files.createTempDirectory("memgen-bench-memory");
        deleteOnExit(memDir);
        Memory.init(memDir, decoder.config(), new MemoryManifest(1, fingerprint, decoder.config().hiddenSize(),
            decoder.config().numLayers(), k, k, "embeddings", LoraConfig.REFERENCE, LoraConfig.REFERENCE,
            List.of(",", ".", "\n"), insertions), 0);
      }
      try (Memory mem = Memory.load(memDir, decoder, fingerprint); ChildServices children = new ChildServices()) {
        InProcessMemory links = new InProcessMemory(decoder, mem);
        WeaverLink remoteWeaver = null;
        TriggerLink remoteTrigger = null;
        ManagedChannel weaverChannel = null;
        ManagedChannel triggerChannel = null;
        WarmUp.Report weaverWarmUp = null;
        WarmUp.Report triggerWarmUp = null;
        if (grpc) {
          System.err.println("starting the weaver and trigger as separate processes ...");
          int weaverPort = children.serve("weaver", "--model", model.toString(), "--memory", memDir.toString());
          int triggerPort = children.serve("trigger", "--model", model.toString(), "--memory", memDir.toString());
          weaverChannel = ReasonerMemory.channel("127.0.0.1:" + weaverPort);
          triggerChannel = ReasonerMemory.channel("127.0.0.1:" + triggerPort);
          CallDeadline deadline = CallDeadline.of(Duration.ofSeconds(60));
          RemoteWeaver weaver = new RemoteWeaver(weaverChannel, fingerprint, decoder.config().hiddenSize(), "", deadline);
          RemoteTrigger trigger = new RemoteTrigger(triggerChannel, fingerprint, "", deadline);
          // Each service warmed itself up, over an in-process channel; this warms the rest of the path: this JVM's
          // clients, the sockets, the wire format (see --grpc-warm-up-calls).
          System.err.println("warming up the gRPC path ...");
          ModelConfig c = decoder.config();
          weaverWarmUp = WarmUp.weaver("weaver over gRPC", weaver::open, c.vocabSize(), c.hiddenSize(),
              c.maxPositions(), GRPC_WARM_UP, grpcWarmUpCalls);
          triggerWarmUp = WarmUp.trigger("trigger over gRPC", trigger::open, c.vocabSize(), mem.manifest().promptK(),
              mem.manifest().inferenceK(), c.maxPositions(), GRPC_WARM_UP, grpcWarmUpCalls);
          System.err.printf("warmed up: %d weaves in %d ms, %d trigger calls in %d ms%n", weaverWarmUp.calls(),
              weaverWarmUp.took().toMillis(), triggerWarmUp.calls(), triggerWarmUp.took().toMillis());
          remoteWeaver = weaver;
          remoteTrigger = trigger;
        }
        int[] prompt = new Random(3).ints(32, 0, Math.min(256, decoder.config().vocabSize())).toArray();
        // Both strategies stop inserting at the memory's cap (max_inference_aug), as MemGen itself does.
        int made = Math.min(insertions, mem.manifest().maxInferenceAug());
        if (made < insertions) {
          System.err.printf("the memory allows %d inference insertions per sequence: measuring %d, not %d%n", made, made,
              insertions);
        }
        Set<Integer> insertAfter = new java.util.HashSet<>();
        for (int i = 1; i <= made; i++) {
          insertAfter.add(i * newTokens / (insertions + 1));
        }
        boolean sameTokens = true;
        double[] vanilla = new double[runs];
        double[] inProcess = new double[runs];
        double[] overGrpc = new double[runs];
        double[] reprefill = new double[runs];
        double[] reprefillCachedTail = new double[runs];
        double[][] inProcessCalls = new double[runs][]; // per run: ms per trigger call, per weave
        double[][] grpcCalls = new double[runs][];
        Generator generator = new Generator(decoder);
        Generator.Request request = new Generator.Request(prompt, newTokens, SamplingParams.GREEDY, Set.of());
        // One step per variant: on a 0.5B model a single run of all five takes minutes.
        try (Progress p = new Progress("bench memgen", (warmup + runs) * (grpc ? 5 : 4))) {
          for (int r = -warmup; r < runs; r++) { // r < 0: warm-up
            String run = r < 0 ? "warm-up " + (r + warmup + 1) + "/" + warmup : "run " + (r + 1) + "/" + runs;
            long t0 = System.nanoTime();
            generator.generate(List.of(request));
            long t1 = System.nanoTime();
            p.step(run + ": vanilla " + tps(t0, t1));
            int[] memgenTokens;
            try (Scheduled loop = new Scheduled(links.weaver().open("bench"), links.trigger().open("bench"), insertAfter)) {
              memgenTokens = generator.generate(List.of(request), (row, token, hidden) -> {}, loop).get(0).tokens();
              if (r >= 0) {
                inProcessCalls[r] = loop.callTimes();
              }
            }
            long t2 = System.nanoTime();
            p.step(run + ": MemGen in-process " + tps(t1, t2));
            int[] grpcTokens = memgenTokens;
            if (grpc) {
              try (Scheduled loop = new Scheduled(remoteWeaver.open("bench"), remoteTrigger.open("bench"), insertAfter)) {
                grpcTokens = generator.generate(List.of(request), (row, token, hidden) -> {}, loop).get(0).tokens();
                if (r >= 0) {
                  grpcCalls[r] = loop.callTimes();
                }
              }
            }
            long t3 = System.nanoTime();
            if (grpc) {
              p.step(run + ": MemGen over gRPC " + tps(t2, t3));
            }
            int[] reprefillTokens = reprefillRun(decoder, mem, prompt, newTokens, insertAfter, true);
            long t4 = System.nanoTime();
            p.step(run + ": re-prefill " + tps(t3, t4));
            int[] cachedTailTokens = reprefillRun(decoder, mem, prompt, newTokens, insertAfter, false);
            long t5 = System.nanoTime();
            p.step(run + ": re-prefill with cached tail " + tps(t4, t5));
            // Every strategy does the same work: the same insertions, hence (greedy) the same tokens.
            sameTokens &= Arrays.equals(memgenTokens, grpcTokens) && Arrays.equals(memgenTokens, reprefillTokens)
                && Arrays.equals(memgenTokens, cachedTailTokens);
            if (r >= 0) {
              vanilla[r] = tokensPerSecond(t0, t1);
              inProcess[r] = tokensPerSecond(t1, t2);
              overGrpc[r] = tokensPerSecond(t2, t3);
              reprefill[r] = tokensPerSecond(t3, t4);
              reprefillCachedTail[r] = tokensPerSecond(t4, t5);
            }
          }
        } finally {
          for (ManagedChannel c : new ManagedChannel[] {weaverChannel, triggerChannel}) {
            if (c != null) {
              c.shutdownNow();
            }
          }
        }
        ObjectNode out = Json.object();
        out.put("model", model.toString());
        out.put("new_tokens", newTokens);
        out.put("insertions", made);
        out.put("same_tokens", sameTokens);
        out.put("k", mem.weaver().k(Weaver.Kind.INFERENCE));
        out.put("runs", runs);
        out.put("vanilla_tps", Stats.median(vanilla));
        out.put("memgen_inprocess_tps", Stats.median(inProcess));
        if (grpc) {
          out.put("memgen_grpc_tps", Stats.median(overGrpc));
        } else {
          out.putNull("memgen_grpc_tps");
        }
        out.put("reprefill_tps", Stats.median(reprefill));
        out.put("reprefill_cached_tail_tps", Stats.median(reprefillCachedTail));
        // Ratios are taken run by run (side by side, same minute) and then their median: these VMs' memory
        // bandwidth drifts between runs, which moves every column together.
        out.put("inprocess_vs_vanilla", Stats.median(ratios(inProcess, vanilla)));
        out.put("inprocess_vs_reprefill", Stats.median(ratios(inProcess, reprefill)));
        out.put("inprocess_vs_reprefill_cached_tail", Stats.median(ratios(inProcess, reprefillCachedTail)));
        if (grpc) {
          out.put("grpc_vs_vanilla", Stats.median(ratios(overGrpc, vanilla)));
          out.put("grpc_vs_reprefill", Stats.median(ratios(overGrpc, reprefill)));
          out.put("grpc_vs_reprefill_cached_tail", Stats.median(ratios(overGrpc, reprefillCachedTail)));
        }
        // Where an insertion's time goes, as the decode loop sees it (medians over runs of each run's mean).
        double inProcessTriggerMs = Stats.median(column(inProcessCalls, 0));
        double inProcessWeaveMs = Stats.median(column(inProcessCalls, 1));
        double grpcTriggerMs = grpc ? Stats.median(column(grpcCalls, 0)) : Double.NaN;
        double grpcWeaveMs = grpc ? Stats.median(column(grpcCalls, 1)) : Double.NaN;
        out.put("inprocess_trigger_ms", inProcessTriggerMs);
        out.put("inprocess_weave_ms", inProcessWeaveMs);
        if (grpc) {
          out.put("grpc_trigger_ms", grpcTriggerMs);
          out.put("grpc_weave_ms", grpcWeaveMs);
          out.put("grpc_warm_up_weaves", weaverWarmUp.calls());
          out.put("grpc_warm_up_trigger_calls", triggerWarmUp.calls());
        }
        out.set("machine", Machine.describe());
        System.out.printf("vanilla              %8.2f tok/s%n", Stats.median(vanilla));
        System.out.printf("memgen in-process    %8.2f tok/s  (%.2fx vanilla, %.2fx re-prefill, %.2fx re-prefill with cached tail;"
            + " medians of per-run ratios)%n", Stats.median(inProcess), Stats.median(ratios(inProcess, vanilla)),
            Stats.median(ratios(inProcess, reprefill)), Stats.median(ratios(inProcess, reprefillCachedTail)));
        if (grpc) {
          System.out.printf("memgen over gRPC     %8.2f tok/s  (%.2fx vanilla, %.2fx re-prefill, %.2fx re-prefill with cached tail)%n",
              Stats.median(overGrpc), Stats.median(ratios(overGrpc, vanilla)), Stats.median(ratios(overGrpc, reprefill)),
              Stats.median(ratios(overGrpc, reprefillCachedTail)));
        }
        System.out.printf("re-prefill strategy  %8.2f tok/s  (the reference code's: %d insertions of %d rows + prompt latents in %d"
            + " tokens, no cache after the cap of %d)%n", Stats.median(reprefill), made,
            mem.weaver().k(Weaver.Kind.INFERENCE), newTokens, mem.manifest().maxInferenceAug());
        System.out.printf("  with cached tail   %8.2f tok/s  (the same re-prefills, but decoding with a cache after the cap)%n",
            Stats.median(reprefillCachedTail));
        System.out.printf("per insertion        in-process: trigger call %.2f ms, weave %.2f ms", inProcessTriggerMs,
            inProcessWeaveMs);
        if (grpc) {
          System.out.printf("; over gRPC: trigger call %.2f ms, weave %.2f ms", grpcTriggerMs, grpcWeaveMs);
        }
        System.out.println();
        if (!sameTokens) {
          System.err.println("warning: the strategies generated different tokens (a near-tie in greedy decoding, or a bug)");
        }
        System.out.println(Json.line(out));
      }
    }
    return 0;
  }

  private double tokensPerSecond(long fromNanos, long toNanos) {
    return newTokens / ((toNanos - fromNanos) / 1e9);
  }

  private String tps(long fromNanos, long toNanos) {
    return String.format("%.1f tok/s", tokensPerSecond(fromNanos, toNanos));
  }

  private static double[] column(double[][] rows, int i) {
    double[] c = new double[rows.length];
    for (int r = 0; r < rows.length; r++) {
      c[r] = rows[r][i];
    }
    return c;
  }

  private static double[] ratios(double[] a, double[] b) {
    double[] r = new double[a.length];
    for (int i = 0; i < a.length; i++) {
      r[i] = a[i] / b[i];
    }
    return r;
  }

  private static void deleteOnExit(Path dir) {
    Runtime.getRuntime().addShutdownHook(new Thread(() -> {
      try (var files = Files.walk(dir)) {
        files.sorted(java.util.Comparator.reverseOrder()).forEach(f -> f.toFile().delete());
      } catch (java.io.IOException ignored) {
        // a temporary directory left behind is harmless
      }
    }));
  }

  /** MemGen's work at a fixed rate: prompt latents, and after the chosen tokens a trigger consultation and a weave. */
  static final class Scheduled implements Generator.Interleaver, AutoCloseable {
    final WeaverLink.Session weaver;
    final TriggerLink.Session trigger;
    final Set<Integer> insertAfter;
    final List<Integer> unseen = new ArrayList<>();
    int generated;
    int calls; //         insertions made (prompt included): one trigger call and one weave each
    long triggerNanos; // time spent in the trigger's calls, as the decode loop sees it
    long weaverNanos; //  ... and in the weaver's (weave and accept)

    Scheduled(WeaverLink.Session weaver, TriggerLink.Session trigger, Set<Integer> insertAfter) {
      this.weaver = weaver;
      this.trigger = trigger;
      this.insertAfter = insertAfter;
    }

    /** Mean milliseconds per trigger call and per weave (with its accept) so far. */
    double[] callTimes() {
      return new double[] {triggerNanos / 1e6 / Math.max(1, calls), weaverNanos / 1e6 / Math.max(1, calls)};
    }

    @Override
    public float[] afterPrompt(int row, int[] prompt, int room, float[] hidden) {
      Arrays.stream(prompt).forEach(unseen::add);
      return weave(Weaver.Kind.PROMPT);
    }

    @Override
    public float[] afterToken(int row, int token, float[] hidden) {
      unseen.add(token);
      return insertAfter.contains(++generated) ? weave(Weaver.Kind.INFERENCE) : null;
    }

    private float[] weave(Weaver.Kind kind) {
      int[] ids = unseen.stream().mapToInt(Integer::intValue).toArray();
      unseen.clear();
      long t0 = System.nanoTime();
      trigger.appendTokens(ids);
      trigger.probability();
      long t1 = System.nanoTime();
      weaver.appendTokens(ids);
      float[] latents = weaver.weave(kind);
      weaver.acceptLatents();
      trigger.appendLatents(weaver.k(kind));
      long t2 = System.nanoTime();
      triggerNanos += t1 - t0;
      weaverNanos += t2 - t1;
      calls++;
      return latents;
    }

    @Override
    public void close() {
      weaver.close();
      trigger.close();
    }
  }

  /**
   * The reference implementation's strategy, batch of one: decode with a cache between insertions, but at every
   * insertion throw the cache away and prefill the whole sequence (tokens and latents) again; the weaver reads the
   * whole prefix each time; the trigger re-reads the whole text. Once the memory's {@code max_inference_aug}
   * insertions are made, the reference finishes with {@code use_cache=False} ({@code uncachedAfterCap}); without it,
   * the tail decodes with a cache like ours.
   */
  static int[] reprefillRun(Decoder decoder, Memory mem, int[] prompt, int newTokens, Set<Integer> insertAfter,
      boolean uncachedAfterCap) {
    int cap = mem.manifest().maxInferenceAug();
    List<NDArray> stream = new ArrayList<>();
    try (NDManager m = decoder.manager().newSubManager()) {
      List<Integer> text = new ArrayList<>();
      Arrays.stream(prompt).forEach(text::add);
      stream.add(decoder.embed(m, new int[][] {prompt}));
      stream.add(weaveFromScratch(decoder, mem, stream, text, Weaver.Kind.PROMPT, m));
      KvCache cache = decoder.newCache(1, 64);
      NDArray last = prefill(decoder, cache, stream, m);
      int generated = 0;
      int insertions = 0;
      int[] tokens = new int[newTokens];
      while (true) {
        int next = (int) decoder.logits(last).argMax().getLong();
        tokens[generated++] = next;
        if (generated >= newTokens) {
          break;
        }
        text.add(next);
        NDArray row = decoder.embed(m, new int[][] {{next}});
        stream.add(row);
        if (insertAfter.contains(generated)) { // the caller keeps insertAfter within the cap
          stream.add(weaveFromScratch(decoder, mem, stream, text, Weaver.Kind.INFERENCE, m));
          insertions++;
        } else if (!(uncachedAfterCap && insertions >= cap)) {
          last = decoder.forward(cache, row, new boolean[][] {{true}}).get("0, -1");
          continue;
        }
        // After an insertion the cache is stale; past the cap the reference decodes with use_cache=False, which
        // is a full forward over the whole sequence for every token.
        cache.close();
        cache = decoder.newCache(1, 64);
        last = prefill(decoder, cache, stream, m);
      }
      cache.close();
      return tokens;
    }
  }

  /** The whole stream through a fresh cache; returns the last row's hidden state (in {@code m}; the rest is freed). */
  private static NDArray prefill(Decoder decoder, KvCache cache, List<NDArray> stream, NDManager m) {
    try (NDManager step = m.newSubManager()) {
      NDArray all = NDArrays.concat(new NDList(stream), 1);
      all.attach(step);
      boolean[][] valid = new boolean[1][(int) all.getShape().get(1)];
      Arrays.fill(valid[0], true);
      NDArray hidden = decoder.forward(cache, all, valid);
      hidden.attach(step);
      NDArray last = hidden.get("0, -1");
      last.attach(m);
      return last;
    }
  }

  private static NDArray weaveFromScratch(Decoder decoder, Memory mem, List<NDArray> stream, List<Integer> text,
      Weaver.Kind kind, NDManager m) {
    try (dev.memgen.model.Trigger.Session t = mem.trigger().newSession(64)) {
      t.append(text.stream().mapToInt(Integer::intValue).toArray());
      t.probability();
    }
    try (Weaver.Session w = mem.weaver().newSession(64)) {
      w.append(NDArrays.concat(new NDList(stream), 1));
      return w.weave(kind, m);
    }
  }
}
