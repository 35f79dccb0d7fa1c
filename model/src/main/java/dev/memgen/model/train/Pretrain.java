package dev.memgen.model.train;

import ai.djl.engine.Engine;
import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.Shape;
import ai.djl.training.GradientCollector;
import dev.memgen.model.Decoder;
import dev.memgen.model.ModelConfig;
import dev.memgen.model.Weaver;
import dev.memgen.model.checkpoint.Checkpoint;
import dev.memgen.model.checkpoint.DType;
import dev.memgen.model.checkpoint.Directories;
import dev.memgen.model.checkpoint.SafeTensorsWriter;
import dev.memgen.model.checkpoint.TinyCheckpoint;
import dev.memgen.model.data.ArithmeticTasks;
import dev.memgen.model.text.ByteLevelVocabulary;
import dev.memgen.model.text.ChatTemplate;
import dev.memgen.model.text.DelimiterTable;
import dev.memgen.model.text.TextTokenizer;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.SplittableRandom;

/**
 * Trains the project's own base reasoner from scratch: a small Qwen2-layout decoder on domain A of
 * {@link ArithmeticTasks}, in ChatML, with loss on the answer only.
 *
 * <p>Memory slots are made normal to it (DESIGN.md section 3c): random filler rows, which take positions and get no
 * loss, go where MemGen puts latents (0 to {@code maxFillerRows} at the answer start; after a delimiter of the
 * answer, with probability {@code delimiterFillProbability}, 1 to {@code maxFillerRows}). A base trained without
 * them breaks as soon as K rows are inserted, even rows of zeros, and no weaver can then help it.
 */
public final class Pretrain {
  /**
   * @param longChainShare the share of training problems drawn from domain C ({@link ArithmeticTasks#LONG_CHAIN_OPERATIONS}
   *     operations): rare enough that the base only partly learns them, as a pre-trained LM partly solves a harder
   *     task it has seen little of; that partial skill is what rewards can build on (DESIGN.md section 3d)
   */
  public record Settings(ModelConfig shape, int steps, int batchSize, double lr, int warmupSteps, int maxOperations,
      int maxFillerRows, double delimiterFillProbability, int fillerSlots, double longChainShare, long seed) {
    public Settings {
      if (!(longChainShare >= 0 && longChainShare <= 1)) {
        throw new IllegalArgumentException("the long-chain share must be in [0, 1], got " + longChainShare);
      }
    }

    public Settings withSteps(int steps) {
      return new Settings(shape, steps, batchSize, lr, warmupSteps, maxOperations, maxFillerRows, delimiterFillProbability,
          fillerSlots, longChainShare, seed);
    }
  }

  /** The default base: about 0.8M parameters, char-level (byte) vocabulary, 4 layers of width 128. */
  public static ModelConfig defaultShape() {
    return new ModelConfig(ModelConfig.QWEN2, 128, 384, 4, 4, 2, 32, 264, 1e-6, 10000.0, null, 512, true, true, false,
        false, List.of(ByteLevelVocabulary.IM_END_ID));
  }

  /** The default share of domain-C problems in pre-training (see {@link Settings#longChainShare}). */
  public static final double LONG_CHAIN_SHARE = 0.01;

  public static Settings defaults() {
    return new Settings(defaultShape(), 1200, 64, 3e-3, 60, 2, 8, 0.5, 5, LONG_CHAIN_SHARE, 0);
  }

  public record Result(int steps, double lastLoss, long tokens, double seconds, long parameters) {}

  private Pretrain() {}

  /** Writes a trained base to {@code out}: {@code model.safetensors}, {@code config.json}, {@code tokenizer.json}. */
  public static Result train(Path out, Settings s, WeaverSft.Listener listener) throws IOException {
    TinyCheckpoint.write(out, s.shape(), DType.F32, 1, s.seed()); // the random initial weights, config and tokenizer
    try (TextTokenizer tokenizer = TextTokenizer.load(out)) {
      int n = s.steps() * s.batchSize();
      List<ArithmeticTasks.Example> a = ArithmeticTasks.generate(ArithmeticTasks.Domain.A, n, s.maxOperations(), s.seed() + 1);
      List<ArithmeticTasks.Example> c = ArithmeticTasks.generate(ArithmeticTasks.Domain.C, n, 1, s.seed() + 2);
      SplittableRandom pick = new SplittableRandom(s.seed() + 3);
      List<TokenizedExample> pool = new ArrayList<>();
      for (int i = 0; i < n; i++) {
        ArithmeticTasks.Example e = pick.nextDouble() < s.longChainShare() ? c.get(i) : a.get(i);
        pool.add(TokenizedExample.of(tokenizer, ChatTemplate.userPrompt(e.prompt()), e.answer()));
      }
      DelimiterTable delimiters = DelimiterTable.build(tokenizer, s.shape().vocabSize(), DelimiterTable.DEFAULT);
      return fit(out, pool, delimiters, s.fillerSlots(), random -> filler(s, random, s.shape().hiddenSize()),
          s.steps(), s.batchSize(), s.lr(), s.warmupSteps(), s.seed(), listener);
    }
  }

  /**
   * Full fine-tuning of every weight of the base at {@code base} on {@code data}, written to {@code out} (a copy of
   * the base's directory with new weights): parametric memory, the baseline MemGen argues against.
   */
  public static Result finetune(Path base, Path out, List<TokenizedExample> data, int steps, int batchSize, double lr,
      int warmupSteps, long seed, WeaverSft.Listener listener) throws IOException {
    Files.createDirectories(out);
    for (String file : List.of("config.json", "tokenizer.json", "model.safetensors")) {
      Files.copy(base.resolve(file), out.resolve(file), StandardCopyOption.REPLACE_EXISTING);
    }
    DelimiterTable none = DelimiterTable.ofTokenIds(Checkpoint.open(base).config().vocabSize(), id -> false);
    return fit(out, data, none, 0, random -> null, steps, batchSize, lr, warmupSteps, seed, listener);
  }

  /** Trains every weight of the checkpoint at {@code dir} on {@code pool} and writes them back. */
  private static Result fit(Path dir, List<TokenizedExample> pool, DelimiterTable delimiters, int fillerSlots,
      java.util.function.Function<SplittableRandom, TeacherForcing.MemorySource> memorySlots, int steps, int batchSize,
      double lr, int warmupSteps, long seed, WeaverSft.Listener listener) throws IOException {
    try (Decoder model = Decoder.load(dir); NDManager manager = model.manager().newSubManager()) {
      Map<String, NDArray> params = model.parameters();
      params.values().forEach(p -> p.setRequiresGradient(true));
      long count = params.values().stream().mapToLong(NDArray::size).sum();
      AdamW optimizer = new AdamW(params, new AdamW.Settings(0.9, 0.95, 1e-8, 0.1, 1.0), manager);
      CosineSchedule schedule = new CosineSchedule(lr, warmupSteps, steps, 0.1);
      Batches<TokenizedExample> batches = new Batches<>(pool, batchSize, seed);
      TeacherForcing forcing = new TeacherForcing(model, delimiters, fillerSlots);
      Engine engine = model.manager().getEngine();
      double loss = Double.NaN;
      long tokens = 0;
      long t0 = System.nanoTime();
      for (int step = 0; step < steps; step++) {
        long stepStart = System.nanoTime();
        List<TokenizedExample> batch = batches.get(step);
        try (NDManager m = manager.newSubManager(); GradientCollector collector = engine.newGradientCollector()) {
          TeacherForcing.Loss l = forcing.loss(m, batch, memorySlots.apply(new SplittableRandom(seed * 31 + step)));
          collector.backward(l.sum().div(l.tokens()));
          loss = l.sum().getFloat() / l.tokens();
        }
        int stepTokens = batch.stream().mapToInt(TokenizedExample::length).sum();
        tokens += stepTokens;
        double rate = schedule.at(step);
        double norm = optimizer.step(rate);
        listener.step(step + 1, steps, loss, rate, norm, stepTokens / ((System.nanoTime() - stepStart) / 1e9));
      }
      writeCheckpoint(dir, model);
      return new Result(steps, loss, tokens, (System.nanoTime() - t0) / 1e9, count);
    }
  }

  /** Random rows at memory slots: Gaussian, each block with its own scale, so no particular norm is special. */
  static TeacherForcing.MemorySource filler(Settings s, SplittableRandom random, int hidden) {
    return (kind, prefixes) -> {
      List<NDArray> rows = new ArrayList<>(prefixes.size());
      for (NDArray prefix : prefixes) {
        int k = kind == Weaver.Kind.PROMPT ? random.nextInt(s.maxFillerRows() + 1)
            : random.nextDouble() < s.delimiterFillProbability() ? 1 + random.nextInt(s.maxFillerRows()) : 0;
        float[] values = new float[k * hidden];
        // Row norms log-uniform in [0.1, 10]: a fresh weaver's latents have norms near 6, an embedding row near 1.
        double scale = Math.pow(10, 2 * random.nextDouble() - 1) / Math.sqrt(hidden);
        for (int i = 0; i < values.length; i++) {
          values[i] = (float) (random.nextGaussian() * scale);
        }
        rows.add(prefix.getManager().create(values, new Shape(k, hidden)));
      }
      return rows;
    };
  }

  /** The decoder's weights in Hugging Face names (fused q/k/v and gate/up split back), replacing the init. */
  static void writeCheckpoint(Path out, Decoder model) throws IOException {
    ModelConfig c = model.config();
    long q = (long) c.numHeads() * c.headDim();
    long kv = (long) c.numKvHeads() * c.headDim();
    long inter = c.intermediateSize();
    List<SafeTensorsWriter.Tensor> tensors = new ArrayList<>();
    for (Map.Entry<String, NDArray> e : model.parameters().entrySet()) {
      String name = e.getKey();
      NDArray t = e.getValue();
      if (name.contains("qkv_proj")) {
        String suffix = name.substring(name.lastIndexOf('.')); // .weight or .bias
        String prefix = name.substring(0, name.indexOf("qkv_proj"));
        tensors.add(SafeTensorsWriter.Tensor.of(prefix + "q_proj" + suffix, t.get("0:" + q)));
        tensors.add(SafeTensorsWriter.Tensor.of(prefix + "k_proj" + suffix, t.get(q + ":" + (q + kv))));
        tensors.add(SafeTensorsWriter.Tensor.of(prefix + "v_proj" + suffix, t.get((q + kv) + ":")));
      } else if (name.contains("gate_up_proj")) {
        String suffix = name.substring(name.lastIndexOf('.'));
        String prefix = name.substring(0, name.indexOf("gate_up_proj"));
        tensors.add(SafeTensorsWriter.Tensor.of(prefix + "gate_proj" + suffix, t.get("0:" + inter)));
        tensors.add(SafeTensorsWriter.Tensor.of(prefix + "up_proj" + suffix, t.get(inter + ":")));
      } else {
        tensors.add(SafeTensorsWriter.Tensor.of(name, t));
      }
    }
    // Into a new file renamed over the old: the running decoder's tensors may still map the old one.
    Path staging = Files.createTempDirectory(out, ".trained");
    TinyCheckpoint.writeShards(staging, tensors, DType.F32, 1);
    Files.move(staging.resolve("model.safetensors"), out.resolve("model.safetensors"), StandardCopyOption.REPLACE_EXISTING,
        StandardCopyOption.ATOMIC_MOVE);
    Directories.deleteRecursively(staging);
  }
}
