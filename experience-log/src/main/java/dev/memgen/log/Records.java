package dev.memgen.log;

import com.google.protobuf.Message;
import dev.memgen.proto.v1.AdapterPublished;
import dev.memgen.proto.v1.Feedback;
import dev.memgen.proto.v1.Trajectory;
import java.util.List;

/** The serde of each topic's record type. */
public final class Records {
  public static final ProtoSerde<Trajectory> TRAJECTORY = new ProtoSerde<>(Trajectory.parser(), "memgen.v1.Trajectory");
  public static final ProtoSerde<Feedback> FEEDBACK = new ProtoSerde<>(Feedback.parser(), "memgen.v1.Feedback");
  public static final ProtoSerde<AdapterPublished> ADAPTER_PUBLISHED =
      new ProtoSerde<>(AdapterPublished.parser(), "memgen.v1.AdapterPublished");
  private static final List<ProtoSerde<? extends Message>> ALL = List.of(TRAJECTORY, FEEDBACK, ADAPTER_PUBLISHED);

  private Records() {}

  /**
   * What is wrong with {@code parsed}, the record in {@code bytes} read as {@code expected}, whose
   * {@code schema_version} is 0 (unset: every MemGen writer sets it). Protobuf parses almost any bytes as almost any
   * message, so a record of another type usually "decodes": this says which MemGen type the bytes are instead when one
   * fits exactly (its schema_version set, no unknown fields), and otherwise how many fields the expected type does not
   * define.
   */
  public static String unversioned(byte[] bytes, Message parsed, ProtoSerde<? extends Message> expected) {
    for (ProtoSerde<? extends Message> other : ALL) {
      if (other == expected) {
        continue;
      }
      Message m = other.deserializeOrNull(bytes);
      if (m != null && m.getUnknownFields().asMap().isEmpty() && schemaVersion(m) > 0) {
        return "the value (" + bytes.length + " bytes) is a " + other.typeName() + " (schema_version " + schemaVersion(m)
            + "), not a " + expected.typeName() + ": a record of the wrong type in this topic";
      }
    }
    int unknown = parsed.getUnknownFields().asMap().size();
    if (unknown > 0) {
      return "not a " + expected.typeName() + ": schema_version is missing and the value (" + bytes.length + " bytes) has "
          + unknown + " field(s) this type does not define";
    }
    return "schema_version is missing (0): not a " + expected.typeName() + " written by MemGen (which sets 1)";
  }

  /** The record's {@code schema_version} field (every MemGen record has one). */
  public static int schemaVersion(Message m) {
    return (Integer) m.getField(m.getDescriptorForType().findFieldByName("schema_version"));
  }
}
