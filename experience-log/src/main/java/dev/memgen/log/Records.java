package dev.memgen.log;

import dev.memgen.proto.v1.AdapterPublished;
import dev.memgen.proto.v1.Feedback;
import dev.memgen.proto.v1.Trajectory;

/** The serde of each topic's record type. */
public final class Records {
  public static final ProtoSerde<Trajectory> TRAJECTORY = new ProtoSerde<>(Trajectory.parser(), "memgen.v1.Trajectory");
  public static final ProtoSerde<Feedback> FEEDBACK = new ProtoSerde<>(Feedback.parser(), "memgen.v1.Feedback");
  public static final ProtoSerde<AdapterPublished> ADAPTER_PUBLISHED =
      new ProtoSerde<>(AdapterPublished.parser(), "memgen.v1.AdapterPublished");

  private Records() {}
}
