package dev.memgen.model;

import static dev.memgen.model.GoldenForwardTest.assertClose;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.Shape;
import com.fasterxml.jackson.databind.JsonNode;
import dev.memgen.model.checkpoint.Checkpoint;
import dev.memgen.model.memory.Memory;
import java.io.IOException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;
import org.junit.jupiter.api.io.TempDir;

/**
 * Sessions of two different memories (two LoRAs, projections and query sets) on one base, at different prefix
 * lengths and kinds, woven and read in one batched forward call (per-row adapters): every session's latents and
 * every trigger's logits equal the independent numpy reference's for that session's own prefix, and the sessions go
 * on correctly afterwards (what each kept of the batch is its own prefix, not the queries or the padding).
 */
class BatchedMemoryTest {
  @TempDir Path tmp;

  record Setup(Path base, Path[] memories, String fingerprint) {}

  Setup setup() {
    Path base = Reference.makeCheckpoint(tmp.resolve("base"), "--arch", "qwen2", "--dtype", "f32", "--seed", "13", "--untied");
    String fingerprint = Checkpoint.open(base).fingerprint();
    Path[] memories = new Path[2];
    for (int i = 0; i < 2; i++) {
      memories[i] = tmp.resolve("memory" + i);
      MemoryGoldenTest.python("make-memory", "--model", base.toString(), "--out", memories[i].toString(), "--seed",
          String.valueOf(5 + i), "--prompt-k", "3", "--inference-k", "2", "--r", "4", "--alpha", "8", "--targets",
          i == 0 ? "q_proj,v_proj" : "q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj", "--fingerprint", fingerprint);
    }
    return new Setup(base, memories, fingerprint);
  }

  float[] reference(Path base, Path memory, int[] ids, float[][] rows, String kind, String tag) throws IOException {
    return MemoryGoldenTest.referenceLatents(tmp.resolve("rows-" + tag + ".json"), base, memory, ids, rows, kind);
  }

  @ParameterizedTest(name = "padding packed: {0}")
  @ValueSource(booleans = {false, true})
  void sessionsOfTwoMemoriesWeaveInOneCallAsTheReferenceWeavesEachAlone(boolean packed) throws IOException {
    Setup s = setup();
    long bound = Decoder.packPaddingAbove(packed ? 0 : Long.MAX_VALUE);
    try (Decoder base = Decoder.load(s.base()); Memory a = Memory.load(s.memories()[0], base, s.fingerprint());
        Memory b = Memory.load(s.memories()[1], base, s.fingerprint()); NDManager m = base.manager().newSubManager()) {
      int h = base.config().hiddenSize();
      float[][] rows = MemoryGoldenTest.randomRows(2, h, 9);
      // Three sessions: memory a with a 5-token prefix, memory b with 2 tokens, memory a with an empty prefix.
      Memory[] owner = {a, b, a};
      int[][] first = {{5, 17, 250, 3, 99}, {42, 7}, {}};
      int[][] more = {{11, 12}, {}, {8, 9, 10}}; // appended in the batched call itself
      Weaver.Session[] sessions = new Weaver.Session[3];
      for (int i = 0; i < 3; i++) {
        sessions[i] = owner[i].weaver().newSession(4); // small: the batched call's write-back must grow it
        if (first[i].length > 0) {
          sessions[i].append(base.embed(m, new int[][] {first[i]}));
        }
      }
      List<Weaver.Kind> kinds = List.of(Weaver.Kind.INFERENCE, Weaver.Kind.PROMPT, Weaver.Kind.PROMPT);
      List<NDArray> newRows = new ArrayList<>();
      for (int[] ids : more) {
        newRows.add(ids.length == 0 ? null : base.embed(m, new int[][] {ids}));
      }
      List<NDArray> woven = Weaver.weave(List.of(sessions), kinds, newRows, m);
      for (int i = 0; i < 3; i++) {
        int[] prefix = concat(first[i], more[i]);
        assertEquals(prefix.length, sessions[i].length(), "session " + i + " keeps its prefix and none of the queries");
        assertClose("session " + i + " latents", woven.get(i).toFloatArray(), reference(s.base(), s.memories()[owner[i] == a ? 0 : 1],
            prefix, new float[0][], kinds.get(i).name().toLowerCase(), "first" + i));
      }
      // Again, from what each session kept: raw rows into sessions 0 and 2, nothing new into session 1.
      List<NDArray> next = new ArrayList<>();
      next.add(m.create(MemoryGoldenTest.flatten(rows), new Shape(1, 2, h)));
      next.add(null);
      next.add(m.create(MemoryGoldenTest.flatten(rows), new Shape(1, 2, h)));
      List<NDArray> again = Weaver.weave(List.of(sessions), List.of(Weaver.Kind.INFERENCE, Weaver.Kind.INFERENCE,
          Weaver.Kind.INFERENCE), next, m);
      for (int i = 0; i < 3; i++) {
        int[] prefix = concat(first[i], more[i]);
        float[][] raw = i == 1 ? new float[0][] : rows;
        assertClose("session " + i + " second latents", again.get(i).toFloatArray(),
            reference(s.base(), s.memories()[owner[i] == a ? 0 : 1], prefix, raw, "inference", "second" + i));
      }
      for (Weaver.Session session : sessions) {
        session.close();
      }
    } finally {
      Decoder.packPaddingAbove(bound);
    }
  }

  @ParameterizedTest(name = "padding packed: {0}")
  @ValueSource(booleans = {false, true})
  void triggersOfTwoMemoriesReadInOneCallAsTheReferenceReadsEachAlone(boolean packed) {
    Setup s = setup();
    long bound = Decoder.packPaddingAbove(packed ? 0 : Long.MAX_VALUE);
    try (Decoder base = Decoder.load(s.base()); Memory a = Memory.load(s.memories()[0], base, s.fingerprint());
        Memory b = Memory.load(s.memories()[1], base, s.fingerprint())) {
      Memory[] owner = {b, a, b};
      int[][] first = {{1, 2, 3}, {200}, {}};
      int[][] more = {{77, 9}, {10, 11, 12, 13}, {4, 5}};
      Trigger.Session[] sessions = new Trigger.Session[3];
      for (int i = 0; i < 3; i++) {
        sessions[i] = owner[i].trigger().newSession(2);
        sessions[i].append(first[i]);
      }
      Trigger.append(List.of(sessions), Arrays.asList(more));
      for (int i = 0; i < 3; i++) {
        JsonNode golden;
        try {
          golden = MemoryGoldenTest.JSON.readTree(MemoryGoldenTest.python("trigger", "--model", s.base().toString(),
              "--memory", s.memories()[owner[i] == a ? 0 : 1].toString(), "--ids", csv(concat(first[i], more[i]))));
        } catch (IOException e) {
          throw new java.io.UncheckedIOException(e);
        }
        assertClose("trigger " + i + " logits", sessions[i].logits(), Reference.floats(golden.get("logits")));
        assertEquals(golden.get("p_invoke").asDouble(), sessions[i].probability(), 1e-5);
      }
      assertTrue(Math.abs(sessions[0].probability() - sessions[1].probability()) > 1e-6, "the two triggers differ");
      for (Trigger.Session session : sessions) {
        session.close();
      }
    } finally {
      Decoder.packPaddingAbove(bound);
    }
  }

  private static int[] concat(int[] x, int[] y) {
    int[] out = Arrays.copyOf(x, x.length + y.length);
    System.arraycopy(y, 0, out, x.length, y.length);
    return out;
  }

  private static String csv(int[] ids) {
    StringBuilder b = new StringBuilder();
    for (int id : ids) {
      b.append(b.length() == 0 ? "" : ",").append(id);
    }
    return b.toString();
  }
}
