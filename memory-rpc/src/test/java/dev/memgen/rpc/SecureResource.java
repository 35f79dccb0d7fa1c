package dev.memgen.rpc;

import io.quarkus.test.common.QuarkusTestResourceLifecycleManager;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;

/**
 * A service secured as an operator would secure it: its gRPC port with TLS and required client certificates, its
 * HTTP port HTTPS only, and API keys. Certificates are made fresh ({@link TestPki}) under the directory the test finds
 * in {@code memgen.test.pki-dir}: {@code memgen-ca.crt} (the authority), {@code client.crt/.key} (a certificate it
 * issued), {@code expired.crt/.key}, and {@code stranger/intruder.crt/.key} from another authority. Keys:
 * {@link #REASONER_KEY} may use adapter "default", {@link #FLEET_B_KEY} only "fleet-b".
 */
public class SecureResource implements QuarkusTestResourceLifecycleManager {
  public static final String REASONER_KEY = "mgk-test-reasoner-0123456789";
  public static final String FLEET_B_KEY = "mgk-test-fleet-b-0123456789";
  private static final String STORE_PASSWORD = "test-trust";
  private Path dir;

  @Override
  public Map<String, String> start() {
    try {
      dir = Files.createTempDirectory("memgen-secure-test");
      TestPki pki = new TestPki(dir, "memgen-ca");
      Path cert = pki.issue("service");
      pki.issue("client");
      pki.issueExpired("expired");
      new TestPki(dir.resolve("stranger"), "other-ca").issue("intruder");
      Path keys = dir.resolve("api-keys");
      Files.writeString(keys, ApiKeys.line("reasoner", REASONER_KEY, List.of("default")) + "\n"
          + ApiKeys.line("fleet-b", FLEET_B_KEY, List.of("fleet-b")) + "\n");
      return Map.ofEntries(
          Map.entry("memgen.test.pki-dir", dir.toString()),
          Map.entry("memgen.auth.keys-file", keys.toString()),
          Map.entry("quarkus.grpc.server.ssl.certificate", cert.toString()),
          Map.entry("quarkus.grpc.server.ssl.key", pki.key("service").toString()),
          Map.entry("quarkus.grpc.server.ssl.trust-store", pki.trustStore(STORE_PASSWORD).toString()),
          Map.entry("quarkus.grpc.server.ssl.trust-store-password", STORE_PASSWORD),
          Map.entry("quarkus.grpc.server.ssl.client-auth", "REQUIRED"),
          Map.entry("quarkus.tls.key-store.pem.0.cert", cert.toString()),
          Map.entry("quarkus.tls.key-store.pem.0.key", pki.key("service").toString()),
          Map.entry("quarkus.http.insecure-requests", "disabled"),
          Map.entry("quarkus.http.test-ssl-port", "0"));
    } catch (IOException | java.security.GeneralSecurityException e) {
      throw new IllegalStateException(e);
    }
  }

  /** The client settings of a certificate in the test's directory ({@code null}: no client certificate). */
  public static ClientSecurity client(Path pkiDir, String cert, String key) {
    Path c = cert == null ? null : pkiDir.resolve(cert + ".crt");
    return ClientSecurity.of("memgen.memory", java.util.Optional.of(true),
        java.util.Optional.of(pkiDir.resolve("memgen-ca.crt").toString()),
        java.util.Optional.ofNullable(c).map(Path::toString),
        java.util.Optional.ofNullable(c).map(p -> p.resolveSibling(cert.substring(cert.lastIndexOf('/') + 1) + ".key").toString()),
        java.util.Optional.ofNullable(key));
  }

  /** A JDK HTTP client that trusts the test's authority, and nothing else. */
  public static java.net.http.HttpClient https(Path pkiDir) throws Exception {
    java.security.KeyStore trust = java.security.KeyStore.getInstance("PKCS12");
    trust.load(null, null);
    try (var in = Files.newInputStream(pkiDir.resolve("memgen-ca.crt"))) {
      trust.setCertificateEntry("ca", java.security.cert.CertificateFactory.getInstance("X.509").generateCertificate(in));
    }
    javax.net.ssl.TrustManagerFactory tmf =
        javax.net.ssl.TrustManagerFactory.getInstance(javax.net.ssl.TrustManagerFactory.getDefaultAlgorithm());
    tmf.init(trust);
    javax.net.ssl.SSLContext ssl = javax.net.ssl.SSLContext.getInstance("TLS");
    ssl.init(null, tmf.getTrustManagers(), null);
    return java.net.http.HttpClient.newBuilder().sslContext(ssl).build();
  }

  @Override
  public void stop() {
    if (dir == null) {
      return;
    }
    try (var files = Files.walk(dir)) {
      files.sorted(java.util.Comparator.reverseOrder()).forEach(p -> p.toFile().delete());
    } catch (IOException e) {
      // a temporary directory: left for the OS
    }
  }
}
