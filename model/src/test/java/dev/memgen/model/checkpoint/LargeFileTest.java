package dev.memgen.model.checkpoint;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ai.djl.ndarray.NDManager;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.memgen.model.Decoder;
import dev.memgen.model.Engines;
import dev.memgen.model.ModelConfig;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.Map;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Files and tensors larger than one Java buffer (2 GiB) load: tensors are memory-mapped at any file offset, and
 * a tensor too big for one native buffer loads in row blocks that are concatenated.
 */
class LargeFileTest {
  @TempDir Path tmp;

  @Test
  void tensorsPastTheTwoGibMarkLoadExactly() throws IOException {
    Path small = tmp.resolve("small");
    TinyCheckpoint.write(small, TinyCheckpoint.tiny("qwen2"), DType.F32, 1, 3);
    Path big = tmp.resolve("big");
    Files.createDirectories(big);
    Files.copy(small.resolve("config.json"), big.resolve("config.json"));
    long padding = (1L << 31) + (1L << 20); // 2 GiB + 1 MiB of zeros ahead of the real tensors (sparse: no disk used)
    writeWithLeadingPadding(SafeTensorsFile.open(small.resolve("model.safetensors")), big.resolve("model.safetensors"), padding);
    assertTrue(Files.size(big.resolve("model.safetensors")) > (1L << 31));

    int[][] ids = {{5, 9, 200, 17}};
    boolean[][] valid = {{true, true, true, true}};
    float[] expected;
    float[] actual;
    try (Decoder d = Decoder.load(small); NDManager m = d.manager().newSubManager(); var cache = d.newCache(1, 4)) {
      expected = d.forward(cache, d.embed(m, ids), valid).toFloatArray();
    }
    try (Decoder d = Decoder.load(big); NDManager m = d.manager().newSubManager(); var cache = d.newCache(1, 4)) {
      actual = d.forward(cache, d.embed(m, ids), valid).toFloatArray();
    }
    assertArrayEquals(expected, actual);
  }

  @Test
  void blockwiseLoadingEqualsOneBlock() throws IOException {
    Path dir = tmp.resolve("bf16");
    TinyCheckpoint.write(dir, TinyCheckpoint.tiny("llama"), DType.BF16, 1, 4);
    Checkpoint ckpt = Checkpoint.open(dir);
    ModelConfig c = ckpt.config();
    try (NDManager m = Engines.manager().newSubManager()) {
      float[] whole = ckpt.loadInBlocks(m, "model.embed_tokens.weight", Long.MAX_VALUE, c.vocabSize(), c.hiddenSize()).toFloatArray();
      float[] blocks = ckpt.loadInBlocks(m, "model.embed_tokens.weight", 1000, c.vocabSize(), c.hiddenSize()).toFloatArray();
      assertArrayEquals(whole, blocks);
    }
  }

  /** Re-writes a safetensors file with a zero tensor of {@code padding} bytes before all the others. */
  static void writeWithLeadingPadding(SafeTensorsFile source, Path out, long padding) throws IOException {
    ObjectMapper json = new ObjectMapper();
    ObjectNode header = json.createObjectNode();
    header.putObject("padding").put("dtype", "F32").putArray("shape").add(padding / 4);
    ((ObjectNode) header.get("padding")).putArray("data_offsets").add(0).add(padding);
    long offset = padding;
    for (Map.Entry<String, SafeTensorsFile.Entry> e : source.entries().entrySet()) {
      SafeTensorsFile.Entry t = e.getValue();
      ObjectNode n = header.putObject(e.getKey());
      n.put("dtype", t.dtype().name());
      var shape = n.putArray("shape");
      for (long d : t.shape()) {
        shape.add(d);
      }
      n.putArray("data_offsets").add(offset).add(offset + (t.end() - t.begin()));
      offset += t.end() - t.begin();
    }
    byte[] text = json.writeValueAsBytes(header);
    int padded = (text.length + 7) / 8 * 8;
    try (FileChannel ch = FileChannel.open(out, StandardOpenOption.CREATE_NEW, StandardOpenOption.WRITE)) {
      ByteBuffer head = ByteBuffer.allocate(8 + padded).order(ByteOrder.LITTLE_ENDIAN);
      head.putLong(padded).put(text);
      while (head.hasRemaining()) {
        head.put((byte) ' ');
      }
      ch.write(head.flip());
      long pos = 8 + padded + padding;
      for (SafeTensorsFile.Entry t : source.entries().values()) {
        ByteBuffer data = source.map(t, 0, t.end() - t.begin());
        while (data.hasRemaining()) {
          pos += ch.write(data, pos);
        }
      }
    }
  }
}
