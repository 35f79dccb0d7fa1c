package dev.memgen.reasoner;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.memgen.log.Topics;
import dev.memgen.model.checkpoint.Checkpoint;
import dev.memgen.proto.v1.FinishReason;
import dev.memgen.proto.v1.LatentKind;
import dev.memgen.proto.v1.Trajectory;
import dev.memgen.rpc.TinyModelResource;
import io.quarkus.test.junit.QuarkusTest;
import io.quarkus.test.junit.QuarkusTestProfile;
import io.quarkus.test.junit.TestProfile;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.eclipse.microprofile.config.inject.ConfigProperty;
import org.junit.jupiter.api.Test;

/** Every finished generation becomes one Trajectory on the real broker, with what the response said. */
@QuarkusTest
@TestProfile(TrajectoryLogTest.WithLog.class)
class TrajectoryLogTest {
  public static class WithLog implements QuarkusTestProfile {
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

  @ConfigProperty(name = "memgen.model.dir") String modelDir;

  @Test
  void aFinishedGenerationIsPublishedAsATrajectory() throws Exception {
    ReasonerWithMemoryTest.Streamed s = ReasonerWithMemoryTest.generate(ReasonerWithMemoryTest.chat(30, true));
    String id = s.finished().getTrajectoryId();
    assertFalse(id.isEmpty(), "Finished carries the trajectory id");

    Trajectory t = find(id);
    assertEquals(s.finished().getSessionId(), t.getSessionId());
    assertEquals(s.tokens(), t.getCompletionTokenIdsList());
    assertEquals(s.finished().getPromptTokens(), t.getPromptTokenIdsCount());
    assertEquals(s.events().size(), t.getInsertionsCount(), "one insertion point per MemoryEvent");
    assertEquals(LatentKind.PROMPT, t.getInsertions(0).getKind());
    assertEquals(s.events().get(0).getPosition(), t.getInsertions(0).getPosition());
    assertEquals("default", t.getAdapterName());
    assertEquals(Checkpoint.open(Path.of(modelDir)).fingerprint(), t.getBaseFingerprint());
    assertTrue(t.getMemoryEnabled());
    assertEquals(1, t.getSchemaVersion());
    assertEquals(s.finished().getReason() == FinishReason.STOP_TOKEN ? FinishReason.STOP_TOKEN : FinishReason.LENGTH,
        t.getFinishReason());
    assertTrue(t.hasCreatedAt() && t.hasSampling());
  }

  /** Reads the trajectories topic until the record with {@code id} arrives (delivery is asynchronous). */
  static Trajectory find(String id) throws Exception {
    Properties p = new Properties();
    p.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, KafkaResource.broker.bootstrapServers());
    p.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "false");
    try (KafkaConsumer<String, byte[]> c = new KafkaConsumer<>(p, new StringDeserializer(), new ByteArrayDeserializer())) {
      TopicPartition tp = new TopicPartition(Topics.TRAJECTORIES, 0);
      c.assign(List.of(tp));
      c.seekToBeginning(List.of(tp));
      long deadline = System.nanoTime() + Duration.ofSeconds(60).toNanos();
      while (System.nanoTime() < deadline) {
        for (ConsumerRecord<String, byte[]> r : c.poll(Duration.ofMillis(500))) {
          Trajectory t = Trajectory.parseFrom(r.value());
          if (t.getTrajectoryId().equals(id)) {
            assertEquals(t.getSessionId(), r.key(), "keyed by session");
            return t;
          }
        }
      }
    }
    throw new AssertionError("trajectory " + id + " never reached " + Topics.TRAJECTORIES);
  }
}
