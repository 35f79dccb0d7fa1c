package dev.memgen.reasoner;

import dev.memgen.rpc.TinyModelResource;
import io.quarkus.test.junit.QuarkusTestProfile;
import java.util.List;
import java.util.Map;

/**
 * The app with an experience log on a real broker (and an embedded memory). Every test class that needs the log uses
 * this one profile, so they share one app and one broker: each profile costs an app start and a broker start.
 */
public class ExperienceLogProfile implements QuarkusTestProfile {
  @Override
  public List<TestResourceEntry> testResources() {
    return List.of(new TestResourceEntry(TinyModelResource.class, Map.of(TinyModelResource.MEMORY, "true")),
        new TestResourceEntry(KafkaResource.class));
  }

  @Override
  public Map<String, String> getConfigOverrides() {
    return Map.of("memgen.trigger.mode", "inactive");
  }
}
