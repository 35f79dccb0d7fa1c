package dev.memgen.cli;

import dev.memgen.model.Decoder;
import dev.memgen.model.checkpoint.Checkpoint;
import dev.memgen.model.generate.MemGenInterleaver;
import dev.memgen.model.text.DelimiterTable;
import dev.memgen.model.generate.Generator;
import dev.memgen.model.generate.SamplingParams;
import dev.memgen.model.text.ChatTemplate;
import dev.memgen.model.text.TextTokenizer;
import dev.memgen.rpc.CallDeadline;
import dev.memgen.rpc.ClientSecurity;
import dev.memgen.rpc.ReasonerMemory;
import java.nio.file.Path;
import java.time.Duration;
import java.util.HashSet;
import java.util.List;
import java.util.OptionalInt;
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

  @Option(names = "--memory", description = "a memory directory (weaver + trigger): generate with latent memory, in this process")
  Path memory;

  @Option(names = "--weaver-at", description = "generate with latent memory from a weaver service at HOST:PORT (memgen serve weaver)")
  String weaverAt;

  @Option(names = "--trigger-at", description = "with --weaver-at: a trigger service at HOST:PORT (without one every delimiter invokes)")
  String triggerAt;

  @Option(names = "--trigger", defaultValue = "threshold",
      description = "with memory: threshold (invoke when P >= --threshold, default), sample, or inactive (always invoke)")
  String trigger;

  @Option(names = "--threshold", defaultValue = "0.5", description = "with --trigger threshold (default ${DEFAULT-VALUE})") double threshold;

  @Option(names = "--deadline-ms", defaultValue = "5000",
      description = "with --weaver-at: longest wait for one answer, plus --deadline-per-row-ms per row the service must run (default ${DEFAULT-VALUE})")
  long deadlineMs;

  @Option(names = "--deadline-per-row-ms", defaultValue = "20", description = "with --weaver-at (default ${DEFAULT-VALUE})")
  double deadlinePerRowMs;

  @Option(names = "--trace", description = "with memory: show where latents went in and the trigger's probabilities (stderr)")
  boolean trace;

  private Generator.Result withMemory(Decoder decoder, Generator.Request request, TextTokenizer tokenizer) {
    MemGenInterleaver.TriggerMode mode = MemGenInterleaver.TriggerMode.parse(trigger, "--trigger");
    String fingerprint = Checkpoint.open(model).fingerprint();
    try (TextTokenizer delimiterTokenizer = tokenizer != null ? null : TextTokenizer.load(model)) {
      TextTokenizer t = tokenizer != null ? tokenizer : delimiterTokenizer;
      java.util.function.Function<List<String>, DelimiterTable> delimiters =
          names -> DelimiterTable.build(t, decoder.config().vocabSize(), names);
      try (ReasonerMemory mem = memory != null ? ReasonerMemory.embedded(decoder, fingerprint, memory, delimiters)
              : ReasonerMemory.remote(weaverAt, triggerAt, fingerprint, decoder.config().hiddenSize(), "",
                  new CallDeadline(Duration.ofMillis(deadlineMs), Duration.ofNanos((long) (deadlinePerRowMs * 1e6))), ClientSecurity.PLAINTEXT, List.of(), delimiters);
          MemGenInterleaver loop = mem.open(List.of("cli"), mode, threshold, request.sampling().seed(), OptionalInt.empty())) {
        Generator.Result r = new Generator(decoder).generate(List.of(request), (row, token, hidden) -> {}, loop).get(0);
        if (trace) {
          MemGenInterleaver.Trace tr = loop.trace(0);
          for (MemGenInterleaver.Insertion i : tr.insertions()) {
            System.err.printf("latents: %-9s k=%d at stream position %d (after %d generated tokens)%s%n", i.kind(), i.k(),
                i.position(), i.tokenIndex(), Float.isNaN(i.probability()) ? "" : String.format(", P(invoke)=%.3f", i.probability()));
          }
          for (MemGenInterleaver.Decision d : tr.decisions()) {
            System.err.printf("trigger: after token %d, P(invoke)=%.3f -> %s%n", d.tokenIndex(), d.probability(),
                d.invoke() ? "invoke" : "skip");
          }
          System.err.println("skipped: " + tr.skips());
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
      if (memory != null && weaverAt != null) {
        throw new IllegalArgumentException("--memory (in this process) and --weaver-at (a service) exclude each other");
      }
      if (triggerAt != null && weaverAt == null) {
        throw new IllegalArgumentException("--trigger-at needs --weaver-at");
      }
      if (memory == null && weaverAt == null) {
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
