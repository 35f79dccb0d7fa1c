package dev.memgen.rpc;

import io.grpc.Metadata;
import io.grpc.ServerCall;
import io.grpc.ServerCallHandler;
import io.grpc.ServerInterceptor;
import java.util.Optional;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * A service's API-key check, from its {@code memgen.auth.keys-file} setting: with no file every call is let through
 * (and the service says so once at startup); with one, every gRPC call but health and reflection must carry a known
 * key ({@link ApiKeys#interceptor}). Each service registers it as its global gRPC interceptor; the reasoner also
 * checks its HTTP API with {@link #keys}. A keys file that cannot be read or has a wrong line fails startup, naming
 * the file and line.
 */
public class ServiceAuth implements ServerInterceptor {
  private static final Logger LOG = LoggerFactory.getLogger(ServiceAuth.class);
  private final Optional<ApiKeys> keys;
  private final ServerInterceptor check;

  protected ServiceAuth(Optional<String> keysFile, String service) {
    try {
      keys = ApiKeys.from(keysFile);
    } catch (IllegalArgumentException e) {
      throw new IllegalStateException("memgen.auth.keys-file: " + e.getMessage(), e);
    }
    check = keys.map(ApiKeys::interceptor).orElse(null);
    if (keys.isPresent()) {
      LOG.info("{}: API keys checked on every call ({} keys in {})", service, keys.get().size(), keys.get().file());
    } else {
      LOG.warn("{}: no memgen.auth.keys-file, so calls are not authenticated (set it outside a trusted network)", service);
    }
  }

  public Optional<ApiKeys> keys() {
    return keys;
  }

  @Override
  public <Q, R> ServerCall.Listener<Q> interceptCall(ServerCall<Q, R> call, Metadata headers, ServerCallHandler<Q, R> next) {
    return check == null ? next.startCall(call, headers) : check.interceptCall(call, headers, next);
  }
}
