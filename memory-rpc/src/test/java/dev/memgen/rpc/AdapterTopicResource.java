package dev.memgen.rpc;

import dev.memgen.log.ExperienceLog;
import dev.memgen.log.broker.KafkaBroker;
import dev.memgen.log.store.AdapterStore;
import dev.memgen.model.checkpoint.Checkpoint;
import io.quarkus.test.common.QuarkusTestResourceLifecycleManager;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Comparator;
import java.util.HashMap;
import java.util.Map;
import java.util.stream.Stream;

/**
 * What a service that follows adapter announcements (weaver-service, trigger-service) needs, for a Quarkus test: a tiny random base whose starting
 * memory is adapter "default" v1 (also published to the store as v1, so it can be rolled back to), an adapter store,
 * and a real Kafka broker (child JVM) with MemGen's topics.
 *
 * <p>It announces nothing itself: protobuf classes used here, while Quarkus builds the application beside it, can
 * be loaded by both classloaders and fail with a LinkageError now and then. Tests announce from the test class.
 */
public class AdapterTopicResource implements QuarkusTestResourceLifecycleManager {
  /** The manifest seed of the starting memory (TinyMemory's own). */
  public static final long STARTING_SEED = 5;

  private final TinyModelResource model = new TinyModelResource();
  private KafkaBroker broker;
  private Path dir;

  @Override
  public Map<String, String> start() {
    try {
      model.init(Map.of());
      Map<String, String> config = new HashMap<>(model.start());
      Path modelDir = Path.of(config.get("memgen.model.dir"));
      String fingerprint = Checkpoint.open(modelDir).fingerprint();
      dir = Files.createTempDirectory("memgen-adapters-test");
      Path memory = dir.resolve("memory");
      TinyMemory.write(modelDir, memory, TinyMemory.everyCharacter(), 1, STARTING_SEED);
      AdapterStore store = AdapterStore.open(dir.resolve("store"));
      store.publish("default", memory, 0, fingerprint, Map.of(), Map.of());

      broker = KafkaBroker.start(dir.resolve("kafka"), 0);
      try (ExperienceLog log = new ExperienceLog(broker.bootstrapServers())) {
        log.ensureTopics(1);
      }
      config.put("memgen.memory.dir", memory.toString());
      config.put("memgen.log.bootstrap", broker.bootstrapServers());
      config.put("memgen.adapters.store", store.root().toString());
      config.put("memgen.adapters.cache-dir", dir.resolve("cache").toString());
      return config;
    } catch (Exception e) {
      stop();
      throw new IllegalStateException("could not prepare the adapter topic, store and broker", e);
    }
  }

  @Override
  public void stop() {
    if (broker != null) {
      broker.stop();
      broker = null;
    }
    model.stop();
    if (dir != null) {
      try (Stream<Path> files = Files.walk(dir)) {
        files.sorted(Comparator.reverseOrder()).forEach(p -> p.toFile().delete());
      } catch (IOException e) {
        // a temp dir left behind is harmless
      }
    }
  }
}
