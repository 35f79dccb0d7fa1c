package dev.memgen.cli;

import dev.memgen.model.Decoder;
import dev.memgen.model.checkpoint.Checkpoint;
import dev.memgen.model.checkpoint.DType;
import dev.memgen.model.checkpoint.TinyCheckpoint;
import dev.memgen.model.generate.Generator;
import dev.memgen.model.generate.MemGenInterleaver;
import dev.memgen.model.generate.SamplingParams;
import dev.memgen.model.memory.LoraConfig;
import dev.memgen.model.memory.Memory;
import dev.memgen.model.memory.MemoryManifest;
import dev.memgen.model.text.ChatTemplate;
import dev.memgen.model.text.DelimiterTable;
import dev.memgen.model.text.TextTokenizer;
import dev.memgen.rpc.ReasonerMemory;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.OptionalInt;
import java.util.Set;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

/**
 * The quick-start job. For now: make a tiny random model and a fresh memory for it (once) and generate from it,
 * greedy, sampled, and greedy with latent memory, so a fresh clone shows the whole path (checkpoint, tokenizer, chat
 * template, decoder, sampling, weaver, insertion rule) working. The model is random, so the text is noise; a trained
 * demo replaces this when training lands.
 */
@Command(name = "demo", mixinStandardHelpOptions = true,
    description = "Make a tiny random model and memory (once, under --dir) and generate text with them.")
final class DemoCommand implements Callable<Integer> {
  @Option(names = "--dir", defaultValue = ".memgen/tiny", description = "where the tiny model lives (default ${DEFAULT-VALUE})")
  Path dir;

  @Option(names = "--prompt", defaultValue = "What is 12+7-5?", description = "the user message") String prompt;

  @Option(names = "--max-new-tokens", defaultValue = "32") int maxNewTokens;

  @Override
  public Integer call() throws Exception {
    if (!Files.exists(dir.resolve("config.json"))) {
      System.err.println("making a tiny random Qwen2 model in " + dir + " ...");
      TinyCheckpoint.write(dir, TinyCheckpoint.tiny("qwen2"), DType.F32, 1, 0);
    }
    try (Decoder decoder = Decoder.load(dir); TextTokenizer tokenizer = TextTokenizer.load(dir)) {
      int[] ids = tokenizer.encode(ChatTemplate.userPrompt(prompt));
      Set<Integer> stop = Set.of(tokenizer.tokenId(ChatTemplate.IM_END));
      List<Generator.Result> results = new Generator(decoder).generate(List.of(
          new Generator.Request(ids, maxNewTokens, SamplingParams.GREEDY, stop),
          new Generator.Request(ids, maxNewTokens, new SamplingParams(0.8, 0, 0.95, 1), stop)));
      System.out.println("prompt:  " + prompt);
      System.out.println("greedy:  " + printable(tokenizer.decode(results.get(0).tokens(), true)));
      System.out.println("sampled: " + printable(tokenizer.decode(results.get(1).tokens(), true)));
      System.err.printf("model %s: %d layers, hidden %d; %d prompt tokens; both rows decoded as one batch%n",
          dir, decoder.config().numLayers(), decoder.config().hiddenSize(), ids.length);

      Path memoryDir = dir.resolveSibling(dir.getFileName() + "-memory");
      String fingerprint = Checkpoint.open(dir).fingerprint();
      if (!Files.exists(memoryDir.resolve(MemoryManifest.FILE))) {
        System.err.println("making a fresh memory for it in " + memoryDir + " ...");
        Memory.init(memoryDir, decoder.config(), new MemoryManifest(1, fingerprint, decoder.config().hiddenSize(),
            decoder.config().numLayers(), 8, 8, "embeddings", LoraConfig.REFERENCE, LoraConfig.REFERENCE,
            everyCharacter(), 5), 0);
      }
      try (ReasonerMemory memory = ReasonerMemory.embedded(decoder, fingerprint, memoryDir,
              names -> DelimiterTable.build(tokenizer, decoder.config().vocabSize(), names));
          MemGenInterleaver loop = memory.open(List.of("demo"), MemGenInterleaver.TriggerMode.INACTIVE, 0.5, 0,
              OptionalInt.empty())) {
        Generator.Result r = new Generator(decoder).generate(
            List.of(new Generator.Request(ids, maxNewTokens, SamplingParams.GREEDY, stop)), (row, t, h) -> {}, loop).get(0);
        System.out.println("memory:  " + printable(tokenizer.decode(r.tokens(), true)));
        MemGenInterleaver.Trace trace = loop.trace(0);
        System.err.printf("memory %s: %d latent blocks inserted, after generated tokens %s (prompt latents at 0)%n",
            memoryDir, trace.insertions().size(),
            trace.insertions().stream().map(MemGenInterleaver.Insertion::tokenIndex).toList());
      }
    }
    return 0;
  }

  /**
   * A random model rarely writes ",", "." or a newline, so the demo memory counts every character as a delimiter
   * (U+FFFD: a byte that is not text on its own): inference latents then go in after the first tokens, up to the cap.
   */
  static List<String> everyCharacter() {
    List<String> all = new java.util.ArrayList<>(List.of("\uFFFD"));
    for (char c = 1; c < 128; c++) {
      all.add(String.valueOf(c));
    }
    return all;
  }

  /** Control characters from a random model would garble the terminal: show them escaped. */
  static String printable(String s) {
    StringBuilder sb = new StringBuilder();
    s.codePoints().forEach(c -> {
      if (Character.isISOControl(c)) {
        sb.append(String.format("\\x%02x", c));
      } else {
        sb.appendCodePoint(c);
      }
    });
    return sb.toString();
  }
}
