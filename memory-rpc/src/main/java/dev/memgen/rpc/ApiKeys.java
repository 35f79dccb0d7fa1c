package dev.memgen.rpc;

import io.grpc.Context;
import io.grpc.Contexts;
import io.grpc.Metadata;
import io.grpc.ServerCall;
import io.grpc.ServerCallHandler;
import io.grpc.ServerInterceptor;
import io.grpc.Status;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.security.SecureRandom;
import java.util.Arrays;
import java.util.Base64;
import java.util.HexFormat;
import java.util.LinkedHashMap;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.Set;

/**
 * API keys: who may call a service, and which adapters each caller may use. A keys file holds one key per line,
 * {@code NAME sha256:HEX ADAPTERS} ({@code ADAPTERS} is {@code *} or a comma-separated list of adapter names;
 * {@code #} starts a comment), written by {@code memgen keys add}, which prints the key itself once: the file holds
 * only digests, so it can be a ConfigMap. A caller presents its key as {@code authorization: Bearer KEY} (gRPC
 * metadata or HTTP header). The base model alone, without memory, is every known caller's; an adapter only its
 * listed callers'.
 */
public final class ApiKeys {
  /** A known caller: its name (for logs and per-client limits, never the key) and the adapters it may use. */
  public record Caller(String name, Set<String> adapters) {
    public boolean mayUse(String adapter) {
      return adapters.contains("*") || adapters.contains(adapter);
    }
  }

  /** The authenticated caller of the current gRPC call; null when the service checks no keys. */
  static final Context.Key<Caller> CALLER = Context.key("memgen-caller");
  public static final Metadata.Key<String> AUTHORIZATION = Metadata.Key.of("authorization", Metadata.ASCII_STRING_MARSHALLER);
  private static final String BEARER = "Bearer ";

  private final Path file;
  private final byte[][] digests; // sha256 of each key, in file order: compared on every call
  private final List<Caller> callers; // whose each digest is

  private ApiKeys(Path file, Map<String, Caller> byDigest) {
    this.file = file;
    this.digests = byDigest.keySet().stream().map(HexFormat.of()::parseHex).toArray(byte[][]::new);
    this.callers = List.copyOf(byDigest.values());
  }

  /** Reads a keys file; a line that is wrong is named with its number and what a right one looks like. */
  public static ApiKeys load(Path file) {
    List<String> lines;
    try {
      lines = Files.readAllLines(file, StandardCharsets.UTF_8);
    } catch (IOException e) {
      throw new IllegalArgumentException("the API keys file " + file + " cannot be read: " + e.getMessage(), e);
    }
    Map<String, Caller> byDigest = new LinkedHashMap<>();
    Set<String> names = new LinkedHashSet<>();
    for (int i = 0; i < lines.size(); i++) {
      String line = lines.get(i).strip();
      if (line.isEmpty() || line.startsWith("#")) {
        continue;
      }
      String[] f = line.split("\\s+");
      String where = file + ":" + (i + 1);
      if (f.length != 3 || !f[1].startsWith("sha256:") || f[1].length() != 7 + 64 || !f[1].substring(7).matches("[0-9a-f]+")) {
        throw new IllegalArgumentException(where + ": expected 'NAME sha256:<64 hex digits> ADAPTERS' (ADAPTERS: * or "
            + "a,b,...; make lines with `memgen keys add`), got '" + line + "'");
      }
      if (!names.add(f[0])) {
        throw new IllegalArgumentException(where + ": the name '" + f[0] + "' is used by an earlier line");
      }
      Set<String> adapters = new LinkedHashSet<>(Arrays.asList(f[2].split(",")));
      if (adapters.contains("")) {
        throw new IllegalArgumentException(where + ": an empty adapter name in '" + f[2] + "'");
      }
      if (byDigest.put(f[1].substring(7), new Caller(f[0], java.util.Collections.unmodifiableSet(adapters))) != null) {
        throw new IllegalArgumentException(where + ": the same key as an earlier line");
      }
    }
    return new ApiKeys(file, byDigest);
  }

  /** The keys file an optional setting names, if any: services call this once at startup. */
  public static Optional<ApiKeys> from(Optional<String> file) {
    return file.filter(f -> !f.isBlank()).map(f -> load(Path.of(f)));
  }

  public Path file() {
    return file;
  }

  public int size() {
    return callers.size();
  }

  /** The callers, in file order. */
  public List<Caller> callers() {
    return callers;
  }

  public Set<String> names() {
    Set<String> out = new LinkedHashSet<>();
    callers.forEach(c -> out.add(c.name()));
    return out;
  }

  /** The caller a presented key belongs to; empty for an unknown key. */
  public Optional<Caller> authenticate(String key) {
    byte[] digest = sha256(key);
    for (int i = 0; i < digests.length; i++) { // constant time per entry: no timing hint on the key
      if (MessageDigest.isEqual(digest, digests[i])) {
        return Optional.of(callers.get(i));
      }
    }
    return Optional.empty();
  }

  /**
   * The caller of an {@code authorization} value, or an explanation of why there is none, in words an operator can
   * act on (the key itself is never repeated).
   */
  public Caller authorize(String authorization) throws Refused {
    if (authorization == null || authorization.isBlank()) {
      throw new Refused("no API key: send 'authorization: Bearer <key>' (this service checks keys, "
          + "memgen.auth.keys-file)");
    }
    if (!authorization.regionMatches(true, 0, BEARER, 0, BEARER.length())) {
      throw new Refused("the authorization is not a bearer token: send 'authorization: Bearer <key>'");
    }
    return authenticate(authorization.substring(BEARER.length()).strip())
        .orElseThrow(() -> new Refused("the API key is not known to this service (wrong or revoked key)"));
  }

  /** Why a call is not authenticated (401 / UNAUTHENTICATED). */
  public static final class Refused extends Exception {
    public Refused(String message) {
      super(message, null, false, false);
    }
  }

  /**
   * Authenticates every gRPC call but the standard health and reflection services (probes send no keys): a call
   * without a known key ends UNAUTHENTICATED before the service sees it; the caller of one with a key is in the
   * call's context for the service's adapter check ({@link #check}).
   */
  public ServerInterceptor interceptor() {
    return new ServerInterceptor() {
      @Override
      public <Q, R> ServerCall.Listener<Q> interceptCall(ServerCall<Q, R> call, Metadata headers,
          ServerCallHandler<Q, R> next) {
        String service = call.getMethodDescriptor().getServiceName();
        if (service != null && (service.startsWith("grpc.health.") || service.startsWith("grpc.reflection."))) {
          return next.startCall(call, headers);
        }
        Caller caller;
        try {
          caller = authorize(headers.get(AUTHORIZATION));
        } catch (Refused e) {
          call.close(Status.UNAUTHENTICATED.withDescription(e.getMessage()), new Metadata());
          return new ServerCall.Listener<>() {};
        }
        return Contexts.interceptCall(Context.current().withValue(CALLER, caller), call, headers, next);
      }
    };
  }

  /** The authenticated caller of the current gRPC call, null when keys are not checked. */
  public static Caller caller() {
    return CALLER.get();
  }

  /**
   * Refuses (PERMISSION_DENIED, naming caller and adapter) when {@code caller} may not use {@code adapter}; a null
   * caller (keys not checked) may use every adapter.
   */
  static void check(Caller caller, String adapter, String field) {
    if (caller != null && !caller.mayUse(adapter)) {
      throw new SessionCall.Refusal(Status.Code.PERMISSION_DENIED, denial(caller, adapter, field));
    }
  }

  /** {@link #check} for the current gRPC call, as a status a unary handler answers with. */
  public static void require(String adapter, String field) {
    Caller caller = caller();
    if (caller != null && !caller.mayUse(adapter)) {
      throw Status.PERMISSION_DENIED.withDescription(denial(caller, adapter, field)).asRuntimeException();
    }
  }

  private static String denial(Caller caller, String adapter, String field) {
    return "the API key '" + caller.name() + "' may not use " + field + " '" + adapter + "' (it may use "
        + String.join(", ", caller.adapters()) + ")";
  }

  /** A new random key (256 bits, URL-safe): shown once by {@code memgen keys add}, stored only as its digest. */
  public static String newKey() {
    byte[] b = new byte[32];
    new SecureRandom().nextBytes(b);
    return "mgk-" + Base64.getUrlEncoder().withoutPadding().encodeToString(b);
  }

  /** The keys-file line for a key. */
  public static String line(String name, String key, List<String> adapters) {
    if (!name.matches("[A-Za-z0-9._-]+")) {
      throw new IllegalArgumentException("a key name is letters, digits, '.', '_' and '-', got '" + name + "'");
    }
    if (adapters.isEmpty() || adapters.stream().anyMatch(a -> a.isBlank() || a.contains(",") || a.matches(".*\\s.*"))) {
      throw new IllegalArgumentException("adapters: * or names without spaces or commas, got " + adapters);
    }
    return name + " sha256:" + HexFormat.of().formatHex(sha256(key)) + " " + String.join(",", adapters);
  }

  private static byte[] sha256(String key) {
    try {
      return MessageDigest.getInstance("SHA-256").digest(key.getBytes(StandardCharsets.UTF_8));
    } catch (NoSuchAlgorithmException e) {
      throw new IllegalStateException(e);
    }
  }
}
