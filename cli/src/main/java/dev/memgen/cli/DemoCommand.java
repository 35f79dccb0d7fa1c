package dev.memgen.cli;

import dev.memgen.model.Decoder;
import dev.memgen.model.checkpoint.DType;
import dev.memgen.model.checkpoint.TinyCheckpoint;
import dev.memgen.model.generate.Generator;
import dev.memgen.model.generate.SamplingParams;
import dev.memgen.model.text.ChatTemplate;
import dev.memgen.model.text.TextTokenizer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Set;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

/**
 * The quick-start job. For now: make a tiny random model (once) and generate from it, greedy and sampled, so a
 * fresh clone shows the whole path (checkpoint, tokenizer, chat template, decoder, sampling) working. The model
 * is random, so the text is noise; the memory demo replaces this when the weaver and trainer land.
 */
@Command(name = "demo", mixinStandardHelpOptions = true,
    description = "Make a tiny random model (once, under --dir) and generate text with it.")
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
    }
    return 0;
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
