package dev.memgen.log;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.memgen.proto.v1.AdapterPublished;
import dev.memgen.proto.v1.Trajectory;
import org.apache.kafka.common.errors.SerializationException;
import org.junit.jupiter.api.Test;

class RecordsTest {
  @Test
  void trajectoriesRoundTrip() {
    Trajectory t = Trajectory.newBuilder().setTrajectoryId("t-1").setSessionId("s-1").addPromptTokenIds(257)
        .addCompletionTokenIds(42).setLatencyMs(12).build();
    byte[] bytes = Records.TRAJECTORY.serializer().serialize(Topics.TRAJECTORIES, t);
    assertEquals(t, Records.TRAJECTORY.deserializer().deserialize(Topics.TRAJECTORIES, bytes));
  }

  @Test
  void malformedRecordsNameTopicAndType() {
    byte[] garbage = {(byte) 0xFF, (byte) 0xFF, (byte) 0xFF, 0x01};
    SerializationException e = assertThrows(SerializationException.class,
        () -> Records.ADAPTER_PUBLISHED.deserialize(Topics.ADAPTERS, garbage));
    assertTrue(e.getMessage().contains("memgen.adapters") && e.getMessage().contains("memgen.v1.AdapterPublished"), e.getMessage());
  }

  @Test
  void tombstonesStayNull() {
    assertNull(Records.ADAPTER_PUBLISHED.deserialize(Topics.ADAPTERS, null));
    assertNull(Records.ADAPTER_PUBLISHED.serialize(Topics.ADAPTERS, (AdapterPublished) null));
  }

  @Test
  void adapterTopicIsCompactedAndEventTopicsAreNot() {
    assertEquals("compact", Topics.settings(Topics.ADAPTERS).get("cleanup.policy"));
    assertEquals("delete", Topics.settings(Topics.TRAJECTORIES).get("cleanup.policy"));
    assertEquals("memgen.feedback.dlq", Topics.deadLetter(Topics.FEEDBACK));
  }
}
