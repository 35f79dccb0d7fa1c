package dev.memgen.model;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.memgen.model.checkpoint.CheckpointException;
import dev.memgen.model.checkpoint.DType;
import dev.memgen.model.checkpoint.TinyCheckpoint;
import java.io.IOException;
import java.nio.channels.FileChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Every way a checkpoint can be broken gets its own error naming the file (and tensor), raised before anything
 * reaches libtorch; the JVM lives on and a good checkpoint still loads afterwards.
 */
class BadCheckpointTest {
  @TempDir Path tmp;

  Path tiny(String arch, int shards) throws IOException {
    Path dir = tmp.resolve(arch + shards);
    TinyCheckpoint.write(dir, TinyCheckpoint.tiny(arch), DType.F32, shards, 1);
    return dir;
  }

  CheckpointException fails(Path dir) {
    return assertThrows(CheckpointException.class, () -> Decoder.load(dir).close());
  }

  static void assertMentions(CheckpointException e, String... parts) {
    for (String p : parts) {
      assertTrue(e.getMessage().contains(p), "'" + e.getMessage() + "' should mention '" + p + "'");
    }
  }

  @AfterEach
  void goodCheckpointStillLoads() throws IOException {
    try (Decoder d = Decoder.load(tiny("qwen2", 1))) {
      assertEquals(64, d.config().hiddenSize());
    }
  }

  @Test
  void missingDirectory() {
    assertMentions(fails(tmp.resolve("nope")), "nope", "not a checkpoint directory");
  }

  @Test
  void missingConfig() throws IOException {
    Path dir = tiny("qwen2", 1);
    Files.delete(dir.resolve("config.json"));
    assertMentions(fails(dir), "config.json", "missing file");
  }

  @Test
  void unknownArchitecture() throws IOException {
    Path dir = tiny("qwen2", 1);
    replaceInFile(dir.resolve("config.json"), "Qwen2ForCausalLM", "GPT2LMHeadModel");
    CheckpointException e = fails(dir);
    assertMentions(e, "config.json", "unknown architecture 'GPT2LMHeadModel'");
    assertNotNull(e.file());
  }

  @Test
  void inconsistentAttentionShape() throws IOException {
    Path dir = tiny("qwen2", 1);
    replaceInFile(dir.resolve("config.json"), "\"num_key_value_heads\" : 2", "\"num_key_value_heads\" : 3");
    assertMentions(fails(dir), "config.json", "num_key_value_heads=3");
  }

  @Test
  void missingWeightsFile() throws IOException {
    Path dir = tiny("qwen2", 1);
    Files.delete(dir.resolve("model.safetensors"));
    assertMentions(fails(dir), "model.safetensors", "missing file");
  }

  @Test
  void missingShard() throws IOException {
    Path dir = tiny("llama", 3);
    Files.delete(dir.resolve("model-00002-of-00003.safetensors"));
    assertMentions(fails(dir), "model-00002-of-00003.safetensors", "missing file");
  }

  @Test
  void missingTensor() throws IOException {
    Path dir = tiny("llama", 2);
    Path index = dir.resolve("model.safetensors.index.json");
    ObjectNode json = (ObjectNode) new ObjectMapper().readTree(index.toFile());
    ((ObjectNode) json.get("weight_map")).remove("lm_head.weight");
    Files.writeString(index, json.toString());
    assertMentions(fails(dir), "lm_head.weight", "missing tensor");
  }

  @Test
  void indexNamesATensorTheShardLacks() throws IOException {
    Path dir = tiny("llama", 2);
    replaceInFile(dir.resolve("model.safetensors.index.json"), "\"lm_head.weight\"", "\"lm_head.weight.renamed\"");
    assertMentions(fails(dir), "model-00002-of-00002.safetensors", "lm_head.weight.renamed", "not present in the shard");
  }

  @Test
  void shapeMismatch() throws IOException {
    Path dir = tiny("qwen2", 1);
    replaceInFile(dir.resolve("config.json"), "\"intermediate_size\" : 128", "\"intermediate_size\" : 96");
    CheckpointException e = fails(dir);
    assertMentions(e, "model.safetensors", "model.layers.0.mlp.gate_proj.weight", "shape mismatch", "[128, 64]", "[96, 64]");
    assertEquals("model.layers.0.mlp.gate_proj.weight", e.tensor());
  }

  @Test
  void unsupportedDtype() throws IOException {
    Path dir = tiny("qwen2", 1);
    // Same length, so the header stays valid JSON at the same size.
    replaceInFile(dir.resolve("model.safetensors"), "{\"dtype\":\"F32\"", "{\"dtype\":\"I32\"");
    assertMentions(fails(dir), "model.safetensors", "model.embed_tokens.weight", "unsupported dtype 'I32'");
  }

  @Test
  void truncatedFile() throws IOException {
    Path dir = tiny("qwen2", 1);
    Path file = dir.resolve("model.safetensors");
    try (FileChannel ch = FileChannel.open(file, StandardOpenOption.WRITE)) {
      ch.truncate(ch.size() - 10);
    }
    assertMentions(fails(dir), "model.safetensors", "model.norm.weight", "truncated file");
  }

  @Test
  void notASafetensorsFile() throws IOException {
    Path dir = tiny("qwen2", 1);
    Files.write(dir.resolve("model.safetensors"), "this is not a checkpoint at all".getBytes(StandardCharsets.UTF_8));
    assertMentions(fails(dir), "model.safetensors", "not a safetensors file");
  }

  /** Replaces the first occurrence of {@code from} (ISO-8859-1, byte for byte) in a file. */
  static void replaceInFile(Path file, String from, String to) throws IOException {
    String text = new String(Files.readAllBytes(file), StandardCharsets.ISO_8859_1);
    int at = text.indexOf(from);
    assertTrue(at >= 0, file + " should contain " + from);
    Files.write(file, (text.substring(0, at) + to + text.substring(at + from.length())).getBytes(StandardCharsets.ISO_8859_1));
  }
}
