package dev.memgen.weaver;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.memgen.model.Decoder;
import dev.memgen.model.Weaver;
import dev.memgen.model.memory.InProcessMemory;
import dev.memgen.model.memory.WeaverLink;
import dev.memgen.rpc.CallDeadline;
import dev.memgen.rpc.MemoryUnavailableException;
import dev.memgen.rpc.RemoteWeaver;
import dev.memgen.rpc.ServedMemory;
import dev.memgen.rpc.TinyMemory;
import dev.memgen.rpc.TinyModelResource;
import dev.memgen.proto.v1.DescribeRequest;
import dev.memgen.proto.v1.MemoryDescription;
import dev.memgen.proto.v1.WeaverGrpc;
import grpc.health.v1.HealthGrpc;
import grpc.health.v1.HealthOuterClass.HealthCheckRequest;
import grpc.health.v1.HealthOuterClass.HealthCheckResponse.ServingStatus;
import io.grpc.ManagedChannel;
import io.grpc.ManagedChannelBuilder;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import io.quarkus.arc.Arc;
import io.quarkus.grpc.runtime.GrpcServer;
import io.quarkus.test.common.ResourceArg;
import io.quarkus.test.common.WithTestResource;
import io.quarkus.test.common.http.TestHTTPResource;
import io.quarkus.test.junit.QuarkusTest;
import io.quarkus.value.registry.ValueRegistry;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.concurrent.TimeUnit;
import org.eclipse.microprofile.config.inject.ConfigProperty;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

/**
 * The weaver service over real gRPC on loopback: health answers SERVING, a session weaves exactly what the weaver
 * computes in-process, and a session from another base is refused while the service keeps serving.
 */
@QuarkusTest
@WithTestResource(value = TinyModelResource.class, initArgs = @ResourceArg(name = TinyModelResource.MEMORY, value = "true"))
class WeaverServiceTest {
  @ConfigProperty(name = "memgen.model.dir") String modelDir;
  @ConfigProperty(name = "memgen.memory.dir") String memoryDir;

  ManagedChannel channel;

  @BeforeEach
  void connect() {
    // quarkus.grpc.server.test-port=0 picks a free port; the server records the one it bound.
    int port = Arc.container().instance(ValueRegistry.class).get().get(GrpcServer.GRPC_PORT);
    channel = ManagedChannelBuilder.forAddress("127.0.0.1", port).usePlaintext().build();
  }

  @AfterEach
  void disconnect() throws InterruptedException {
    channel.shutdownNow().awaitTermination(5, TimeUnit.SECONDS);
  }

  @Test
  void healthReportsServing() {
    HealthGrpc.HealthBlockingStub health = HealthGrpc.newBlockingStub(channel).withDeadlineAfter(10, TimeUnit.SECONDS);
    assertEquals(ServingStatus.SERVING, health.check(HealthCheckRequest.getDefaultInstance()).getStatus());
  }

  @Test
  void describesItsMemory() {
    MemoryDescription d = WeaverGrpc.newBlockingStub(channel).withDeadlineAfter(10, TimeUnit.SECONDS)
        .describe(DescribeRequest.getDefaultInstance());
    assertEquals("default", d.getAdapterName());
    assertEquals(TinyMemory.VERSION, d.getAdapterVersion());
    assertEquals(List.of(TinyMemory.PROMPT_K, TinyMemory.INFERENCE_K, TinyMemory.MAX_INFERENCE_AUG),
        List.of(d.getPromptK(), d.getInferenceK(), d.getMaxInferenceAug()));
    assertEquals(TinyMemory.everyCharacter(), d.getDelimitersList());
    StatusRuntimeException e = assertThrows(StatusRuntimeException.class, () -> WeaverGrpc.newBlockingStub(channel)
        .describe(DescribeRequest.newBuilder().setAdapterName("fleet-b").build()));
    assertEquals(Status.Code.NOT_FOUND, e.getStatus().getCode());
  }

  @Test
  void weavesWhatTheWeaverComputesInProcess() {
    try (ServedMemory local = ServedMemory.load(Path.of(modelDir), Path.of(memoryDir))) {
      Decoder base = local.base();
      WeaverLink.Session here = new InProcessMemory(base, local.memory()).weaver().open("here");
      WeaverLink.Session there = new RemoteWeaver(channel, local.fingerprint(), base.config().hiddenSize(), "",
          CallDeadline.of(Duration.ofSeconds(30))).open("there");
      for (WeaverLink.Session s : new WeaverLink.Session[] {here, there}) {
        s.appendTokens(new int[] {72, 105, 33});
      }
      assertArrayEquals(here.weave(Weaver.Kind.PROMPT), there.weave(Weaver.Kind.PROMPT));
      assertEquals(TinyMemory.VERSION, there.adapterVersion());
      assertEquals(TinyMemory.PROMPT_K, there.k(Weaver.Kind.PROMPT));
      here.close();
      there.close();

      WeaverLink.Session stranger = new RemoteWeaver(channel, "sha256:another-base", base.config().hiddenSize(), "",
          CallDeadline.of(Duration.ofSeconds(30))).open("stranger");
      stranger.appendTokens(new int[] {1});
      MemoryUnavailableException e = assertThrows(MemoryUnavailableException.class, () -> stranger.weave(Weaver.Kind.PROMPT));
      assertTrue(e.getMessage().contains("FAILED_PRECONDITION") && e.getMessage().contains("another-base"), e.getMessage());
    }
    healthReportsServing();
  }

  @TestHTTPResource("/q/metrics") java.net.URL metrics;
  @TestHTTPResource("/q/health/ready") java.net.URL ready;

  @Test
  void metricsPassPromtoolAndCountPassesAndReadinessIsUp() throws Exception {
    java.net.http.HttpClient http = java.net.http.HttpClient.newHttpClient();
    WeaverLink.Session s = new RemoteWeaver(channel, dev.memgen.model.checkpoint.Checkpoint.open(Path.of(modelDir))
        .fingerprint(), 64, "", CallDeadline.of(Duration.ofSeconds(30))).open("metrics");
    s.appendTokens(new int[] {72, 105, 33});
    s.weave(Weaver.Kind.PROMPT);
    s.close();
    String text = http.send(java.net.http.HttpRequest.newBuilder(metrics.toURI()).build(),
        java.net.http.HttpResponse.BodyHandlers.ofString()).body();
    List<String> lint = dev.memgen.rpc.Prometheus.lint(text);
    assertTrue(lint.isEmpty(), "promtool check metrics: " + lint + dev.memgen.rpc.Prometheus.at(text, lint));
    assertTrue(text.contains("memgen_weaver_requests_total{kind=\"weave\"}"), text);
    assertTrue(text.contains("memgen_weaver_passes_seconds_count{kind=\"weave\"}"), text);
    assertTrue(text.contains("memgen_adapter_version{adapter=\"default\",component=\"weaver\"} " + TinyMemory.VERSION + ".0"), text);
    assertTrue(text.contains("memgen_weaver_sessions 0.0"), "no NaN: the gauge's state is held: " + text);
    java.net.http.HttpResponse<String> r = http.send(java.net.http.HttpRequest.newBuilder(ready.toURI()).build(),
        java.net.http.HttpResponse.BodyHandlers.ofString());
    assertEquals(200, r.statusCode(), r.body());
    assertTrue(r.body().contains("memgen-weaver"), r.body());
  }
}
