package dev.memgen.cli;

import dev.memgen.model.ModelConfig;
import dev.memgen.model.checkpoint.DType;
import dev.memgen.model.checkpoint.TinyCheckpoint;
import java.nio.file.Path;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

/** Writes a random checkpoint in Hugging Face layout, with a working tokenizer.json. */
@Command(name = "make-tiny", mixinStandardHelpOptions = true,
    description = "Write a random checkpoint (config.json, safetensors, tokenizer.json) in Hugging Face layout.")
final class MakeTinyCommand implements Callable<Integer> {
  @Option(names = "--out", required = true, description = "directory to write") Path out;

  @Option(names = "--arch", defaultValue = "qwen2", description = "qwen2 (default) or llama") String arch;

  @Option(names = "--dtype", defaultValue = "f32", description = "f32 (default) or bf16") String dtype;

  @Option(names = "--shards", defaultValue = "1", description = "number of safetensors files (default 1)") int shards;

  @Option(names = "--preset", defaultValue = "tiny",
      description = "tiny (default: 2 layers, hidden 64) or qwen2.5-0.5b (the shapes of Qwen2.5-0.5B, ~2 GB in f32)") String preset;

  @Option(names = "--seed", defaultValue = "0") long seed;

  @Override
  public Integer call() throws Exception {
    if (!arch.equals("qwen2") && !arch.equals("llama")) {
      throw new IllegalArgumentException("--arch must be qwen2 or llama, got '" + arch + "'");
    }
    ModelConfig config = switch (preset) {
      case "tiny" -> TinyCheckpoint.tiny(arch);
      case "qwen2.5-0.5b" -> {
        if (!arch.equals("qwen2")) {
          throw new IllegalArgumentException("--preset qwen2.5-0.5b is a qwen2 model");
        }
        yield TinyCheckpoint.qwen25HalfB();
      }
      default -> throw new IllegalArgumentException("unknown --preset '" + preset + "' (tiny or qwen2.5-0.5b)");
    };
    DType type = DType.parse(dtype);
    if (type == DType.F16) {
      throw new IllegalArgumentException("--dtype must be f32 or bf16");
    }
    long start = System.nanoTime();
    TinyCheckpoint.write(out, config, type, shards, seed);
    System.err.printf("wrote %s (%s, %s, %d layers, hidden %d) in %.1f s%n", out, config.architecture(), dtype,
        config.numLayers(), config.hiddenSize(), (System.nanoTime() - start) / 1e9);
    System.out.println(out);
    return 0;
  }
}
