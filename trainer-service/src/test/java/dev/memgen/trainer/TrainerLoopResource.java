package dev.memgen.trainer;

import dev.memgen.log.broker.KafkaBroker;
import dev.memgen.model.ModelConfig;
import dev.memgen.model.checkpoint.Checkpoint;
import dev.memgen.model.checkpoint.DType;
import dev.memgen.model.checkpoint.TinyCheckpoint;
import dev.memgen.model.memory.LoraConfig;
import dev.memgen.model.memory.Memory;
import dev.memgen.model.memory.MemoryManifest;
import dev.memgen.model.text.DelimiterTable;
import io.quarkus.test.common.QuarkusTestResourceLifecycleManager;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Map;

/**
 * The trainer-service with its loop on: a real broker, a tiny random base and a fresh memory (written without native
 * code, so nothing loads before the app), an empty adapter store. Windows never fill by themselves (target 1000), so
 * the test decides when one trains, through TrainerAdmin.Publish.
 */
public class TrainerLoopResource implements QuarkusTestResourceLifecycleManager {
  static volatile KafkaBroker broker;
  static volatile Path model;

  @Override
  public Map<String, String> start() {
    try {
      Path dir = Files.createTempDirectory("memgen-trainer-service");
      broker = KafkaBroker.start(dir.resolve("kafka"), 0);
      model = dir.resolve("model");
      ModelConfig c = TinyCheckpoint.tiny("qwen2");
      TinyCheckpoint.write(model, c, DType.F32, 1, 13);
      Path memory = dir.resolve("memory");
      Memory.init(memory, c, new MemoryManifest(1, Checkpoint.open(model).fingerprint(), c.hiddenSize(), c.numLayers(), 2, 2,
          "embeddings", LoraConfig.REFERENCE, LoraConfig.REFERENCE, DelimiterTable.DEFAULT, 2), 3);
      return Map.ofEntries(
          Map.entry("memgen.log.bootstrap", broker.bootstrapServers()),
          Map.entry("memgen.log.partitions", "1"),
          Map.entry("memgen.model.dir", model.toString()),
          Map.entry("memgen.memory.dir", memory.toString()),
          Map.entry("memgen.adapters.store", dir.resolve("store").toString()),
          Map.entry("memgen.trainer.work-dir", dir.resolve("work").toString()),
          Map.entry("memgen.trainer.window", "1000"),
          Map.entry("memgen.trainer.max-window-wait", "PT1H"),
          Map.entry("memgen.trainer.eval-set", "arithmetic:2"),
          Map.entry("memgen.trainer.eval-max-new-tokens", "4"),
          Map.entry("memgen.trainer.sft-steps", "2"),
          Map.entry("memgen.trainer.sft-batch", "2"),
          Map.entry("memgen.trainer.verifier", "arithmetic"));
    } catch (Exception e) {
      throw new IllegalStateException("could not prepare the trainer's broker and model", e);
    }
  }

  @Override
  public void stop() {
    if (broker != null) {
      broker.stop();
    }
  }
}
