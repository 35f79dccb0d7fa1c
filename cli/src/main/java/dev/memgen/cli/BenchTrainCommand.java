package dev.memgen.cli;

import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.memgen.model.Decoder;
import dev.memgen.model.LoraAdapter;
import dev.memgen.model.checkpoint.Checkpoint;
import dev.memgen.model.checkpoint.Directories;
import dev.memgen.model.data.ArithmeticTasks;
import dev.memgen.model.memory.LoraConfig;
import dev.memgen.model.memory.Memory;
import dev.memgen.model.memory.MemoryManifest;
import dev.memgen.model.text.ChatTemplate;
import dev.memgen.model.text.DelimiterTable;
import dev.memgen.model.text.TextTokenizer;
import dev.memgen.model.train.AdamW;
import dev.memgen.model.train.TokenizedExample;
import dev.memgen.model.train.WeaverSft;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

/**
 * Weaver SFT step time and peak memory on a base: fresh memory, arithmetic examples (about 30 prompt and 25 answer
 * tokens with the byte-level tokenizer), warm-up updates, then the median of the measured ones.
 */
@Command(name = "train", mixinStandardHelpOptions = true,
    description = "Weaver SFT: median update time, tokens/s and peak resident memory. Last line: JSON.")
final class BenchTrainCommand implements Callable<Integer> {
  @Option(names = "--model", required = true, description = "base checkpoint directory (with tokenizer.json)") Path model;

  @Option(names = "--batch", defaultValue = "8", description = "examples per update (default ${DEFAULT-VALUE})") int batch;

  @Option(names = "--k", defaultValue = "8", description = "latent rows per insertion (default ${DEFAULT-VALUE})") int k;

  @Option(names = "--lora-r", defaultValue = "16", description = "(default ${DEFAULT-VALUE})") int rank;

  @Option(names = "--steps", defaultValue = "5", description = "measured updates (default ${DEFAULT-VALUE})") int steps;

  @Option(names = "--warmup", defaultValue = "2", description = "updates before measuring (default ${DEFAULT-VALUE})") int warmup;

  @Override
  public Integer call() throws Exception {
    Training.useAllCores();
    long rssBefore = peakRssBytes();
    Path work = Files.createTempDirectory("memgen-bench-train");
    try (Decoder base = Decoder.load(model); TextTokenizer tokenizer = TextTokenizer.load(model)) {
      long rssLoaded = peakRssBytes();
      String fingerprint = Checkpoint.open(model).fingerprint();
      LoraConfig lora = new LoraConfig(rank, 2.0 * rank, List.of(LoraAdapter.Target.Q_PROJ, LoraAdapter.Target.V_PROJ), 0.1);
      MemoryManifest mf = new MemoryManifest(1, fingerprint, base.config().hiddenSize(), base.config().numLayers(), k, k,
          "embeddings", lora, lora, DelimiterTable.DEFAULT, 3);
      Memory.init(work.resolve("memory"), base.config(), mf, 0);
      List<TokenizedExample> data = new ArrayList<>();
      for (ArithmeticTasks.Example e : ArithmeticTasks.generate(ArithmeticTasks.Domain.B, 64, 2, 1)) {
        data.add(TokenizedExample.of(tokenizer, ChatTemplate.userPrompt(e.prompt()), e.answer()));
      }
      DelimiterTable delimiters = DelimiterTable.build(tokenizer, base.config().vocabSize(), DelimiterTable.DEFAULT);
      int total = warmup + steps;
      double[] seconds = new double[steps];
      double[] tps = new double[steps];
      long[] last = {System.nanoTime()};
      try (Progress p = new Progress("bench train", total)) {
        WeaverSft.train(base, fingerprint, work.resolve("memory"), work.resolve("out"), data, delimiters,
            new WeaverSft.Settings(total, batch, 1, 1e-3, 0, 1.0, AdamW.Settings.DEFAULT, 0, 0),
            (step, all, loss, lr, norm, tokensPerSecond) -> {
              long now = System.nanoTime();
              if (step > warmup) {
                seconds[step - warmup - 1] = (now - last[0]) / 1e9;
                tps[step - warmup - 1] = tokensPerSecond;
              }
              last[0] = now;
              p.step(String.format("loss %.3f", loss));
            });
      }
      long peak = peakRssBytes();
      double median = Stats.median(seconds);
      System.out.printf("weaver SFT on %s: %.3f s per update of %d examples (median of %d), %.0f answer tokens/s; "
          + "peak RSS %.0f MB (%.0f MB after loading the base)%n", model, median, batch, steps, Stats.median(tps),
          peak / 1e6, rssLoaded / 1e6);
      ObjectNode json = Json.object();
      json.put("model", model.toString());
      json.put("parameters", base.parameters().values().stream().mapToLong(a -> a.size()).sum());
      json.put("batch", batch);
      json.put("k", k);
      json.put("step_seconds", median);
      json.put("answer_tokens_per_second", Stats.median(tps));
      json.put("peak_rss_mb", peak / 1e6);
      json.put("rss_after_load_mb", rssLoaded / 1e6);
      json.put("rss_at_start_mb", rssBefore / 1e6);
      json.set("machine", Machine.describe());
      System.out.println(Json.line(json));
    } finally {
      Directories.deleteRecursively(work);
    }
    return 0;
  }

  /** The process's peak resident set (VmHWM): JVM heap and libtorch's native memory alike. */
  static long peakRssBytes() throws IOException {
    for (String line : Files.readAllLines(Path.of("/proc/self/status"))) {
      if (line.startsWith("VmHWM:")) {
        return Long.parseLong(line.replaceAll("[^0-9]", "")) * 1024;
      }
    }
    return -1;
  }
}
