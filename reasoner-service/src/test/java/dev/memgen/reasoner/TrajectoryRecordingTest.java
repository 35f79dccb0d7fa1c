package dev.memgen.reasoner;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.memgen.log.Topics;
import dev.memgen.model.checkpoint.Checkpoint;
import dev.memgen.proto.v1.FinishReason;
import dev.memgen.proto.v1.LatentKind;
import dev.memgen.proto.v1.Trajectory;
import io.quarkus.test.junit.QuarkusTest;
import io.quarkus.test.junit.TestProfile;
import java.nio.file.Path;
import org.eclipse.microprofile.config.inject.ConfigProperty;
import org.junit.jupiter.api.Test;

/** Every finished generation becomes one Trajectory on the real broker, with what the response said. */
@QuarkusTest
@TestProfile(ExperienceLogProfile.class)
class TrajectoryRecordingTest {
  @ConfigProperty(name = "memgen.model.dir") String modelDir;

  @Test
  void aFinishedGenerationIsPublishedAsATrajectory() throws Exception {
    ReasonerWithMemoryTest.Streamed s = ReasonerWithMemoryTest.generate(ReasonerWithMemoryTest.chat(30, true));
    String id = s.finished().getTrajectoryId();
    assertFalse(id.isEmpty(), "Finished carries the trajectory id");

    KafkaResource.Received<Trajectory> received =
        KafkaResource.await(Topics.TRAJECTORIES, Trajectory.parser(), t -> t.getTrajectoryId().equals(id));
    Trajectory t = received.value();
    assertEquals(t.getAdapterName(), received.key(), "keyed by adapter: each adapter's stream is one partition");
    assertEquals(s.finished().getSessionId(), t.getSessionId());
    assertEquals(s.tokens(), t.getCompletionTokenIdsList());
    assertEquals(s.finished().getPromptTokens(), t.getPromptTokenIdsCount());
    assertEquals(s.events().size(), t.getInsertionsCount(), "one insertion point per MemoryEvent");
    assertEquals(LatentKind.PROMPT, t.getInsertions(0).getKind());
    assertEquals(s.events().get(0).getPosition(), t.getInsertions(0).getPosition());
    assertEquals("default", t.getAdapterName());
    assertEquals(Checkpoint.open(Path.of(modelDir)).fingerprint(), t.getBaseFingerprint());
    assertTrue(t.getMemoryEnabled());
    assertEquals(0, t.getTriggerVersion(), "the trigger was inactive");
    assertEquals(1, t.getSchemaVersion());
    assertEquals(s.finished().getReason() == FinishReason.STOP_TOKEN ? FinishReason.STOP_TOKEN : FinishReason.LENGTH,
        t.getFinishReason());
    assertTrue(t.hasCreatedAt() && t.hasSampling());
  }
}
