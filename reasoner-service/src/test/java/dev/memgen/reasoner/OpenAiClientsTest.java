package dev.memgen.reasoner;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.langchain4j.data.message.SystemMessage;
import dev.langchain4j.data.message.UserMessage;
import dev.langchain4j.model.chat.response.ChatResponse;
import dev.langchain4j.model.openai.OpenAiChatModel;
import dev.memgen.model.Decoder;
import dev.memgen.model.generate.Generator;
import dev.memgen.model.generate.SamplingParams;
import dev.memgen.model.text.ChatTemplate;
import dev.memgen.model.text.TextTokenizer;
import dev.memgen.rpc.TinyModelResource;
import io.quarkus.test.common.ResourceArg;
import io.quarkus.test.common.WithTestResource;
import io.quarkus.test.common.http.TestHTTPResource;
import io.quarkus.test.junit.QuarkusTest;
import java.io.IOException;
import java.net.URI;
import java.net.URL;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.concurrent.TimeUnit;
import org.eclipse.microprofile.config.inject.ConfigProperty;
import org.junit.jupiter.api.Test;

/**
 * The OpenAI-compatible API with real clients: the official {@code openai} npm package run by the machine's Node.js
 * (non-streaming, streaming, models, a text completion, refused requests) and LangChain4j's OpenAI module, against a
 * tiny random checkpoint with embedded memory. What they get is checked against the model library decoding the same
 * chat prompt directly, so the API cannot pass by agreeing with itself.
 */
@QuarkusTest
@WithTestResource(value = TinyModelResource.class, initArgs = @ResourceArg(name = TinyModelResource.MEMORY, value = "true"))
class OpenAiClientsTest {
  private static final ObjectMapper JSON = new ObjectMapper();
  private static final List<ChatTemplate.Message> MESSAGES =
      List.of(new ChatTemplate.Message("system", "You add numbers."), new ChatTemplate.Message("user", "What is 2+3?"));

  @ConfigProperty(name = "memgen.model.dir")
  String modelDir;

  @TestHTTPResource("/v1")
  URL api;

  /** The greedy completion of the chat prompt, decoded by the model library itself. */
  private String direct(String prompt, int maxTokens) {
    Path dir = Path.of(modelDir);
    try (Decoder decoder = Decoder.load(dir); TextTokenizer tokenizer = TextTokenizer.load(dir)) {
      Generator.Result r = new Generator(decoder).generate(List.of(new Generator.Request(tokenizer.encode(prompt), maxTokens,
          SamplingParams.GREEDY, ChatTemplate.stopTokens(decoder.config(), tokenizer)))).get(0);
      return tokenizer.decode(r.tokens(), true);
    }
  }

  @Test
  void theOfficialNodeClientGetsWhatTheModelSays() throws Exception {
    Path client = Path.of("..", "clients", "openai-node").toAbsolutePath().normalize();
    if (!Files.isDirectory(client.resolve("node_modules").resolve("openai"))) {
      run(client, 300, "npm", "ci", "--no-audit", "--no-fund"); // the pinned client from package-lock.json
    }
    String out = run(client, 120, "node", "check.mjs", api.toString(), "memgen", "memgen:default");
    String[] lines = out.strip().split("\n");
    JsonNode r = JSON.readTree(lines[lines.length - 1]);

    assertEquals(List.of("memgen", "memgen:default"), JSON.convertValue(r.get("models"), List.class));
    String expected = direct(ChatTemplate.render(MESSAGES, true), 12);
    JsonNode whole = r.get("whole");
    assertEquals(expected, whole.get("content").asText(), "the non-streamed answer is the model's greedy answer");
    assertEquals("chat.completion", whole.get("object").asText());
    int prompt = whole.at("/usage/prompt_tokens").asInt();
    assertTrue(prompt > 10, whole.toString());
    assertEquals(prompt + whole.at("/usage/completion_tokens").asInt(), whole.at("/usage/total_tokens").asInt());
    assertEquals(whole.at("/usage/completion_tokens").asInt() == 12 ? "length" : "stop", whole.get("finish_reason").asText());
    assertEquals(false, whole.at("/memgen/memory").asBoolean(), "the plain model name is the base alone");

    JsonNode streamed = r.get("streamed");
    assertEquals(expected, streamed.get("content").asText(), "streamed chunks add up to the same answer");
    assertTrue(streamed.get("chunks").asInt() >= 3, streamed.toString());
    assertEquals(whole.get("finish_reason").asText(), streamed.get("finish_reason").asText());
    assertEquals(whole.get("usage"), streamed.get("usage"), "stream_options.include_usage sends the usage");

    JsonNode memory = r.at("/memory/memgen");
    assertTrue(memory.get("memory").asBoolean(), "memgen:default serves with memory: " + memory);
    assertTrue(memory.get("insertions").asInt() >= 1, "the prompt latents at least: " + memory);
    assertTrue(memory.get("weaver_version").asLong() >= 1, memory.toString());
    assertTrue(memory.get("session_id").asText().length() > 0);

    assertEquals(direct("2+3=", 6), r.at("/completion/text").asText(), "a text completion has no chat template");

    assertEquals(404, r.at("/unknownModel/status").asInt(), r.toString());
    assertEquals("model_not_found", r.at("/unknownModel/code").asText());
    assertEquals(400, r.at("/negativeMaxTokens/status").asInt(), r.toString());
    assertEquals("max_tokens", r.at("/negativeMaxTokens/param").asText());
    assertEquals(400, r.at("/hugeMaxTokens/status").asInt(), r.toString());
    assertEquals("context_length_exceeded", r.at("/hugeMaxTokens/code").asText());
  }

  @Test
  void langChain4jChatsThroughIt() {
    OpenAiChatModel model = OpenAiChatModel.builder().baseUrl(api.toString()).apiKey("test-key").modelName("memgen")
        .temperature(0.0).maxTokens(10).maxRetries(0).build();
    ChatResponse response = model.chat(SystemMessage.from("You add numbers."), UserMessage.from("What is 2+3?"));
    assertEquals(direct(ChatTemplate.render(MESSAGES, true), 10), response.aiMessage().text());
    assertTrue(response.tokenUsage().inputTokenCount() > 10, response.toString());
  }

  @Test
  void badInputGetsAnOpenAiErrorAndTheServerStaysUp() throws Exception {
    HttpClient http = HttpClient.newHttpClient();
    record Case(byte[] body, int status, String says) {}
    byte[] invalidUtf8 = {'{', '"', 'm', '"', ':', '"', (byte) 0xC3, (byte) 0x28, '"', '}'};
    List<Case> cases = List.of(
        new Case("{not json".getBytes(StandardCharsets.UTF_8), 400, "not valid JSON"),
        new Case(invalidUtf8, 400, "not valid UTF-8"),
        new Case("{\"model\":\"memgen\"}".getBytes(StandardCharsets.UTF_8), 400, "messages must be"),
        new Case("{\"model\":\"memgen\",\"messages\":[{\"role\":\"wizard\",\"content\":\"hi\"}]}".getBytes(StandardCharsets.UTF_8),
            400, "messages[0].role"),
        new Case("{\"model\":\"memgen\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"temperature\":\"hot\"}"
            .getBytes(StandardCharsets.UTF_8), 400, "temperature must be a number"),
        new Case(("{\"model\":\"memgen\",\"messages\":[{\"role\":\"user\",\"content\":\"" + "x".repeat(2_000_000) + "\"}]}")
            .getBytes(StandardCharsets.UTF_8), 413, "memgen.openai.max-body-bytes"),
        new Case(("{\"model\":\"memgen\",\"messages\":[{\"role\":\"user\",\"content\":\"" + "ab ".repeat(3000) + "\"}]}")
            .getBytes(StandardCharsets.UTF_8), 400, "no room in the context of 4096"));
    for (Case c : cases) {
      HttpResponse<String> r = http.send(HttpRequest.newBuilder(URI.create(api + "/chat/completions"))
          .header("Content-Type", "application/json").POST(HttpRequest.BodyPublishers.ofByteArray(c.body())).build(),
          HttpResponse.BodyHandlers.ofString());
      assertEquals(c.status(), r.statusCode(), r.body());
      JsonNode error = JSON.readTree(r.body()).get("error");
      assertTrue(error.get("message").asText().contains(c.says()), r.body());
      assertTrue(error.has("type") && error.has("param") && error.has("code"), r.body());
    }
    HttpResponse<String> ok = http.send(HttpRequest.newBuilder(URI.create(api + "/models")).build(),
        HttpResponse.BodyHandlers.ofString());
    assertEquals(200, ok.statusCode(), "still up");
  }

  private static String run(Path dir, int seconds, String... command) throws IOException, InterruptedException {
    Process p = new ProcessBuilder(command).directory(dir.toFile()).redirectErrorStream(false).start();
    byte[] err = new byte[0];
    String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
    if (!p.waitFor(seconds, TimeUnit.SECONDS)) {
      p.destroyForcibly();
      throw new AssertionError(String.join(" ", command) + " did not finish in " + seconds + " s");
    }
    err = p.getErrorStream().readAllBytes();
    assertEquals(0, p.exitValue(), String.join(" ", command) + " failed:\n" + out + new String(err, StandardCharsets.UTF_8));
    return out;
  }
}
