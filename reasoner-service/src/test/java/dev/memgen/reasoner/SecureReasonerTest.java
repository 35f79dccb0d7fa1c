package dev.memgen.reasoner;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.memgen.proto.v1.ChatMessage;
import dev.memgen.proto.v1.ChatMessages;
import dev.memgen.proto.v1.GenerateRequest;
import dev.memgen.proto.v1.ReasonerGrpc;
import dev.memgen.rpc.SecureResource;
import dev.memgen.rpc.TinyModelResource;
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
import java.net.URI;
import java.net.URL;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.file.Path;
import java.util.List;
import java.util.concurrent.TimeUnit;
import org.eclipse.microprofile.config.inject.ConfigProperty;
import org.junit.jupiter.api.Test;

/**
 * reasoner-service secured (HTTPS only, gRPC over mutual TLS, API keys): the OpenAI API answers 401 without a known
 * key, 403 when the key may not use the model's adapter, and serves the keys that may; /v1/models lists what the key
 * may use; feedback needs a key; gRPC Generate with memory checks the key's adapters as the HTTP API does.
 */
@QuarkusTest
@WithTestResource(value = TinyModelResource.class, initArgs = @ResourceArg(name = TinyModelResource.MEMORY, value = "true"))
@WithTestResource(SecureResource.class)
class SecureReasonerTest {
  private static final ObjectMapper JSON = new ObjectMapper();
  // Optional: every @QuarkusTest class is a bean of every test application, most of which have no such setting.
  @ConfigProperty(name = "memgen.test.pki-dir") java.util.Optional<String> pkiDir;
  @TestHTTPResource(value = "/", tls = true) URL base;

  private HttpResponse<String> post(String path, String key, String body) throws Exception {
    HttpRequest.Builder r = HttpRequest.newBuilder(base.toURI().resolve(path)).header("Content-Type", "application/json")
        .POST(HttpRequest.BodyPublishers.ofString(body));
    if (key != null) {
      r.header("Authorization", "Bearer " + key);
    }
    return SecureResource.https(Path.of(pkiDir.orElseThrow())).send(r.build(), HttpResponse.BodyHandlers.ofString());
  }

  private static String chat(String model) {
    return "{\"model\":\"" + model + "\",\"max_tokens\":4,\"messages\":[{\"role\":\"user\",\"content\":\"2+2=\"}]}";
  }

  private static String errorCode(HttpResponse<String> r) throws Exception {
    return JSON.readTree(r.body()).path("error").path("code").asText();
  }

  @Test
  void theOpenAiApiNeedsAKeyAllowedTheModel() throws Exception {
    assertTrue(base.toString().startsWith("https://"), base.toString());
    HttpResponse<String> none = post("/v1/chat/completions", null, chat("memgen:default"));
    assertEquals(401, none.statusCode(), none.body());
    assertEquals("invalid_api_key", errorCode(none));
    assertEquals("Bearer", none.headers().firstValue("WWW-Authenticate").orElse(""));
    HttpResponse<String> wrong = post("/v1/chat/completions", "mgk-wrong", chat("memgen:default"));
    assertEquals(401, wrong.statusCode(), wrong.body());
    assertTrue(wrong.body().contains("not known"), wrong.body());

    HttpResponse<String> otherFleet = post("/v1/chat/completions", SecureResource.FLEET_B_KEY, chat("memgen:default"));
    assertEquals(403, otherFleet.statusCode(), otherFleet.body());
    assertEquals("model_not_allowed", errorCode(otherFleet));
    assertTrue(otherFleet.body().contains("'fleet-b' may not use the adapter 'default'"), otherFleet.body());
    HttpResponse<String> baseOnly = post("/v1/chat/completions", SecureResource.FLEET_B_KEY, chat("memgen"));
    assertEquals(200, baseOnly.statusCode(), baseOnly.body());
    HttpResponse<String> allowed = post("/v1/chat/completions", SecureResource.REASONER_KEY, chat("memgen:default"));
    assertEquals(200, allowed.statusCode(), allowed.body());
    assertEquals("memgen:default", JSON.readTree(allowed.body()).path("model").asText());

    assertEquals(List.of("memgen"), models(SecureResource.FLEET_B_KEY));
    assertEquals(List.of("memgen", "memgen:default"), models(SecureResource.REASONER_KEY));

    HttpResponse<String> feedback = post("/v1/feedback", null, "{\"trajectory_id\":\"t\",\"reward\":1}");
    assertEquals(401, feedback.statusCode(), feedback.body());
    HttpResponse<String> health = SecureResource.https(Path.of(pkiDir.orElseThrow())).send(HttpRequest.newBuilder(base.toURI().resolve("/q/health/live")).build(),
        HttpResponse.BodyHandlers.ofString());
    assertEquals(200, health.statusCode(), "probes need no key: " + health.body());
  }

  private List<String> models(String key) throws Exception {
    HttpResponse<String> r = SecureResource.https(Path.of(pkiDir.orElseThrow())).send(HttpRequest.newBuilder(base.toURI().resolve("/v1/models"))
        .header("Authorization", "Bearer " + key).build(), HttpResponse.BodyHandlers.ofString());
    assertEquals(200, r.statusCode(), r.body());
    JsonNode data = JSON.readTree(r.body()).path("data");
    return data.findValuesAsText("id");
  }

  @Test
  void grpcGenerateChecksTheKeyAsTheHttpApiDoes() {
    Path pki = Path.of(pkiDir.orElseThrow());
    assertEquals(Status.Code.UNAUTHENTICATED, generate(pki, null, true));
    assertEquals(Status.Code.PERMISSION_DENIED, generate(pki, SecureResource.FLEET_B_KEY, true));
    assertEquals(Status.Code.OK, generate(pki, SecureResource.FLEET_B_KEY, false), "the base alone is every key's");
    assertEquals(Status.Code.OK, generate(pki, SecureResource.REASONER_KEY, true));
  }

  private Status.Code generate(Path pki, String key, boolean memory) {
    int port = Arc.container().instance(ValueRegistry.class).get().get(GrpcServer.GRPC_PORT);
    ManagedChannel channel = SecureResource.client(pki, "client", key).channel("localhost:" + port);
    try {
      ReasonerGrpc.newBlockingStub(channel).withDeadlineAfter(60, TimeUnit.SECONDS).generate(GenerateRequest.newBuilder()
          .setChat(ChatMessages.newBuilder().addMessages(ChatMessage.newBuilder().setRole("user").setContent("2+2=")))
          .setMaxNewTokens(3).setMemoryEnabled(memory).build()).forEachRemaining(e -> {});
      return Status.Code.OK;
    } catch (StatusRuntimeException e) {
      return e.getStatus().getCode();
    } finally {
      channel.shutdownNow();
    }
  }

}
