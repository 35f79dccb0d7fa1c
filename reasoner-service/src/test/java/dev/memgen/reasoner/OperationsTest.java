package dev.memgen.reasoner;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.memgen.proto.v1.ChatMessage;
import dev.memgen.rpc.Prometheus;
import dev.memgen.proto.v1.ChatMessages;
import dev.memgen.proto.v1.GenerateRequest;
import io.quarkus.test.common.http.TestHTTPResource;
import io.quarkus.test.junit.QuarkusTest;
import io.quarkus.test.junit.TestProfile;
import java.net.URL;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.util.List;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.junit.jupiter.api.Test;

/**
 * What an operator sees: the Prometheus exposition at {@code /q/metrics} after generations with memory — checked by
 * Prometheus's own {@code promtool check metrics} (Debian's {@code prometheus} package; {@code .ci/run} installs it) —
 * carries the engine, generation, memory, spool and adapter metrics with values that add up; readiness reports the
 * model and the broker, liveness answers.
 */
@QuarkusTest
@TestProfile(ExperienceLogProfile.class)
class OperationsTest {
  private static final HttpClient HTTP = HttpClient.newHttpClient();
  private static final ObjectMapper JSON = new ObjectMapper();

  @TestHTTPResource("/q/metrics") URL metrics;
  @TestHTTPResource("/q/health/ready") URL ready;
  @TestHTTPResource("/q/health/live") URL live;

  static HttpResponse<String> get(URL url) throws Exception {
    return HTTP.send(HttpRequest.newBuilder(url.toURI()).build(), HttpResponse.BodyHandlers.ofString());
  }

  /** The value of the first sample of {@code name} with every given label, or NaN. */
  static double sample(String exposition, String name, String... labels) {
    Matcher m = Pattern.compile("^" + Pattern.quote(name) + "(\\{[^}]*\\})? (\\S+)$", Pattern.MULTILINE).matcher(exposition);
    while (m.find()) {
      String set = m.group(1) == null ? "" : m.group(1);
      boolean all = true;
      for (String l : labels) {
        all &= set.contains(l);
      }
      if (all) {
        return Double.parseDouble(m.group(2));
      }
    }
    return Double.NaN;
  }

  @Test
  void metricsPassPromtoolAndAddUp() throws Exception {
    String before = get(metrics).body();
    double tokensBefore = sample(before, "memgen_generation_completion_tokens_total");
    double generationsBefore = sample(before, "memgen_generation_duration_seconds_count");
    int n = 3;
    int generated = 0;
    int prompts = 0;
    for (int i = 0; i < n; i++) {
      ReasonerWithMemoryTest.Streamed s = ReasonerWithMemoryTest.generate(GenerateRequest.newBuilder()
          .setChat(ChatMessages.newBuilder().addMessages(ChatMessage.newBuilder().setRole("user")
              .setContent(ReasonerWithMemoryTest.QUESTION + " " + i)))
          .setMaxNewTokens(12).setMemoryEnabled(true).setWantTrace(true).build());
      generated += s.finished().getCompletionTokens();
      prompts += s.events().stream().anyMatch(e -> e.getKind() == dev.memgen.proto.v1.LatentKind.PROMPT) ? 1 : 0;
    }
    HttpResponse<String> r = get(metrics);
    assertEquals(200, r.statusCode());
    String text = r.body();

    List<String> out = Prometheus.lint(text);
    assertTrue(out.isEmpty(), "promtool check metrics: " + out + Prometheus.at(text, out));

    assertEquals(generated, sample(text, "memgen_generation_completion_tokens_total") - tokensBefore, 1e-9, text);
    assertEquals(n, sample(text, "memgen_generation_duration_seconds_count") - generationsBefore, 1e-9);
    assertTrue(sample(text, "memgen_generation_time_to_first_token_seconds_count") >= n);
    assertTrue(sample(text, "memgen_generation_time_to_first_token_seconds_bucket", "le=\"+Inf\"") >= n, "a histogram");
    assertTrue(sample(text, "memgen_engine_tokens_total") >= generated, "the engine's own count");
    assertTrue(sample(text, "memgen_engine_prefill_tokens_total") > 0);
    assertTrue(sample(text, "memgen_memory_insertions_total", "kind=\"prompt\"") >= prompts && prompts == n,
        "every generation took prompt latents");
    assertTrue(sample(text, "memgen_log_records_accepted_total") >= n, "trajectories spooled");
    assertTrue(!Double.isNaN(sample(text, "memgen_log_spool_depth")));
    assertTrue(!Double.isNaN(sample(text, "memgen_engine_waiting")));
    for (String reason : List.of("trigger_declined", "insertion_cap", "weaver_unavailable", "context_full")) {
      assertTrue(!Double.isNaN(sample(text, "memgen_memory_skips_total", "reason=\"" + reason + "\"")), reason);
    }
  }

  @Test
  void aRealPrometheusScrapesIt() throws Exception {
    ReasonerWithMemoryTest.generate(GenerateRequest.newBuilder().setChat(ChatMessages.newBuilder()
        .addMessages(ChatMessage.newBuilder().setRole("user").setContent("2+2=?"))).setMaxNewTokens(4).build());
    try (Prometheus p = Prometheus.scraping(metrics)) {
      assertEquals(1.0, p.await("up"), "the scrape succeeded");
      assertTrue(p.await("memgen_engine_tokens_total") >= 4, "a counter, as Prometheus stored it");
      assertTrue(p.await("sum(memgen_generation_time_to_first_token_seconds_count)") >= 1, "a histogram");
    }
  }

  @Test
  void readinessNamesItsDependenciesAndLivenessAnswers() throws Exception {
    HttpResponse<String> r = get(ready);
    assertEquals(200, r.statusCode(), r.body());
    JsonNode body = JSON.readTree(r.body());
    assertEquals("UP", body.get("status").asText(), r.body());
    JsonNode check = null;
    for (JsonNode c : body.get("checks")) {
      check = c.get("name").asText().equals("memgen-reasoner") ? c : check;
    }
    assertTrue(check != null, "a memgen-reasoner check: " + r.body());
    assertTrue(check.get("data").get("experience log").asText().contains("broker"), r.body());
    assertTrue(check.get("data").has("model"), r.body());
    assertEquals(200, get(live).statusCode());
  }

}
