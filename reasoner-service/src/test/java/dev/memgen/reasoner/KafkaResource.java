package dev.memgen.reasoner;

import dev.memgen.log.ExperienceLog;
import dev.memgen.log.broker.KafkaBroker;
import io.quarkus.test.common.QuarkusTestResourceLifecycleManager;
import java.nio.file.Files;
import java.util.Map;

/** A real Kafka broker (child JVM) with MemGen's topics, for a Quarkus test; sets memgen.log.bootstrap. */
public class KafkaResource implements QuarkusTestResourceLifecycleManager {
  static volatile KafkaBroker broker;

  @Override
  public Map<String, String> start() {
    try {
      broker = KafkaBroker.start(Files.createTempDirectory("memgen-kafka"), 0);
      try (ExperienceLog log = new ExperienceLog(broker.bootstrapServers())) {
        log.ensureTopics(1);
      }
      return Map.of("memgen.log.bootstrap", broker.bootstrapServers());
    } catch (Exception e) {
      throw new IllegalStateException("could not start the test broker", e);
    }
  }

  @Override
  public void stop() {
    if (broker != null) {
      broker.stop();
    }
  }
}
