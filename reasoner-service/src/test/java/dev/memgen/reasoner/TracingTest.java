package dev.memgen.reasoner;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.memgen.log.ExperienceLog;
import dev.memgen.log.Topics;
import dev.memgen.proto.v1.ChatMessage;
import dev.memgen.proto.v1.ChatMessages;
import dev.memgen.proto.v1.GenerateEvent;
import dev.memgen.proto.v1.GenerateRequest;
import dev.memgen.proto.v1.ReasonerGrpc;
import dev.memgen.proto.v1.Trajectory;
import io.grpc.Grpc;
import io.grpc.InsecureServerCredentials;
import io.grpc.ManagedChannel;
import io.grpc.Metadata;
import io.grpc.Server;
import io.grpc.stub.MetadataUtils;
import io.grpc.stub.StreamObserver;
import io.opentelemetry.proto.collector.trace.v1.ExportTraceServiceRequest;
import io.opentelemetry.proto.collector.trace.v1.ExportTraceServiceResponse;
import io.opentelemetry.proto.collector.trace.v1.TraceServiceGrpc;
import io.opentelemetry.proto.trace.v1.Span;
import io.quarkus.test.common.QuarkusTestResourceLifecycleManager;
import io.quarkus.test.common.WithTestResource;
import io.quarkus.test.junit.QuarkusTest;
import java.nio.charset.StandardCharsets;
import java.security.SecureRandom;
import java.time.Duration;
import java.util.HexFormat;
import java.util.Iterator;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.TimeUnit;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.header.Header;
import org.junit.jupiter.api.Test;

/**
 * A trace leads from an agent's request through the reasoner to its memory calls and into the experience log: the
 * agent's {@code traceparent} (W3C) is continued by the reasoner's span, sent on to the weaver and trigger in the
 * calls' metadata, and written into the trajectory record's Kafka headers; the spans reach an OTLP receiver. The
 * weaver and trigger are the memory services' own code over gRPC; the broker is real; the receiver is a gRPC server
 * speaking the OTLP trace protocol, as a collector does.
 */
@QuarkusTest
@WithTestResource(RemoteMemoryResource.class)
@WithTestResource(KafkaResource.class)
@WithTestResource(TracingTest.OtlpReceiver.class)
class TracingTest {
  /** An OTLP/gRPC trace receiver keeping every span it is sent; turns the reasoner's tracing on towards it. */
  public static class OtlpReceiver implements QuarkusTestResourceLifecycleManager {
    static final List<Span> SPANS = new CopyOnWriteArrayList<>();
    private Server server;

    @Override
    public Map<String, String> start() {
      try {
        server = Grpc.newServerBuilderForPort(0, InsecureServerCredentials.create())
            .addService(new TraceServiceGrpc.TraceServiceImplBase() {
              @Override
              public void export(ExportTraceServiceRequest request, StreamObserver<ExportTraceServiceResponse> out) {
                request.getResourceSpansList().forEach(r -> r.getScopeSpansList().forEach(s -> SPANS.addAll(s.getSpansList())));
                out.onNext(ExportTraceServiceResponse.getDefaultInstance());
                out.onCompleted();
              }
            }).build().start();
        return Map.of("quarkus.otel.sdk.disabled", "false",
            "quarkus.otel.exporter.otlp.endpoint", "http://127.0.0.1:" + server.getPort(),
            "quarkus.otel.bsp.schedule.delay", "100ms");
      } catch (Exception e) {
        throw new IllegalStateException(e);
      }
    }

    @Override
    public void stop() {
      if (server != null) {
        server.shutdownNow();
      }
    }
  }

  @Test
  void aTraceLeadsFromTheRequestToTheMemoryCallsAndTheTrajectory() throws Exception {
    SecureRandom random = new SecureRandom();
    String traceId = HexFormat.of().formatHex(random.generateSeed(16));
    String agentSpan = HexFormat.of().formatHex(random.generateSeed(8));
    Metadata headers = new Metadata();
    headers.put(Metadata.Key.of("traceparent", Metadata.ASCII_STRING_MARSHALLER), "00-" + traceId + "-" + agentSpan + "-01");
    ManagedChannel channel = GrpcTestChannel.open();
    String trajectoryId = "";
    try {
      Iterator<GenerateEvent> events = ReasonerGrpc.newBlockingStub(channel)
          .withInterceptors(MetadataUtils.newAttachHeadersInterceptor(headers)).withDeadlineAfter(60, TimeUnit.SECONDS)
          .generate(GenerateRequest.newBuilder().setSessionId("traced-session").setMaxNewTokens(12)
              .setChat(ChatMessages.newBuilder().addMessages(ChatMessage.newBuilder().setRole("user").setContent("1+2, 3.")))
              .build());
      while (events.hasNext()) {
        GenerateEvent e = events.next();
        if (e.hasFinished()) {
          trajectoryId = e.getFinished().getTrajectoryId();
        }
      }
    } finally {
      GrpcTestChannel.close(channel);
    }
    assertFalse(trajectoryId.isEmpty());

    // the memory services were called in the agent's trace, each call a new span of it
    List<String> traced = RemoteMemoryResource.CALLS.stream().filter(c -> c.contains("-" + traceId + "-")).toList();
    assertTrue(traced.stream().anyMatch(c -> c.startsWith("memgen.v1.Weaver/Session ")), RemoteMemoryResource.CALLS.toString());
    assertTrue(traced.stream().anyMatch(c -> c.startsWith("memgen.v1.Trigger/Session ")), RemoteMemoryResource.CALLS.toString());
    assertTrue(traced.stream().noneMatch(c -> c.contains(agentSpan)), "the reasoner's own spans are the parents");

    // the trajectory record carries the trace into Kafka
    String recorded = null;
    try (KafkaConsumer<String, byte[]> c = ExperienceLog.consumer(KafkaResource.broker.bootstrapServers(), "tracing-test", null)) {
      TopicPartition tp = new TopicPartition(Topics.TRAJECTORIES, 0);
      c.assign(List.of(tp));
      c.seekToBeginning(List.of(tp));
      long end = System.nanoTime() + TimeUnit.SECONDS.toNanos(60);
      while (recorded == null && System.nanoTime() < end) {
        for (ConsumerRecord<String, byte[]> r : c.poll(Duration.ofMillis(500))) {
          if (Trajectory.parseFrom(r.value()).getTrajectoryId().equals(trajectoryId)) {
            Header h = r.headers().lastHeader("traceparent");
            recorded = h == null ? "none" : new String(h.value(), StandardCharsets.UTF_8);
          }
        }
      }
    }
    assertTrue(recorded != null && recorded.startsWith("00-" + traceId + "-"), "trajectory header: " + recorded);
    assertNotEquals("00-" + traceId + "-" + agentSpan + "-01", recorded, "a span of the reasoner, not the agent's");

    // and the spans reach the collector: the reasoner's server span of Generate, its client spans to the memory
    long end = System.nanoTime() + TimeUnit.SECONDS.toNanos(30);
    List<Span> mine = List.of();
    while (System.nanoTime() < end) {
      mine = OtlpReceiver.SPANS.stream().filter(s -> HexFormat.of().formatHex(s.getTraceId().toByteArray()).equals(traceId))
          .toList();
      if (mine.stream().anyMatch(s -> s.getName().contains("Generate")) && mine.stream().anyMatch(s -> s.getName().contains("Weaver"))) {
        break;
      }
      Thread.sleep(100);
    }
    List<String> names = mine.stream().map(s -> s.getName() + ":" + s.getKind()).toList();
    assertTrue(names.stream().anyMatch(n -> n.contains("Reasoner/Generate") && n.endsWith("SERVER")), names.toString());
    assertTrue(names.stream().anyMatch(n -> n.contains("Weaver/Session") && n.endsWith("CLIENT")), names.toString());
    assertTrue(names.stream().anyMatch(n -> n.contains("Trigger/Session") && n.endsWith("CLIENT")), names.toString());
    assertEquals(agentSpan, HexFormat.of().formatHex(mine.stream().filter(s -> s.getName().contains("Generate")).findFirst()
        .orElseThrow().getParentSpanId().toByteArray()), "the server span is the agent's span's child");
  }
}
