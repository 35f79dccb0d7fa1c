package dev.memgen.rpc;

import io.grpc.CallCredentials;
import io.grpc.ChannelCredentials;
import io.grpc.ClientInterceptor;
import io.grpc.CompositeChannelCredentials;
import io.grpc.Grpc;
import io.grpc.InsecureChannelCredentials;
import io.grpc.ManagedChannel;
import io.grpc.Metadata;
import io.grpc.TlsChannelCredentials;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Optional;
import java.util.concurrent.Executor;

/**
 * How a client reaches a memgen gRPC service: plaintext or TLS (trusting the CA certificates in {@code ca}, the
 * system's when unset), a client certificate for mutual TLS ({@code cert} + {@code key}, PEM), and an API key sent
 * as {@code authorization: Bearer KEY} on every call. Files are checked when the settings are made, so a wrong path
 * fails startup naming its setting instead of the first call failing with a handshake error.
 *
 * @param prefix the settings' common prefix (e.g. {@code memgen.memory}), for messages
 */
public record ClientSecurity(String prefix, boolean tls, Optional<Path> ca, Optional<Path> cert, Optional<Path> key,
    Optional<String> apiKey) {
  public static final ClientSecurity PLAINTEXT =
      new ClientSecurity("", false, Optional.empty(), Optional.empty(), Optional.empty(), Optional.empty());

  public ClientSecurity {
    if (cert.isPresent() != key.isPresent()) {
      throw new IllegalArgumentException(prefix + ".tls.cert and " + prefix + ".tls.key go together (a client "
          + "certificate and its private key, PEM)");
    }
    if (!tls && (ca.isPresent() || cert.isPresent())) {
      throw new IllegalArgumentException(prefix + ".tls.ca / .tls.cert are set but " + prefix + ".tls.enabled is false");
    }
    readable(ca, prefix + ".tls.ca");
    readable(cert, prefix + ".tls.cert");
    readable(key, prefix + ".tls.key");
    if (apiKey.isPresent() && apiKey.get().isBlank()) {
      apiKey = Optional.empty();
    }
  }

  /** From optional settings: TLS when enabled or when any certificate is given. */
  public static ClientSecurity of(String prefix, Optional<Boolean> enabled, Optional<String> ca, Optional<String> cert,
      Optional<String> key, Optional<String> apiKey) {
    Optional<Path> caPath = path(ca);
    Optional<Path> certPath = path(cert);
    boolean tls = enabled.orElse(caPath.isPresent() || certPath.isPresent());
    return new ClientSecurity(prefix, tls, caPath, certPath, path(key), apiKey);
  }

  public ManagedChannel channel(String target) {
    return channel(target, List.of());
  }

  /**
   * A channel whose calls pass through {@code interceptors} (e.g. tracing), first to last. Round robin over every
   * address the target resolves to: behind a headless Service ({@code dns:///memgen-weaver:9002}) the sessions spread
   * over all the service's pods instead of all going to the first.
   */
  public ManagedChannel channel(String target, List<ClientInterceptor> interceptors) {
    return Grpc.newChannelBuilder(target, credentials()).directExecutor().defaultLoadBalancingPolicy("round_robin")
        .intercept(interceptors).build();
  }

  ChannelCredentials credentials() {
    ChannelCredentials transport;
    if (tls) {
      TlsChannelCredentials.Builder b = TlsChannelCredentials.newBuilder();
      try {
        if (ca.isPresent()) {
          b.trustManager(ca.get().toFile());
        }
        if (cert.isPresent()) {
          b.keyManager(cert.get().toFile(), key.get().toFile());
        }
      } catch (IOException | RuntimeException e) {
        throw new IllegalArgumentException(prefix + ".tls.*: the certificate or key files cannot be used ("
            + ca.map(p -> "ca " + p + " ").orElse("") + cert.map(p -> "cert " + p + " ").orElse("")
            + key.map(p -> "key " + p).orElse("") + "): " + e.getMessage(), e);
      }
      transport = b.build();
    } else {
      transport = InsecureChannelCredentials.create();
    }
    return apiKey.<ChannelCredentials>map(k -> CompositeChannelCredentials.create(transport, bearer(k))).orElse(transport);
  }

  /** The key on every call; sent also over plaintext (loopback, or a mesh that encrypts), which the operator chose. */
  private static CallCredentials bearer(String key) {
    Metadata headers = new Metadata();
    headers.put(ApiKeys.AUTHORIZATION, "Bearer " + key);
    return new CallCredentials() {
      @Override
      public void applyRequestMetadata(RequestInfo info, Executor executor, MetadataApplier applier) {
        applier.apply(headers);
      }
    };
  }

  private static Optional<Path> path(Optional<String> s) {
    return s.filter(v -> !v.isBlank()).map(Path::of);
  }

  private static void readable(Optional<Path> p, String setting) {
    if (p.isPresent() && !Files.isReadable(p.get())) {
      throw new IllegalArgumentException(setting + " " + p.get() + " is not a readable file");
    }
  }
}
