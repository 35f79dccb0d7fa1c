package dev.memgen.rpc;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.memgen.model.Weaver;
import dev.memgen.proto.v1.DescribeRequest;
import dev.memgen.proto.v1.WeaverGrpc;
import io.grpc.Grpc;
import io.grpc.ManagedChannel;
import io.grpc.Server;
import io.grpc.ServerInterceptors;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import io.grpc.TlsServerCredentials;
import io.grpc.health.v1.HealthCheckRequest;
import io.grpc.health.v1.HealthGrpc;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.Optional;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The weaver behind mutual TLS and API keys, reached through {@link ClientSecurity} as the reasoner reaches it:
 * plaintext, a client without a certificate, an expired certificate and one from another authority are refused in
 * the handshake; a call without a key or with an unknown key is UNAUTHENTICATED; a key not allowed the adapter is
 * PERMISSION_DENIED; the right key weaves. The health service stays open to probes.
 */
class SecurityTest {
  @TempDir
  static Path tmp;
  static Fixture fx;
  static TestPki pki;
  static TestPki stranger;
  static Path keysFile;
  static final String GOOD = ApiKeys.newKey();
  static final String OTHER_FLEET = ApiKeys.newKey();

  @BeforeAll
  static void setUp() throws Exception {
    fx = new Fixture(tmp);
    pki = new TestPki(tmp.resolve("pki"), "memgen-ca");
    pki.issue("weaver");
    pki.issue("reasoner");
    pki.issueExpired("expired");
    stranger = new TestPki(tmp.resolve("stranger"), "other-ca");
    stranger.issue("intruder");
    keysFile = tmp.resolve("keys");
    Files.writeString(keysFile, "# test keys\n" + ApiKeys.line("reasoner", GOOD, List.of("default")) + "\n"
        + ApiKeys.line("fleet-b", OTHER_FLEET, List.of("fleet-b")) + "\n");
  }

  @AfterAll
  static void tearDown() {
    fx.close();
  }

  private static Server secured(WeaverService weaver) throws Exception {
    TlsServerCredentials.Builder tls = TlsServerCredentials.newBuilder()
        .keyManager(tmp.resolve("pki/weaver.crt").toFile(), pki.key("weaver").toFile())
        .trustManager(pki.caCert().toFile())
        .clientAuth(TlsServerCredentials.ClientAuth.REQUIRE);
    ServiceAuth auth = new ServiceAuth(Optional.of(keysFile.toString()), "weaver-service") {};
    return Grpc.newServerBuilderForPort(0, tls.build())
        .addService(ServerInterceptors.intercept(weaver, auth))
        .addService(ServerInterceptors.intercept(new io.grpc.protobuf.services.HealthStatusManager().getHealthService(), auth))
        .build().start();
  }

  private static ClientSecurity client(String cert, TestPki issuer, String key) {
    return ClientSecurity.of("memgen.memory", Optional.of(true), Optional.of(pki.caCert().toString()),
        Optional.ofNullable(cert).map(c -> issuer.caCert().resolveSibling(c + ".crt").toString()),
        Optional.ofNullable(cert).map(c -> issuer.key(c).toString()), Optional.ofNullable(key));
  }

  private static Status.Code describe(ManagedChannel channel) {
    try {
      WeaverGrpc.newBlockingStub(channel).withDeadlineAfter(10, TimeUnit.SECONDS)
          .describe(DescribeRequest.newBuilder().build());
      return Status.Code.OK;
    } catch (StatusRuntimeException e) {
      return e.getStatus().getCode();
    }
  }

  private static Status.Code describeWith(ClientSecurity security, String target) {
    ManagedChannel c = security.channel(target);
    try {
      return describe(c);
    } finally {
      c.shutdownNow();
    }
  }

  @Test
  void onlyTheRightCertificateAndKeyGetIn() throws Exception {
    WeaverService weaver = new WeaverService(fx.base, fx.memory, fx.fingerprint, "default", ServiceLimits.DEFAULT);
    Server server = secured(weaver);
    String target = "localhost:" + server.getPort();
    try {
      assertEquals(Status.Code.UNAVAILABLE, describeWith(ClientSecurity.PLAINTEXT, target), "plaintext");
      assertEquals(Status.Code.UNAVAILABLE, describeWith(client(null, pki, GOOD), target), "no client certificate");
      assertEquals(Status.Code.UNAVAILABLE, describeWith(client("expired", pki, GOOD), target), "expired certificate");
      assertEquals(Status.Code.UNAVAILABLE, describeWith(client("intruder", stranger, GOOD), target), "another authority");
      assertEquals(Status.Code.UNAUTHENTICATED, describeWith(client("reasoner", pki, null), target), "no key");
      assertEquals(Status.Code.UNAUTHENTICATED, describeWith(client("reasoner", pki, ApiKeys.newKey()), target), "unknown key");
      assertEquals(Status.Code.PERMISSION_DENIED, describeWith(client("reasoner", pki, OTHER_FLEET), target), "other fleet's key");
      assertEquals(Status.Code.OK, describeWith(client("reasoner", pki, GOOD), target), "the reasoner's key");

      ClientSecurity reasoner = client("reasoner", pki, GOOD);
      ManagedChannel channel = reasoner.channel(target);
      try {
        assertEquals("SERVING", HealthGrpc.newBlockingStub(client("reasoner", pki, null).channel(target))
            .withDeadlineAfter(10, TimeUnit.SECONDS).check(HealthCheckRequest.getDefaultInstance()).getStatus().name(),
            "health needs no key");
        RemoteWeaver.Session s = new RemoteWeaver(channel, fx.fingerprint, fx.base.config().hiddenSize(), "",
            CallDeadline.of(Duration.ofSeconds(30))).open("secure");
        s.appendTokens(new int[] {1, 2, 3});
        assertEquals(Fixture.PROMPT_K * fx.base.config().hiddenSize(), s.weave(Weaver.Kind.PROMPT).length);
        s.close();
        // a session on an adapter the key may not use is refused when it opens
        ManagedChannel other = client("reasoner", pki, OTHER_FLEET).channel(target);
        RemoteWeaver.Session denied = new RemoteWeaver(other, fx.fingerprint, fx.base.config().hiddenSize(), "default",
            CallDeadline.of(Duration.ofSeconds(30))).open("denied");
        RuntimeException e = assertThrows(RuntimeException.class, () -> {
          denied.appendTokens(new int[] {1});
          denied.weave(Weaver.Kind.PROMPT);
        });
        assertTrue(String.valueOf(e.getMessage()).contains("PERMISSION_DENIED the API key 'fleet-b' may not use "
            + "open.adapter_name 'default'"), String.valueOf(e));
        other.shutdownNow();
      } finally {
        channel.shutdownNow();
      }
    } finally {
      server.shutdownNow().awaitTermination();
      weaver.close();
    }
  }

  @Test
  void keysFilesAreCheckedLineByLine() throws Exception {
    ApiKeys keys = ApiKeys.load(keysFile);
    assertEquals(2, keys.size());
    assertEquals("reasoner", keys.authenticate(GOOD).orElseThrow().name());
    assertTrue(keys.authenticate(GOOD + "x").isEmpty());
    assertTrue(keys.authenticate(OTHER_FLEET).orElseThrow().mayUse("fleet-b"));
    assertFalse(keys.authenticate(OTHER_FLEET).orElseThrow().mayUse("default"));
    assertFalse(Files.readString(keysFile).contains(GOOD), "the file holds digests, never keys");
    Path bad = tmp.resolve("bad-keys");
    Files.writeString(bad, "# ok\n" + ApiKeys.line("a", GOOD, List.of("*")) + "\nb plain-key default\n");
    IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> ApiKeys.load(bad));
    assertTrue(e.getMessage().startsWith(bad + ":3: expected 'NAME sha256:"), e.getMessage());
    Files.writeString(bad, ApiKeys.line("a", GOOD, List.of("*")) + "\n" + ApiKeys.line("a", OTHER_FLEET, List.of("*")) + "\n");
    assertTrue(assertThrows(IllegalArgumentException.class, () -> ApiKeys.load(bad)).getMessage().contains(":2: the name 'a'"));
    assertTrue(assertThrows(IllegalArgumentException.class, () -> ApiKeys.load(tmp.resolve("missing"))).getMessage()
        .contains("cannot be read"));
    IllegalArgumentException wrongPath = assertThrows(IllegalArgumentException.class, () -> ClientSecurity.of("memgen.memory",
        Optional.empty(), Optional.of("/nonexistent/ca.crt"), Optional.empty(), Optional.empty(), Optional.empty()));
    assertEquals("memgen.memory.tls.ca /nonexistent/ca.crt is not a readable file", wrongPath.getMessage());
    assertThrows(IllegalArgumentException.class, () -> ClientSecurity.of("memgen.memory", Optional.empty(), Optional.empty(),
        Optional.of(pki.caCert().toString()), Optional.empty(), Optional.empty()), "a certificate without its key");
  }
}
