package dev.memgen.reasoner;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.memgen.proto.v1.GenerateRequest;
import dev.memgen.proto.v1.ReasonerGrpc;
import dev.memgen.proto.v1.TokenIds;
import dev.memgen.rpc.TinyModelResource;
import io.grpc.ManagedChannel;
import io.quarkus.test.common.QuarkusTestResourceLifecycleManager;
import io.quarkus.test.common.WithTestResource;
import io.quarkus.test.junit.QuarkusTest;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.concurrent.TimeUnit;
import org.eclipse.microprofile.config.inject.ConfigProperty;
import org.junit.jupiter.api.Test;

/**
 * Structured logs: with JSON logging on, a generation's record is one JSON object whose "mdc" names its session and
 * (with a trajectory recorded) its trajectory, so a log search leads from a request to what was logged for it.
 */
@QuarkusTest
@WithTestResource(TinyModelResource.class)
@WithTestResource(JsonLogsTest.JsonFileLog.class)
class JsonLogsTest {
  private static final ObjectMapper JSON = new ObjectMapper();
  // Optional: every @QuarkusTest class is a bean of every test application, most of which have no such setting.
  @ConfigProperty(name = "quarkus.log.file.path") Optional<String> logFile;

  /** JSON records to a file, the generation records at DEBUG. */
  public static class JsonFileLog implements QuarkusTestResourceLifecycleManager {
    @Override
    public Map<String, String> start() {
      try {
        Path file = Files.createTempDirectory("memgen-json-logs").resolve("reasoner.log");
        return Map.of("quarkus.log.file.enabled", "true", "quarkus.log.file.path", file.toString(),
            "quarkus.log.file.json.enabled", "true",
            "quarkus.log.category.\"dev.memgen.reasoner.Generations\".level", "DEBUG");
      } catch (IOException e) {
        throw new IllegalStateException(e);
      }
    }

    @Override
    public void stop() {}
  }

  @Test
  void aGenerationsRecordCarriesItsSessionId() throws Exception {
    ManagedChannel channel = GrpcTestChannel.open();
    try {
      ReasonerGrpc.newBlockingStub(channel).withDeadlineAfter(60, TimeUnit.SECONDS).generate(GenerateRequest.newBuilder()
          .setTokenIds(TokenIds.newBuilder().addIds(3).addIds(5).addIds(7)).setMaxNewTokens(4)
          .setSessionId("json-logs-session").build()).forEachRemaining(e -> {});
    } finally {
      GrpcTestChannel.close(channel);
    }
    Path file = Path.of(logFile.orElseThrow());
    List<JsonNode> mine = new ArrayList<>();
    long end = System.nanoTime() + TimeUnit.SECONDS.toNanos(10);
    while (mine.isEmpty() && System.nanoTime() < end) {
      Thread.sleep(100);
      mine.clear();
      for (String line : Files.readAllLines(file)) {
        JsonNode record = JSON.readTree(line); // every line is one JSON object
        if ("json-logs-session".equals(record.path("mdc").path("session_id").asText())) {
          mine.add(record);
        }
      }
    }
    assertEquals(1, mine.size(), "one record for the generation: " + mine);
    assertTrue(mine.get(0).path("message").asText().startsWith("finished: 4 tokens"), mine.get(0).toString());
    assertEquals("DEBUG", mine.get(0).path("level").asText());
  }
}
