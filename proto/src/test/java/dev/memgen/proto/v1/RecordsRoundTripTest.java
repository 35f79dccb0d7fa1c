package dev.memgen.proto.v1;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.google.protobuf.InvalidProtocolBufferException;
import com.google.protobuf.Timestamp;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import org.junit.jupiter.api.Test;

/** Every Kafka record survives toByteArray/parseFrom with all its fields, and the .proto files ship as resources. */
class RecordsRoundTripTest {

  private static final Timestamp NOW = Timestamp.newBuilder().setSeconds(1_763_900_000L).setNanos(123_000_000).build();

  @Test
  void trajectoryRoundTrips() throws InvalidProtocolBufferException {
    Trajectory t = Trajectory.newBuilder()
        .setTrajectoryId("traj-1").setSessionId("sess-1").setAdapterName("default")
        .setWeaverVersion(7).setTriggerVersion(3).setBaseFingerprint("sha256:abc")
        .addAllPromptTokenIds(java.util.List.of(1, 2, 3))
        .addAllCompletionTokenIds(java.util.List.of(4, 11, 5, 2))
        .addInsertions(InsertionPoint.newBuilder().setPosition(3).setTokenIndex(0).setKind(LatentKind.PROMPT).setK(8))
        .addInsertions(InsertionPoint.newBuilder().setPosition(13).setTokenIndex(2).setKind(LatentKind.INFERENCE)
            .setK(8).setTriggerProbability(0.8f))
        .addTriggerDecisions(TriggerDecision.newBuilder().setPosition(12).setTokenIndex(2).setProbability(0.8f).setInvoke(true))
        .setSampling(SamplingParams.newBuilder().setTemperature(0.7f).setTopK(40).setTopP(0.9f).setSeed(42))
        .setLatencyMs(1234).setCreatedAt(NOW).setFinishReason(FinishReason.STOP_TOKEN)
        .setSchemaVersion(1).setMemoryEnabled(true)
        .build();
    Trajectory back = Trajectory.parseFrom(t.toByteArray());
    assertEquals(t, back);
    assertTrue(back.getInsertions(1).hasTriggerProbability());
    assertTrue(!back.getInsertions(0).hasTriggerProbability(), "prompt latents carry no trigger probability");
    assertTrue(back.getSampling().hasSeed());
    assertEquals(FinishReason.STOP_TOKEN, back.getFinishReason());
  }

  @Test
  void feedbackRoundTrips() throws InvalidProtocolBufferException {
    Feedback f = Feedback.newBuilder().setTrajectoryId("traj-1").setReward(1.0).setSource("boxed-exact-match")
        .setComment("correct").setCreatedAt(NOW).setFeedbackId("fb-1").setSchemaVersion(1).build();
    assertEquals(f, Feedback.parseFrom(f.toByteArray()));
  }

  @Test
  void adapterPublishedRoundTrips() throws InvalidProtocolBufferException {
    AdapterPublished a = AdapterPublished.newBuilder()
        .setAdapterName("default").setComponent(AdapterComponent.WEAVER).setVersion(8).setParentVersion(7)
        .setBaseFingerprint("sha256:abc").setSha256("0".repeat(64)).setUri("file:///tmp/adapters/default/weaver-8.safetensors")
        .addTrainedOn(OffsetRange.newBuilder().setTopic("memgen.trajectories").setPartition(0).setFromOffset(100).setToOffset(200))
        .addTrainedOn(OffsetRange.newBuilder().setTopic("memgen.feedback").setPartition(1).setFromOffset(5).setToOffset(9))
        .putEvalMetrics("accuracy_a", 0.67).putEvalMetrics("accuracy_b", 0.41)
        .setCreatedAt(NOW).setReason("window").setSchemaVersion(1)
        .build();
    AdapterPublished back = AdapterPublished.parseFrom(a.toByteArray());
    assertEquals(a, back);
    assertEquals(0.41, back.getEvalMetricsOrThrow("accuracy_b"));
    assertEquals(200, back.getTrainedOn(0).getToOffset());
  }

  @Test
  void tensorBytesAreLittleEndianRowMajor() throws InvalidProtocolBufferException {
    float[] values = {1f, 2f, 3f, 4f, 5f, 6f};
    Tensor t = Tensors.f32(new long[] {2, 3}, values);
    Tensor back = Tensor.parseFrom(t.toByteArray());
    assertEquals(DType.F32, back.getDtype());
    assertEquals(java.util.List.of(2L, 3L), back.getShapeList());
    assertEquals(24, back.getData().size());
    float[] read = Tensors.toF32(back);
    assertEquals(6f, read[5]);
    assertEquals(4f, read[1 * 3 + 0], "row-major: row 1, column 0");
  }

  @Test
  void protoFilesArePackagedAsResources() {
    for (String name : new String[] {"tensor", "common", "reasoner", "memory", "trainer", "records"}) {
      assertNotNull(getClass().getClassLoader().getResource("memgen/v1/" + name + ".proto"), name + ".proto on the classpath");
    }
  }

  /** Tiny F32 helpers for the tests. */
  static final class Tensors {
    static Tensor f32(long[] shape, float[] values) {
      ByteBuffer buf = ByteBuffer.allocate(values.length * 4).order(ByteOrder.LITTLE_ENDIAN);
      for (float v : values) buf.putFloat(v);
      Tensor.Builder b = Tensor.newBuilder().setDtype(DType.F32).setData(com.google.protobuf.ByteString.copyFrom(buf.array()));
      for (long d : shape) b.addShape(d);
      return b.build();
    }

    static float[] toF32(Tensor t) {
      ByteBuffer buf = t.getData().asReadOnlyByteBuffer().order(ByteOrder.LITTLE_ENDIAN);
      float[] out = new float[buf.remaining() / 4];
      for (int i = 0; i < out.length; i++) out[i] = buf.getFloat();
      return out;
    }
  }
}
