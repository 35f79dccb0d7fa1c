package dev.memgen.reasoner;

import dev.memgen.engine.core.EngineCore;
import dev.memgen.model.Decoder;
import dev.memgen.model.ModelConfig;
import dev.memgen.model.checkpoint.Checkpoint;
import dev.memgen.model.checkpoint.CheckpointException;
import dev.memgen.model.text.ChatTemplate;
import dev.memgen.model.text.TextTokenizer;
import io.quarkus.runtime.Startup;
import jakarta.annotation.PreDestroy;
import jakarta.enterprise.context.ApplicationScoped;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Set;
import org.eclipse.microprofile.config.inject.ConfigProperty;
import org.jboss.logging.Logger;

/**
 * The frozen base, loaded once at startup and shared by every call, and the {@link EngineCore} that owns its decoding:
 * every Generate and every OpenAI request joins that one continuously batched loop.
 *
 * <p>The tokenizer is optional: a checkpoint without {@code tokenizer.json} still serves token-id prompts;
 * text and chat prompts then fail with FAILED_PRECONDITION. A {@code tokenizer.json} that exists but cannot be
 * read fails startup, like a bad checkpoint.
 *
 * <p>{@link Startup} loads it on the main thread while the application starts (a bad directory stops the start).
 * It is {@link ApplicationScoped} rather than a singleton so that beans built earlier, on an event-loop thread
 * (the gRPC services are), get a lazy proxy and never load a multi-gigabyte checkpoint on the event loop.
 */
@Startup
@ApplicationScoped
public class ReasonerModel {
  private static final Logger LOG = Logger.getLogger(ReasonerModel.class);

  private final Path dir;
  private final String fingerprint;
  private final Decoder decoder;
  private final EngineCore engine;
  private final TextTokenizer tokenizer; // null when the checkpoint has no tokenizer.json
  private final Set<Integer> baseStopTokens;

  ReasonerModel(@ConfigProperty(name = "memgen.model.dir") String modelDir,
      @ConfigProperty(name = "memgen.engine.max-batch", defaultValue = "16") int maxBatch,
      @ConfigProperty(name = "memgen.engine.max-queue", defaultValue = "64") int maxQueue,
      @ConfigProperty(name = "memgen.engine.prefill-chunk", defaultValue = "256") int prefillChunk,
      @ConfigProperty(name = "memgen.engine.prefix-cache-tokens", defaultValue = "8192") int prefixCacheTokens) {
    EngineCore.Limits limits;
    try {
      limits = new EngineCore.Limits(maxBatch, maxQueue, prefillChunk, prefixCacheTokens);
    } catch (IllegalArgumentException e) {
      throw new IllegalStateException("memgen.engine.*: " + e.getMessage(), e);
    }
    this.dir = Path.of(modelDir);
    long t0 = System.nanoTime();
    Decoder d = null;
    TextTokenizer t = null;
    String f;
    try {
      checkDirectory(dir);
      f = Checkpoint.open(dir).fingerprint();
      d = Decoder.load(dir);
      t = Files.isRegularFile(dir.resolve("tokenizer.json")) ? TextTokenizer.load(dir) : null;
    } catch (CheckpointException | IllegalArgumentException | IllegalStateException e) {
      if (d != null) {
        d.close();
      }
      throw new IllegalStateException("memgen.model.dir=" + modelDir + " is not a usable checkpoint: "
          + e.getMessage(), e);
    }
    this.fingerprint = f;
    this.decoder = d;
    this.tokenizer = t;
    this.engine = new EngineCore(d, limits, "memgen-engine");
    this.baseStopTokens = Set.copyOf(ChatTemplate.stopTokens(d.config(), t));
    ModelConfig c = d.config();
    LOG.infof("loaded %s from %s in %d ms: %d layers, hidden %d, vocab %d, context %d, tokenizer %s, stop ids %s; %s",
        c.architecture(), dir, (System.nanoTime() - t0) / 1_000_000, c.numLayers(), c.hiddenSize(), c.vocabSize(),
        c.maxPositions(), t == null ? "none (token-id prompts only)" : "yes", baseStopTokens, limits);
  }

  /** A clear message for the commonest mistakes, before the checkpoint loader reports a missing file. */
  static void checkDirectory(Path dir) {
    if (!Files.exists(dir)) {
      throw new IllegalArgumentException("directory does not exist");
    }
    if (!Files.isDirectory(dir)) {
      throw new IllegalArgumentException("not a directory (expected a Hugging Face checkpoint directory)");
    }
  }

  public Path dir() {
    return dir;
  }

  /** The base checkpoint's fingerprint: memories and memory services must have been made for it. */
  public String fingerprint() {
    return fingerprint;
  }

  /** The frozen base itself (shared with embedded memory: one copy of the weights). */
  public Decoder decoder() {
    return decoder;
  }

  public ModelConfig config() {
    return decoder.config();
  }

  /** The engine every request decodes in. */
  public EngineCore engine() {
    return engine;
  }

  /** The checkpoint's tokenizer, or null when it has no {@code tokenizer.json}. */
  public TextTokenizer tokenizer() {
    return tokenizer;
  }

  /** Token ids that always end a generation (before the request adds its own). */
  public Set<Integer> baseStopTokens() {
    return baseStopTokens;
  }

  @PreDestroy
  void close() {
    engine.close();
    if (tokenizer != null) {
      tokenizer.close();
    }
    decoder.close();
  }
}
