package dev.memgen.trigger;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.memgen.model.memory.InProcessMemory;
import dev.memgen.model.memory.TriggerLink;
import dev.memgen.rpc.CallDeadline;
import dev.memgen.rpc.MemoryUnavailableException;
import dev.memgen.rpc.RemoteTrigger;
import dev.memgen.rpc.ServedMemory;
import dev.memgen.rpc.TinyModelResource;
import grpc.health.v1.HealthGrpc;
import grpc.health.v1.HealthOuterClass.HealthCheckRequest;
import grpc.health.v1.HealthOuterClass.HealthCheckResponse.ServingStatus;
import io.grpc.ManagedChannel;
import io.grpc.ManagedChannelBuilder;
import io.quarkus.arc.Arc;
import io.quarkus.grpc.runtime.GrpcServer;
import io.quarkus.test.common.ResourceArg;
import io.quarkus.test.common.WithTestResource;
import io.quarkus.test.junit.QuarkusTest;
import io.quarkus.value.registry.ValueRegistry;
import java.nio.file.Path;
import java.time.Duration;
import java.util.concurrent.TimeUnit;
import org.eclipse.microprofile.config.inject.ConfigProperty;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

/**
 * The trigger service over real gRPC on loopback: health answers SERVING, a session's P(invoke) is exactly the
 * in-process trigger's, and a session from another base is refused while the service keeps serving.
 */
@QuarkusTest
@WithTestResource(value = TinyModelResource.class, initArgs = @ResourceArg(name = TinyModelResource.MEMORY, value = "true"))
class TriggerServiceTest {
  @ConfigProperty(name = "memgen.model.dir") String modelDir;
  @ConfigProperty(name = "memgen.memory.dir") String memoryDir;

  ManagedChannel channel;

  @BeforeEach
  void connect() {
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
  void decidesWhatTheTriggerComputesInProcess() {
    try (ServedMemory local = ServedMemory.load(Path.of(modelDir), Path.of(memoryDir))) {
      TriggerLink.Session here = new InProcessMemory(local.base(), local.memory()).trigger().open("here");
      TriggerLink.Session there = new RemoteTrigger(channel, local.fingerprint(), "", CallDeadline.of(Duration.ofSeconds(30))).open("there");
      for (TriggerLink.Session s : new TriggerLink.Session[] {here, there}) {
        s.appendTokens(new int[] {72, 105, 44});
        s.appendLatents(3);
        s.appendTokens(new int[] {32, 46});
      }
      float p = there.probability();
      assertEquals(here.probability(), p);
      assertTrue(p > 0 && p < 1, "a probability: " + p);
      here.close();
      there.close();

      TriggerLink.Session stranger = new RemoteTrigger(channel, "sha256:another-base", "", CallDeadline.of(Duration.ofSeconds(30))).open("x");
      stranger.appendTokens(new int[] {1});
      MemoryUnavailableException e = assertThrows(MemoryUnavailableException.class, stranger::probability);
      assertTrue(e.getMessage().contains("FAILED_PRECONDITION") && e.getMessage().contains("another-base"), e.getMessage());
    }
    healthReportsServing();
  }

  @io.quarkus.test.common.http.TestHTTPResource("/q/metrics") java.net.URL metrics;
  @io.quarkus.test.common.http.TestHTTPResource("/q/health/ready") java.net.URL ready;

  @Test
  void metricsPassPromtoolAndCountDecidesAndReadinessIsUp() throws Exception {
    try (ServedMemory local = ServedMemory.load(java.nio.file.Path.of(modelDir), java.nio.file.Path.of(memoryDir))) {
      TriggerLink.Session s = new RemoteTrigger(channel, local.fingerprint(), "", CallDeadline.of(Duration.ofSeconds(30)))
          .open("metrics");
      s.appendTokens(new int[] {72, 105, 33});
      s.probability();
      s.close();
    }
    java.net.http.HttpClient http = java.net.http.HttpClient.newHttpClient();
    String text = http.send(java.net.http.HttpRequest.newBuilder(metrics.toURI()).build(),
        java.net.http.HttpResponse.BodyHandlers.ofString()).body();
    java.util.List<String> lint = dev.memgen.rpc.Prometheus.lint(text);
    assertTrue(lint.isEmpty(), "promtool check metrics: " + lint + dev.memgen.rpc.Prometheus.at(text, lint));
    assertTrue(text.contains("memgen_trigger_requests_total{kind=\"decide\"}"), text);
    java.net.http.HttpResponse<String> r = http.send(java.net.http.HttpRequest.newBuilder(ready.toURI()).build(),
        java.net.http.HttpResponse.BodyHandlers.ofString());
    assertEquals(200, r.statusCode(), r.body());
    assertTrue(r.body().contains("memgen-trigger"), r.body());
  }
}
