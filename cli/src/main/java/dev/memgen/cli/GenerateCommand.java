package dev.memgen.cli;

import dev.memgen.model.Decoder;
import dev.memgen.model.checkpoint.Checkpoint;
import dev.memgen.model.generate.MemGenInterleaver;
import dev.memgen.model.memory.InProcessMemory;
import dev.memgen.model.memory.Memory;
import dev.memgen.model.text.DelimiterTable;
import dev.memgen.model.generate.Generator;
import dev.memgen.model.generate.SamplingParams;
import dev.memgen.model.text.ChatTemplate;
import dev.memgen.model.text.TextTokenizer;
import java.nio.file.Path;
import java.util.HashSet;
import java.util.List;
import java.util.Set;
import java.util.concurrent.Callable;
import picocli.CommandLine.ArgGroup;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

/** Generates a continuation: text in, text out, or token ids in, token ids out. */
@Command(name = "generate", mixinStandardHelpOptions = true,
    description = "Generate text (--prompt) or token ids (--ids) with the frozen reasoner. Greedy unless --temperature is given.")
final class GenerateCommand implements Callable<Integer> {
  @Option(names = "--model", required = true, description = "Hugging Face checkpoint directory") Path model;

  @ArgGroup(exclusive = true, multiplicity = "1") Input input;

  static final class Input {
    @Option(names = "--prompt", description = "a user message (wrapped in the ChatML template unless --raw)") String prompt;

    @Option(names = "--ids", description = "comma-separated prompt token ids; the output is token ids too") String ids;
  }

  @Option(names = "--raw", description = "send --prompt as is, without the chat template") boolean raw;

  @Option(names = "--max-new-tokens", defaultValue = "64", description = "at most this many new tokens (default ${DEFAULT-VALUE})") int maxNewTokens;

  @Option(names = "--temperature", defaultValue = "0", description = "0 = greedy (default)") double temperature;

  @Option(names = "--top-p", defaultValue = "1", description = "nucleus sampling mass (default ${DEFAULT-VALUE})") double topP;

  @Option(names = "--top-k", defaultValue = "0", description = "sample among the k most likely tokens (0 = all)") int topK;

  @Option(names = "--seed", defaultValue = "0", description = "sampling seed (default ${DEFAULT-VALUE})") long seed;

  @Option(names = "--memory", description = "a memory directory (weaver + trigger): generate with latent memory") Path memory;

  @Option(names = "--trigger", defaultValue = "threshold",
      description = "with --memory: threshold (invoke when P >= --threshold, default), sample, or inactive (always invoke)")
  String trigger;

  @Option(names = "--threshold", defaultValue = "0.5", description = "with --trigger threshold (default ${DEFAULT-VALUE})") double threshold;

  @Option(names = "--trace", description = "with --memory: show where latents went in and the trigger's probabilities (stderr)")
  boolean trace;

  private Generator.Result withMemory(Decoder decoder, Generator.Request request, TextTokenizer tokenizer) {
    MemGenInterleaver.TriggerMode mode = switch (trigger) {
      case "threshold" -> MemGenInterleaver.TriggerMode.THRESHOLD;
      case "sample" -> MemGenInterleaver.TriggerMode.SAMPLE;
      case "inactive" -> MemGenInterleaver.TriggerMode.INACTIVE;
      default -> throw new IllegalArgumentException("--trigger must be threshold, sample or inactive, got '" + trigger + "'");
    };
    try (Memory mem = Memory.load(memory, decoder, Checkpoint.open(model).fingerprint());
        TextTokenizer delimiterTokenizer = tokenizer != null ? null : TextTokenizer.load(model)) {
      DelimiterTable delimiters = DelimiterTable.build(tokenizer != null ? tokenizer : delimiterTokenizer,
          decoder.config().vocabSize(), mem.manifest().delimiters());
      InProcessMemory links = new InProcessMemory(decoder, mem);
      MemGenInterleaver.Options options = new MemGenInterleaver.Options(true, mem.manifest().maxInferenceAug(), mode, threshold, seed);
      try (MemGenInterleaver loop = new MemGenInterleaver(List.of(links.weaver().open("cli")), List.of(links.trigger().open("cli")),
          delimiters, options)) {
        Generator.Result r = new Generator(decoder).generate(List.of(request), (row, token, hidden) -> {}, loop).get(0);
        if (trace) {
          MemGenInterleaver.Trace t = loop.trace(0);
          for (MemGenInterleaver.Insertion i : t.insertions()) {
            System.err.printf("latents: %-9s k=%d at stream position %d (after %d generated tokens)%s%n", i.kind(), i.k(),
                i.position(), i.tokenIndex(), Float.isNaN(i.probability()) ? "" : String.format(", P(invoke)=%.3f", i.probability()));
          }
          for (MemGenInterleaver.Decision d : t.decisions()) {
            System.err.printf("trigger: after token %d, P(invoke)=%.3f -> %s%n", d.tokenIndex(), d.probability(),
                d.invoke() ? "invoke" : "skip");
          }
          System.err.println("skipped: " + t.skips());
        }
        return r;
      }
    }
  }

  @Override
  public Integer call() {
    SamplingParams sampling = new SamplingParams(temperature, topK, topP, seed);
    try (Decoder decoder = Decoder.load(model)) {
      Set<Integer> stop = new HashSet<>(decoder.config().eosTokenIds());
      int[] prompt;
      TextTokenizer tokenizer = null;
      if (input.ids != null) {
        prompt = Ids.parse(input.ids);
      } else {
        tokenizer = TextTokenizer.load(model);
        prompt = tokenizer.encode(raw ? input.prompt : ChatTemplate.userPrompt(input.prompt));
        for (String special : List.of(ChatTemplate.IM_END, ChatTemplate.END_OF_TEXT)) {
          int id = tokenizer.tokenId(special);
          if (id >= 0) {
            stop.add(id);
          }
        }
      }
      Generator.Request request = new Generator.Request(prompt, maxNewTokens, sampling, stop);
      Generator.Result r;
      if (memory == null) {
        r = new Generator(decoder).generate(List.of(request)).get(0);
      } else {
        r = withMemory(decoder, request, tokenizer);
      }
      if (tokenizer == null) {
        System.out.println(Ids.format(r.tokens()));
      } else {
        System.out.println(tokenizer.decode(r.tokens(), true));
        tokenizer.close();
      }
      double decodeSeconds = r.decodeNanos() / 1e9;
      System.err.printf("%d prompt tokens, %d new tokens (%s); prefill %.1f ms, decode %.2f tok/s%n",
          prompt.length, r.tokens().length, r.reason().name().toLowerCase(), r.prefillNanos() / 1e6,
          r.tokens().length > 1 ? (r.tokens().length - 1) / decodeSeconds : 0.0);
    }
    return 0;
  }
}
