package dev.memgen.cli;

import dev.memgen.model.LoraAdapter;
import dev.memgen.model.checkpoint.Checkpoint;
import dev.memgen.model.memory.LoraConfig;
import dev.memgen.model.memory.Memory;
import dev.memgen.model.memory.MemoryManifest;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.List;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

/** Writes a freshly initialised memory (weaver + trigger) for a base checkpoint. */
@Command(name = "init-memory", mixinStandardHelpOptions = true,
    description = "Write a freshly initialised memory (weaver and trigger parameters + manifest) for a base model.")
final class InitMemoryCommand implements Callable<Integer> {
  @Option(names = "--model", required = true, description = "the base (reasoner) checkpoint directory") Path model;

  @Option(names = "--out", required = true, description = "memory directory to write") Path out;

  @Option(names = "--prompt-k", defaultValue = "8", description = "latent rows at the prompt boundary (default ${DEFAULT-VALUE})") int promptK;

  @Option(names = "--inference-k", defaultValue = "8", description = "latent rows after a delimiter (default ${DEFAULT-VALUE})") int inferenceK;

  @Option(names = "--lora-r", defaultValue = "16", description = "LoRA rank, weaver and trigger (default ${DEFAULT-VALUE})") int rank;

  @Option(names = "--lora-alpha", defaultValue = "32", description = "LoRA alpha (default ${DEFAULT-VALUE})") double alpha;

  @Option(names = "--lora-targets", defaultValue = "q_proj,v_proj", description = "LoRA target layers (default ${DEFAULT-VALUE})") String targets;

  @Option(names = "--lora-dropout", defaultValue = "0.1", description = "LoRA dropout in training (default ${DEFAULT-VALUE})") double dropout;

  @Option(names = "--weaver-input", defaultValue = "embeddings",
      description = "rows the weaver reads: embeddings (the reference code) or hidden (the paper's text)") String weaverInput;

  @Option(names = "--delimiters", defaultValue = ",|.|\\n", description = "'|'-separated delimiter strings (default , . and newline)") String delimiters;

  @Option(names = "--max-inference-aug", defaultValue = "5", description = "inference insertions per sequence at most") int maxInferenceAug;

  @Option(names = "--seed", defaultValue = "0") long seed;

  @Override
  public Integer call() throws Exception {
    Checkpoint base = Checkpoint.open(model);
    List<LoraAdapter.Target> t = Arrays.stream(targets.split(",")).map(String::trim).map(LoraAdapter.Target::of).toList();
    LoraConfig lora = new LoraConfig(rank, alpha, t, dropout);
    List<String> delims = Arrays.stream(delimiters.split("\\|")).map(d -> d.replace("\\n", "\n")).toList();
    MemoryManifest manifest = new MemoryManifest(1, base.fingerprint(), base.config().hiddenSize(), base.config().numLayers(),
        promptK, inferenceK, weaverInput, lora, lora, delims, maxInferenceAug);
    Memory.init(out, base.config(), manifest, seed);
    System.err.printf("wrote a fresh memory for %s (fingerprint %s): K=%d/%d, LoRA r=%d alpha=%s on %s%n", model,
        manifest.baseFingerprint(), promptK, inferenceK, rank, alpha, targets);
    System.out.println(out);
    return 0;
  }
}
