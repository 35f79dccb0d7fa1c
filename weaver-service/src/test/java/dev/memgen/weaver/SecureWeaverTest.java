package dev.memgen.weaver;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.memgen.proto.v1.DescribeRequest;
import dev.memgen.proto.v1.WeaverGrpc;
import dev.memgen.rpc.ClientSecurity;
import dev.memgen.rpc.SecureResource;
import dev.memgen.rpc.TinyModelResource;
import grpc.health.v1.HealthGrpc;
import grpc.health.v1.HealthOuterClass.HealthCheckRequest;
import grpc.health.v1.HealthOuterClass.HealthCheckResponse.ServingStatus;
import io.grpc.ManagedChannel;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import io.quarkus.arc.Arc;
import io.quarkus.grpc.runtime.GrpcServer;
import io.quarkus.test.common.ResourceArg;
import io.quarkus.test.common.WithTestResource;
import io.quarkus.test.common.http.TestHTTPResource;
import io.quarkus.test.junit.QuarkusTest;
import io.quarkus.value.registry.ValueRegistry;
import java.net.URL;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.file.Path;
import java.util.concurrent.TimeUnit;
import org.eclipse.microprofile.config.inject.ConfigProperty;
import org.junit.jupiter.api.Test;

/**
 * weaver-service configured as the README's security section says (gRPC over TLS with client certificates required,
 * HTTPS only, API keys): only a client with a certificate from the service's authority and a key allowed the
 * adapter gets a memory; health answers probes without a key; metrics and readiness are served over HTTPS.
 */
@QuarkusTest
@WithTestResource(value = TinyModelResource.class, initArgs = @ResourceArg(name = TinyModelResource.MEMORY, value = "true"))
@WithTestResource(SecureResource.class)
class SecureWeaverTest {
  // Optional: every @QuarkusTest class is a bean of every test application, most of which have no such setting.
  @ConfigProperty(name = "memgen.test.pki-dir") java.util.Optional<String> pkiDir;
  @TestHTTPResource(value = "/q/health/ready", tls = true) URL ready;

  private Status.Code describe(ClientSecurity security) {
    int port = Arc.container().instance(ValueRegistry.class).get().get(GrpcServer.GRPC_PORT);
    ManagedChannel channel = security.channel("localhost:" + port);
    try {
      WeaverGrpc.newBlockingStub(channel).withDeadlineAfter(30, TimeUnit.SECONDS).describe(DescribeRequest.getDefaultInstance());
      return Status.Code.OK;
    } catch (StatusRuntimeException e) {
      return e.getStatus().getCode();
    } finally {
      channel.shutdownNow();
    }
  }

  @Test
  void onlyACertifiedClientWithAnAllowedKeyGetsIn() {
    Path pki = Path.of(pkiDir.orElseThrow());
    assertEquals(Status.Code.UNAVAILABLE, describe(ClientSecurity.PLAINTEXT), "plaintext");
    assertEquals(Status.Code.UNAVAILABLE, describe(SecureResource.client(pki, null, SecureResource.REASONER_KEY)), "no certificate");
    assertEquals(Status.Code.UNAVAILABLE, describe(SecureResource.client(pki, "expired", SecureResource.REASONER_KEY)), "expired");
    assertEquals(Status.Code.UNAVAILABLE, describe(SecureResource.client(pki, "stranger/intruder", SecureResource.REASONER_KEY)),
        "certificate from another authority");
    assertEquals(Status.Code.UNAUTHENTICATED, describe(SecureResource.client(pki, "client", null)), "no key");
    assertEquals(Status.Code.UNAUTHENTICATED, describe(SecureResource.client(pki, "client", "mgk-wrong")), "wrong key");
    assertEquals(Status.Code.PERMISSION_DENIED, describe(SecureResource.client(pki, "client", SecureResource.FLEET_B_KEY)),
        "a key for another adapter");
    assertEquals(Status.Code.OK, describe(SecureResource.client(pki, "client", SecureResource.REASONER_KEY)));

    int port = Arc.container().instance(ValueRegistry.class).get().get(GrpcServer.GRPC_PORT);
    ManagedChannel probe = SecureResource.client(pki, "client", null).channel("localhost:" + port);
    try {
      assertEquals(ServingStatus.SERVING, HealthGrpc.newBlockingStub(probe).withDeadlineAfter(30, TimeUnit.SECONDS)
          .check(HealthCheckRequest.getDefaultInstance()).getStatus(), "health needs no key");
    } finally {
      probe.shutdownNow();
    }
  }

  @Test
  void readinessIsServedOverHttps() throws Exception {
    HttpResponse<String> r = SecureResource.https(Path.of(pkiDir.orElseThrow())).send(HttpRequest.newBuilder(ready.toURI()).build(),
        HttpResponse.BodyHandlers.ofString());
    assertEquals(200, r.statusCode(), r.body());
    assertTrue(ready.toString().startsWith("https://"), ready.toString());
  }

}
