package dev.memgen.reasoner.openai;

import dev.memgen.reasoner.ReasonerAuth;
import dev.memgen.rpc.ApiKeys;
import io.vertx.core.http.HttpHeaders;
import io.vertx.ext.web.Router;
import io.vertx.ext.web.RoutingContext;
import jakarta.enterprise.context.ApplicationScoped;
import jakarta.enterprise.event.Observes;
import java.util.Optional;

/**
 * API keys on the HTTP API (every path under {@code /v1}: the OpenAI API and feedback), with the keys file the gRPC
 * services use ({@code memgen.auth.keys-file}): a request without a known bearer key gets 401 and an OpenAI-style
 * error body ({@code invalid_api_key}) before anything else runs. Which models a key may use is checked where the
 * model is resolved ({@link OpenAiApi}): 403. Metrics and health ({@code /q/...}) stay open for probes and scrapers.
 */
@ApplicationScoped
public class HttpAuth {
  static final String CALLER = "memgen.caller";
  private final Optional<ApiKeys> keys;

  HttpAuth(ReasonerAuth auth) {
    this.keys = auth.keys();
  }

  void routes(@Observes Router router) {
    if (keys.isEmpty()) {
      return;
    }
    router.route("/v1/*").order(Integer.MIN_VALUE + 100).handler(this::check);
  }

  private void check(RoutingContext ctx) {
    try {
      ctx.put(CALLER, keys.get().authorize(ctx.request().getHeader(HttpHeaders.AUTHORIZATION)));
      ctx.next();
    } catch (ApiKeys.Refused e) {
      OpenAiError error = new OpenAiError(401, "invalid_request_error", null, "invalid_api_key", e.getMessage());
      ctx.response().setStatusCode(401).putHeader(HttpHeaders.CONTENT_TYPE, "application/json")
          .putHeader("WWW-Authenticate", "Bearer").end(error.body().toString());
    }
  }

  /** The authenticated caller of a request; null when keys are not checked. */
  static ApiKeys.Caller caller(RoutingContext ctx) {
    return ctx.get(CALLER);
  }
}
