package dev.memgen.cli;

import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.memgen.model.Decoder;
import dev.memgen.model.checkpoint.Checkpoint;
import dev.memgen.model.data.QaDataset;
import dev.memgen.model.memory.MemoryManifest;
import dev.memgen.model.text.DelimiterTable;
import dev.memgen.model.text.TextTokenizer;
import dev.memgen.model.train.AdamW;
import dev.memgen.model.train.TokenizedExample;
import dev.memgen.model.train.WeaverSft;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

/** Weaver SFT from JSONL, with checkpoints and automatic resume. */
@Command(name = "sft", mixinStandardHelpOptions = true,
    description = "Weaver SFT: frozen reasoner, inactive trigger; trains the weaver's LoRA, projections and queries on "
        + "reference answers. Resumes from OUT/checkpoint when there is one. Last line: JSON.")
final class TrainSftCommand implements Callable<Integer> {
  @Option(names = "--model", required = true, description = "the frozen base checkpoint (with tokenizer.json)") Path model;

  @Option(names = "--memory", required = true, description = "the memory to start from (see init-memory)") Path memory;

  @Option(names = "--data", required = true, description = "JSONL of {\"prompt\", \"answer\"} or {\"messages\": [...]}") Path data;

  @Option(names = "--out", required = true, description = "directory for the trained memory (and its checkpoint)") Path out;

  @Option(names = "--steps", defaultValue = "1000", description = "optimizer updates (default ${DEFAULT-VALUE})") int steps;

  @Option(names = "--batch", defaultValue = "16", description = "examples per micro-batch (default ${DEFAULT-VALUE})") int batch;

  @Option(names = "--grad-accum", defaultValue = "1", description = "micro-batches per update (default ${DEFAULT-VALUE})") int gradAccum;

  @Option(names = "--lr", defaultValue = "3e-3", description = "peak learning rate (default ${DEFAULT-VALUE})") double lr;

  @Option(names = "--warmup", defaultValue = "50", description = "warm-up updates (default ${DEFAULT-VALUE})") int warmup;

  @Option(names = "--min-lr-ratio", defaultValue = "0.1", description = "final lr / peak lr (default ${DEFAULT-VALUE})") double minLrRatio;

  @Option(names = "--weight-decay", defaultValue = "0.01", description = "(default ${DEFAULT-VALUE})") double weightDecay;

  @Option(names = "--checkpoint-every", defaultValue = "100", description = "updates between checkpoints, 0 for none (default ${DEFAULT-VALUE})")
  int checkpointEvery;

  @Option(names = "--seed", defaultValue = "0", description = "data order and dropout (default ${DEFAULT-VALUE})") long seed;

  @Option(names = "--on-bad-record", defaultValue = "fail", description = "skip or fail (default ${DEFAULT-VALUE})") String onBadRecord;

  @Override
  public Integer call() throws Exception {
    Training.useAllCores();
    QaDataset.Loaded loaded = QaDataset.read(data, QaDataset.OnBadRecord.parse(onBadRecord), QaDataset.Expected.OPTIONAL);
    loaded.skipped().forEach(b -> System.err.println("skipped " + data + ":" + b.line() + ": " + b.reason()));
    WeaverSft.Settings settings = new WeaverSft.Settings(steps, batch, gradAccum, lr, warmup, minLrRatio,
        new AdamW.Settings(0.9, 0.999, 1e-8, weightDecay, 1.0), checkpointEvery, seed);
    try (Decoder base = Decoder.load(model); TextTokenizer tokenizer = TextTokenizer.load(model)) {
      List<TokenizedExample> examples = new ArrayList<>();
      for (QaDataset.Example e : loaded.examples()) {
        examples.add(TokenizedExample.of(tokenizer, e.chatPrompt(), e.answer()));
      }
      MemoryManifest manifest = MemoryManifest.read(memory);
      DelimiterTable delimiters = DelimiterTable.build(tokenizer, base.config().vocabSize(), manifest.delimiters());
      WeaverSft.Result r;
      try (Training.Bar bar = new Training.Bar("weaver sft", steps)) {
        r = WeaverSft.train(base, Checkpoint.open(model).fingerprint(), memory, out, examples, delimiters, settings, bar);
      }
      System.err.printf("trained the weaver for %d updates%s in %.0f s (last loss %.4f); wrote version %d to %s%n", r.steps(),
          r.resumedFrom() > 0 ? " (resumed at " + r.resumedFrom() + ")" : "", r.seconds(), r.lastLoss(), r.manifest().version(), out);
      ObjectNode json = Json.object();
      json.put("out", out.toString());
      json.put("version", r.manifest().version());
      json.put("examples", examples.size());
      json.put("skipped", loaded.skipped().size());
      json.put("steps", r.steps());
      json.put("resumed_from", r.resumedFrom());
      json.put("final_loss", r.lastLoss());
      json.put("skipped_updates", r.skippedSteps());
      json.put("seconds", r.seconds());
      json.put("tokens_per_second", r.tokens() / r.seconds());
      System.out.println(Json.line(json));
    }
    return 0;
  }
}
