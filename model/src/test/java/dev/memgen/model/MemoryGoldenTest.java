package dev.memgen.model;

import static dev.memgen.model.GoldenForwardTest.assertClose;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.Shape;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.memgen.model.checkpoint.Checkpoint;
import dev.memgen.model.checkpoint.CheckpointException;
import dev.memgen.model.memory.LoraConfig;
import dev.memgen.model.memory.Memory;
import dev.memgen.model.memory.MemoryManifest;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The weaver, the trigger and their LoRA against the independent numpy implementation
 * ({@code reference/memgen_reference.py}) on random bases and random memories whose every tensor matters.
 */
class MemoryGoldenTest {
  static final ObjectMapper JSON = new ObjectMapper();
  @TempDir Path tmp;

  static String python(String... args) {
    return Reference.run("memgen_reference.py", args);
  }

  record Setup(Path base, Path memory, String fingerprint) {}

  Setup setup(String arch, String targets, String... baseArgs) {
    List<String> args = new ArrayList<>(List.of("--arch", arch, "--dtype", "f32", "--seed", "11"));
    args.addAll(List.of(baseArgs));
    Path base = Reference.makeCheckpoint(tmp.resolve("base"), args.toArray(String[]::new));
    String fingerprint = Checkpoint.open(base).fingerprint();
    Path memory = tmp.resolve("memory");
    python("make-memory", "--model", base.toString(), "--out", memory.toString(), "--seed", "3", "--prompt-k", "3",
        "--inference-k", "2", "--r", "4", "--alpha", "8", "--targets", targets, "--fingerprint", fingerprint);
    return new Setup(base, memory, fingerprint);
  }

  static float[][] randomRows(int n, int h, long seed) {
    Random r = new Random(seed);
    float[][] rows = new float[n][h];
    for (float[] row : rows) {
      for (int i = 0; i < h; i++) {
        row[i] = (float) (r.nextGaussian() * 0.5);
      }
    }
    return rows;
  }

  float[] referenceLatents(Setup s, int[] ids, float[][] rows, String kind) throws IOException {
    return referenceLatents(tmp.resolve("rows-" + kind + ".json"), s.base(), s.memory(), ids, rows, kind);
  }

  /** The reference's latents for a prefix of token ids then raw rows (written to {@code file} for it to read). */
  static float[] referenceLatents(Path file, Path base, Path memory, int[] ids, float[][] rows, String kind)
      throws IOException {
    ObjectNode in = JSON.createObjectNode();
    ArrayNode idsNode = in.putArray("ids");
    for (int id : ids) {
      idsNode.add(id);
    }
    ArrayNode rowsNode = in.putArray("rows");
    for (float[] row : rows) {
      ArrayNode r = rowsNode.addArray();
      for (float v : row) {
        r.add(v);
      }
    }
    Files.writeString(file, in.toString());
    JsonNode out = JSON.readTree(python("weave", "--model", base.toString(), "--memory", memory.toString(),
        "--rows", file.toString(), "--kind", kind));
    List<Float> flat = new ArrayList<>();
    out.get("latents").forEach(row -> row.forEach(v -> flat.add((float) v.asDouble())));
    float[] f = new float[flat.size()];
    for (int i = 0; i < f.length; i++) {
      f[i] = flat.get(i);
    }
    return f;
  }

  @Test
  void weaveMatchesReferenceIncrementallyAndAfterRollback() throws IOException {
    Setup s = setup("qwen2", "q_proj,v_proj", "--untied");
    int[] ids = {5, 17, 250, 3, 99, 42};
    try (Decoder base = Decoder.load(s.base()); Memory memory = Memory.load(s.memory(), base, s.fingerprint());
        NDManager m = base.manager().newSubManager(); Weaver.Session session = memory.weaver().newSession(8)) {
      int h = base.config().hiddenSize();
      float[][] latentRows = randomRows(2, h, 1);
      // Prefix: four tokens, weave prompt latents; then two more tokens and two raw rows, weave inference latents.
      session.append(base.embed(m, new int[][] {{ids[0], ids[1], ids[2], ids[3]}}));
      float[] prompt = session.weave(Weaver.Kind.PROMPT, m).toFloatArray();
      assertEquals(4, session.length(), "the queries are rolled back out of the prefix");
      session.append(base.embed(m, new int[][] {{ids[4], ids[5]}}));
      session.append(m.create(flatten(latentRows), new Shape(1, 2, h)));
      NDArray inference = session.weave(Weaver.Kind.INFERENCE, m);
      assertEquals(new Shape(1, 2, h), inference.getShape());

      assertClose("prompt latents", prompt, referenceLatents(s, new int[] {ids[0], ids[1], ids[2], ids[3]}, new float[0][], "prompt"));
      assertClose("inference latents", inference.toFloatArray(), referenceLatents(s, ids, latentRows, "inference"));
    }
  }

  @Test
  void everyLoraTargetAndTheTriggerMatchReference() throws IOException {
    Setup s = setup("llama", "q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj", "--untied",
        "--attention-bias", "--mlp-bias");
    int[] ids = {1, 2, 3, 200, 77, 9, 10};
    try (Decoder base = Decoder.load(s.base()); Memory memory = Memory.load(s.memory(), base, s.fingerprint());
        NDManager m = base.manager().newSubManager()) {
      StringBuilder csv = new StringBuilder();
      for (int id : ids) {
        csv.append(csv.length() == 0 ? "" : ",").append(id);
      }
      for (String which : new String[] {"weaver", "trigger"}) {
        LoraAdapter lora = which.equals("weaver") ? memory.weaver().lora() : memory.trigger().lora();
        JsonNode golden = JSON.readTree(python("lora-forward", "--model", s.base().toString(), "--memory",
            s.memory().toString(), "--which", which, "--ids", csv.toString()));
        try (KvCache cache = base.newCache(1, ids.length)) {
          NDArray last = base.forward(cache, base.embed(m, new int[][] {ids}), GoldenForwardTest.allValid(1, ids.length), lora)
              .get("0, -1");
          assertClose(which + " LoRA hidden", last.toFloatArray(), Reference.floats(golden.get("hidden")));
          assertClose(which + " LoRA logits", base.logits(last).toFloatArray(), Reference.floats(golden.get("logits")));
        }
      }
      JsonNode golden = JSON.readTree(python("trigger", "--model", s.base().toString(), "--memory", s.memory().toString(),
          "--ids", csv.toString()));
      try (Trigger.Session t = memory.trigger().newSession(4)) {
        t.append(new int[] {ids[0], ids[1], ids[2]});
        t.append(new int[] {ids[3], ids[4], ids[5], ids[6]}); // incremental, as at successive delimiters
        assertClose("trigger logits", t.logits(), Reference.floats(golden.get("logits")));
        assertEquals(golden.get("p_invoke").asDouble(), t.probability(), 1e-5);
      }
      try (KvCache cache = base.newCache(1, ids.length)) {
        float[] plain = base.forward(cache, base.embed(m, new int[][] {ids}), GoldenForwardTest.allValid(1, ids.length)).toFloatArray();
        try (KvCache c2 = base.newCache(1, ids.length)) {
          float[] adapted = base.forward(c2, base.embed(m, new int[][] {ids}), GoldenForwardTest.allValid(1, ids.length),
              memory.weaver().lora()).toFloatArray();
          assertTrue(Reference.relativeError(adapted, plain) > 1e-2, "the LoRA changes the base's output");
        }
      }
    }
  }

  @Test
  void freshMemoryLeavesTheBaseUnchangedAndTheReferenceReadsIt() throws IOException {
    Path base = Reference.makeCheckpoint(tmp.resolve("base"), "--arch", "qwen2", "--dtype", "bf16", "--seed", "2");
    Path mem = tmp.resolve("fresh");
    String fingerprint = Checkpoint.open(base).fingerprint();
    try (Decoder decoder = Decoder.load(base)) {
      MemoryManifest mf = new MemoryManifest(1, fingerprint, decoder.config().hiddenSize(), decoder.config().numLayers(), 4, 2,
          "embeddings", LoraConfig.REFERENCE, LoraConfig.REFERENCE, List.of(",", ".", "\n"), 5);
      Memory.init(mem, decoder.config(), mf, 5);
      try (Memory memory = Memory.load(mem, decoder, fingerprint); NDManager m = decoder.manager().newSubManager()) {
        int[] ids = {10, 20, 30};
        try (KvCache a = decoder.newCache(1, 3); KvCache b = decoder.newCache(1, 3)) {
          float[] plain = decoder.forward(a, decoder.embed(m, new int[][] {ids}), GoldenForwardTest.allValid(1, 3)).toFloatArray();
          float[] adapted = decoder.forward(b, decoder.embed(m, new int[][] {ids}), GoldenForwardTest.allValid(1, 3),
              memory.weaver().lora()).toFloatArray();
          assertClose("LoRA B = 0 is the base", adapted, plain);
        }
        try (Weaver.Session w = memory.weaver().newSession(4)) {
          w.append(decoder.embed(m, new int[][] {ids}));
          float[] ours = w.weave(Weaver.Kind.PROMPT, m).toFloatArray();
          assertClose("fresh memory vs reference", ours, referenceLatents(new Setup(base, mem, fingerprint), ids, new float[0][], "prompt"));
        }
      }
    }
  }

  @Test
  void memoriesForAnotherBaseOrBrokenAreRefusedByName() throws IOException {
    Setup s = setup("qwen2", "q_proj,v_proj");
    Path other = Reference.makeCheckpoint(tmp.resolve("other"), "--arch", "qwen2", "--dtype", "f32", "--seed", "12");
    try (Decoder otherBase = Decoder.load(other)) {
      CheckpointException e = assertThrows(CheckpointException.class,
          () -> Memory.load(s.memory(), otherBase, Checkpoint.open(other).fingerprint()));
      assertTrue(e.getMessage().contains("manifest.json") && e.getMessage().contains("another base model"), e.getMessage());
    }
    Path wide = Reference.makeCheckpoint(tmp.resolve("wide"), "--arch", "qwen2", "--dtype", "f32", "--hidden", "128");
    try (Decoder wideBase = Decoder.load(wide)) {
      CheckpointException e = assertThrows(CheckpointException.class, () -> Memory.load(s.memory(), wideBase, s.fingerprint()));
      assertTrue(e.getMessage().contains("hidden_size 64"), e.getMessage());
    }
    try (Decoder base = Decoder.load(s.base())) {
      Path manifest = s.memory().resolve("manifest.json");
      String original = Files.readString(manifest);
      Files.writeString(manifest, original.replace("\"prompt_k\": 3", "\"prompt_k\": 5"));
      CheckpointException e = assertThrows(CheckpointException.class, () -> Memory.load(s.memory(), base, s.fingerprint()));
      assertTrue(e.getMessage().contains("weaver.prompt_queries") && e.getMessage().contains("shape mismatch"), e.getMessage());
      Files.writeString(manifest, original.replace("\"q_proj\",", ""));
      e = assertThrows(CheckpointException.class, () -> Memory.load(s.memory(), base, s.fingerprint()));
      assertTrue(e.getMessage().contains("q_proj") && e.getMessage().contains("unexpected tensor"), e.getMessage());
      Files.writeString(manifest, original.replace("\"r\": 4", "\"r\": 0"));
      e = assertThrows(CheckpointException.class, () -> Memory.load(s.memory(), base, s.fingerprint()));
      assertTrue(e.getMessage().contains("weaver.lora") && e.getMessage().contains("rank"), e.getMessage());
    }
  }

  static float[] flatten(float[][] rows) {
    float[] f = new float[rows.length * rows[0].length];
    for (int i = 0; i < rows.length; i++) {
      System.arraycopy(rows[i], 0, f, i * rows[0].length, rows[0].length);
    }
    return f;
  }
}
