package dev.memgen.deploy;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import dev.memgen.model.checkpoint.DType;
import dev.memgen.model.checkpoint.TinyCheckpoint;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * {@code bench load} in short, on a tiny random model: its figures mean nothing here; what must hold is that every
 * turn is answered, both phases report, and (served) every answered request's trajectory is on the topic once.
 */
class BenchLoadTest {
  @TempDir Path tmp;

  /** reasoner-service as a process with a real broker, spoken to by the bench's OpenAI client, memory on. */
  @Test
  void servedOverTheOpenAiApiEveryAnsweredTurnIsRecordedOnce() throws Exception {
    JsonNode json = load("--api", "openai", "--memory", "on");
    JsonNode t = json.get("trajectories");
    long answered = json.at("/single/turns").asLong() + json.at("/concurrent/turns").asLong();
    assertTrue(t.get("successful").asLong() > answered, "the warm-up's turns are checked too: " + json);
    assertEquals(t.get("successful").asLong(), t.get("recorded_once").asLong(), json.toString());
    assertEquals(0, t.get("missing").asLong(), json.toString());
    assertEquals(0, t.get("duplicated").asLong(), json.toString());
  }

  /** The engine in process, memory off: no service, no broker, no trajectory check. */
  @Test
  void inProcessBothPhasesReport() throws Exception {
    JsonNode json = load("--api", "engine", "--memory", "off");
    assertNull(json.get("trajectories"), "nothing is recorded in process: " + json);
  }

  private JsonNode load(String... extra) throws Exception {
    Path model = tmp.resolve("model");
    TinyCheckpoint.write(model, TinyCheckpoint.tiny("qwen2"), DType.F32, 1, 11);
    List<String> args = new ArrayList<>(List.of("bench", "load", "--model", model.toString(), "--clients", "4",
        "--seconds", "3", "--single-seconds", "2", "--warm-up-seconds", "1", "--max-tokens", "8"));
    args.addAll(List.of(extra));
    JsonNode json = Commands.summary(args);
    assertEquals(0, json.get("errors").asInt(), json.toString());
    for (String phase : List.of("single", "concurrent")) {
      assertTrue(json.at("/" + phase + "/turns").asInt() > 0, phase + " answered turns: " + json);
      assertTrue(json.at("/" + phase + "/tokens_per_s").asDouble() > 0, json.toString());
      assertTrue(json.at("/" + phase + "/ttft_p50_s").asDouble() > 0, json.toString());
    }
    assertEquals(4, json.at("/concurrent/agents").asInt());
    return json;
  }
}
