package dev.memgen.log;

import com.google.protobuf.InvalidProtocolBufferException;
import com.google.protobuf.Message;
import com.google.protobuf.Parser;
import org.apache.kafka.common.errors.SerializationException;
import org.apache.kafka.common.serialization.Deserializer;
import org.apache.kafka.common.serialization.Serde;
import org.apache.kafka.common.serialization.Serializer;

/**
 * Kafka serde for one protobuf record type. A record that does not parse raises a {@link SerializationException}
 * naming the topic, the type and the protobuf error, so a consumer can route it to the dead-letter topic.
 */
public final class ProtoSerde<T extends Message> implements Serde<T>, Serializer<T>, Deserializer<T> {
  private final Parser<T> parser;
  private final String typeName;

  public ProtoSerde(Parser<T> parser, String typeName) {
    this.parser = parser;
    this.typeName = typeName;
  }

  /** The record type's full name, e.g. {@code memgen.v1.Trajectory}. */
  public String typeName() {
    return typeName;
  }

  @Override
  public byte[] serialize(String topic, T record) {
    return record == null ? null : record.toByteArray();
  }

  @Override
  public T deserialize(String topic, byte[] data) {
    if (data == null) {
      return null; // a tombstone (compacted topics)
    }
    try {
      return parser.parseFrom(data);
    } catch (InvalidProtocolBufferException e) {
      throw new SerializationException("topic " + topic + ": not a valid " + typeName + " record ("
          + data.length + " bytes): " + e.getMessage(), e);
    }
  }

  /** The record in {@code data}, or null for a tombstone or bytes that are not one (for readers that skip those). */
  public T deserializeOrNull(byte[] data) {
    try {
      return data == null ? null : parser.parseFrom(data);
    } catch (InvalidProtocolBufferException e) {
      return null;
    }
  }

  @Override
  public Serializer<T> serializer() {
    return this;
  }

  @Override
  public Deserializer<T> deserializer() {
    return this;
  }

  @Override
  public void configure(java.util.Map<String, ?> configs, boolean isKey) {}

  @Override
  public void close() {}
}
