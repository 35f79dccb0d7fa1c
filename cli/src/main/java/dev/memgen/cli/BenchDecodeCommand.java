package dev.memgen.cli;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.memgen.model.Decoder;
import dev.memgen.model.KvCache;
import dev.memgen.model.generate.Generator;
import dev.memgen.model.generate.SamplingParams;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.List;
import java.util.Random;
import java.util.Set;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

/**
 * Prefill and decode throughput of the frozen reasoner, against the bound memory bandwidth puts on decode
 * (every weight is read once per token). Optionally also decode without a KV cache (the whole prefix recomputed
 * every step), to show what the cache buys.
 */
@Command(name = "decode", mixinStandardHelpOptions = true,
    description = "Measure prefill and decode tokens/s (medians) against the memory-bandwidth limit.")
final class BenchDecodeCommand implements Callable<Integer> {
  @Option(names = "--model", required = true, description = "Hugging Face checkpoint directory") Path model;

  @Option(names = "--prompt-tokens", defaultValue = "128", description = "prompt length (default ${DEFAULT-VALUE})") int promptTokens;

  @Option(names = "--new-tokens", defaultValue = "64", description = "tokens decoded per run (default ${DEFAULT-VALUE})") int newTokens;

  @Option(names = "--runs", defaultValue = "5", description = "measured runs after one warm-up (default ${DEFAULT-VALUE})") int runs;

  @Option(names = "--vs-recompute", defaultValue = "0",
      description = "also decode this many tokens with and without the KV cache (0 = skip)") int vsRecompute;

  @Override
  public Integer call() {
    if (promptTokens < 1 || newTokens < 2 || runs < 1 || vsRecompute < 0) {
      throw new IllegalArgumentException("need --prompt-tokens >= 1, --new-tokens >= 2, --runs >= 1, --vs-recompute >= 0");
    }
    try (Decoder decoder = Decoder.load(model)) {
      int vocab = decoder.config().vocabSize();
      int[] prompt = new Random(7).ints(promptTokens, 0, vocab).toArray();
      Generator generator = new Generator(decoder);
      Generator.Request request = new Generator.Request(prompt, newTokens, SamplingParams.GREEDY, Set.of());
      double[] prefill = new double[runs];
      double[] decode = new double[runs];
      double[] bandwidth = new double[runs];
      double[] fraction = new double[runs];
      long weightBytes = decoder.weightBytes();
      try (Progress p = new Progress("bench decode", runs + 1);
          Machine.BandwidthProbe probe = new Machine.BandwidthProbe(decoder.manager())) {
        generator.generate(List.of(request)); // warm-up: first-touch of weights, allocator, JIT
        p.step("warm-up");
        for (int i = 0; i < runs; i++) {
          // Bandwidth is measured right before each run: on a shared machine it drifts, and the ratio is only
          // meaningful between figures taken under the same conditions.
          bandwidth[i] = probe.measure(5);
          Generator.Result r = generator.generate(List.of(request)).get(0);
          prefill[i] = promptTokens / (r.prefillNanos() / 1e9);
          // newTokens tokens took newTokens - 1 forward steps plus newTokens heads: count the forwards.
          decode[i] = (r.tokens().length - 1) / (r.decodeNanos() / 1e9);
          fraction[i] = decode[i] / (bandwidth[i] / weightBytes);
          p.step(String.format("decode %.2f tok/s, %.0f%% of the limit", decode[i], 100 * fraction[i]));
        }
      }
      double limit = Stats.median(bandwidth) / weightBytes;
      ObjectNode out = Json.object();
      out.put("model", model.toString());
      out.put("weight_bytes", weightBytes);
      out.put("prompt_tokens", promptTokens);
      out.put("new_tokens", newTokens);
      out.put("runs", runs);
      out.put("prefill_tps", Stats.median(prefill));
      out.put("decode_tps", Stats.median(decode));
      out.put("bandwidth_gbps", Stats.median(bandwidth) / 1e9);
      out.put("bandwidth_limit_tps", limit);
      out.put("decode_fraction_of_limit", Stats.median(fraction));
      System.out.printf("prefill  %10.1f tok/s   (median of %d, %d-token prompt)%n", Stats.median(prefill), runs, promptTokens);
      System.out.printf("decode   %10.2f tok/s   (median of %d, %d tokens)%n", Stats.median(decode), runs, newTokens);
      System.out.printf("limit    %10.2f tok/s   (%.1f GB/s read bandwidth / %.1f MB of weights per token)%n",
          limit, Stats.median(bandwidth) / 1e9, weightBytes / 1e6);
      System.out.printf("decode / limit %6.0f%%   (median of the per-run ratios)%n", 100 * Stats.median(fraction));
      if (vsRecompute > 0) {
        double cached = cachedTps(generator, vsRecompute);
        double recompute = recomputeTps(decoder, vsRecompute);
        out.put("vs_recompute_tokens", vsRecompute);
        out.put("cached_tps", cached);
        out.put("recompute_tps", recompute);
        out.put("cache_speedup", cached / recompute);
        System.out.printf("%d tokens: with KV cache %.1f tok/s, recomputing the prefix %.1f tok/s -> %.1fx%n",
            vsRecompute, cached, recompute, cached / recompute);
      }
      out.set("machine", Machine.describe());
      System.out.println(Json.line(out));
    }
    return 0;
  }

  private static double cachedTps(Generator generator, int tokens) {
    long t0 = System.nanoTime();
    generator.generate(List.of(new Generator.Request(new int[] {1}, tokens, SamplingParams.GREEDY, Set.of())));
    return tokens / ((System.nanoTime() - t0) / 1e9);
  }

  /** The no-cache strategy: every step runs the whole sequence so far through the model. */
  private static double recomputeTps(Decoder decoder, int tokens) {
    int[] seq = new int[tokens];
    seq[0] = 1;
    long t0 = System.nanoTime();
    try (Progress p = new Progress("recompute", tokens - 1)) {
      for (int n = 1; n < tokens; n++) {
        try (NDManager m = decoder.manager().newSubManager(); KvCache cache = decoder.newCache(1, n)) {
          boolean[][] valid = new boolean[1][n];
          Arrays.fill(valid[0], true);
          NDArray hidden = decoder.forward(cache, decoder.embed(m, new int[][] {Arrays.copyOf(seq, n)}), valid);
          seq[n] = (int) decoder.logits(hidden.get("0, -1")).argMax().getLong();
        }
        p.step("");
      }
    }
    return tokens / ((System.nanoTime() - t0) / 1e9);
  }
}
