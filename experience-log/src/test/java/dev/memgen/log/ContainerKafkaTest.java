package dev.memgen.log;

import static org.junit.jupiter.api.Assertions.assertEquals;

import dev.memgen.proto.v1.Trajectory;
import java.time.Duration;
import java.util.List;
import java.util.Map;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.Config;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.config.ConfigResource;
import org.junit.jupiter.api.Test;
import org.testcontainers.junit.jupiter.Container;
import org.testcontainers.junit.jupiter.Testcontainers;
import org.testcontainers.kafka.KafkaContainer;

/**
 * The experience log against Kafka in a container, where a Docker engine exists (Testcontainers; skipped where none
 * does, as on the project's CI machines, whose tests use the child-JVM broker): the topics come with the code's
 * settings, a trajectory lands on its adapter's partition and is read back at its offset.
 */
@Testcontainers(disabledWithoutDocker = true)
class ContainerKafkaTest {
  @Container static final KafkaContainer KAFKA = new KafkaContainer("apache/kafka:4.1.0");

  @Test
  void topicsRecordsAndPartitionsOnAContainerBroker() throws Exception {
    String bootstrap = KAFKA.getBootstrapServers();
    try (ExperienceLog log = new ExperienceLog(bootstrap)) {
      log.ensureTopics(3);
      Trajectory t = Trajectory.newBuilder().setTrajectoryId("t-1").setSessionId("s-1").setAdapterName("fleet-a")
          .setSchemaVersion(1).addPromptTokenIds(1).addCompletionTokenIds(2).build();
      RecordMetadata m = log.publish(Topics.TRAJECTORIES, t.getAdapterName(), t).get();
      assertEquals(Topics.partitionOf("fleet-a", 3), m.partition(), "an adapter's records land on its partition");
      Map<String, ConsumerRecord<String, byte[]>> read = ExperienceLog.readAt(bootstrap,
          List.of(Topics.TRAJECTORIES + "-" + m.partition() + "@" + m.offset()), "container-test", Duration.ofSeconds(30));
      assertEquals(t, Trajectory.parseFrom(read.values().iterator().next().value()));
    }
    try (Admin admin = Admin.create(Map.of(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap))) {
      ConfigResource adapters = new ConfigResource(ConfigResource.Type.TOPIC, Topics.ADAPTERS);
      Config c = admin.describeConfigs(List.of(adapters)).all().get().get(adapters);
      assertEquals("compact", c.get("cleanup.policy").value(), "the adapters topic keeps every adapter's latest version");
    }
  }
}
