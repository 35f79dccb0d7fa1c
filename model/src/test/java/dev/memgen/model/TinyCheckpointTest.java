package dev.memgen.model;

import static dev.memgen.model.GoldenForwardTest.assertClose;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import com.fasterxml.jackson.databind.JsonNode;
import dev.memgen.model.checkpoint.DType;
import dev.memgen.model.checkpoint.TinyCheckpoint;
import java.io.IOException;
import java.nio.file.Path;
import java.util.List;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

/** Checkpoints written by {@code make-tiny} are real Hugging Face checkpoints: the numpy reference reads them too. */
class TinyCheckpointTest {
  @TempDir Path tmp;

  @ParameterizedTest(name = "{0} {1} shards={2}")
  @CsvSource({"qwen2, F32, 1", "qwen2, BF16, 3", "llama, BF16, 1", "llama, F32, 2"})
  void referenceReadsWhatWeWrite(String arch, DType dtype, int shards) throws IOException {
    Path dir = tmp.resolve("m");
    TinyCheckpoint.write(dir, TinyCheckpoint.tiny(arch), dtype, shards, 9);
    List<Integer> ids = List.of(257, 117, 115, 101, 114, 10, 72, 105, 258, 10);
    JsonNode golden = Reference.forward(dir, ids, false);
    try (Decoder d = Decoder.load(dir); NDManager m = d.manager().newSubManager(); KvCache cache = d.newCache(1, 16)) {
      int[] row = ids.stream().mapToInt(Integer::intValue).toArray();
      NDArray last = d.forward(cache, d.embed(m, new int[][] {row}), GoldenForwardTest.allValid(1, row.length)).get("0, -1");
      assertClose("hidden", last.toFloatArray(), Reference.floats(golden.get("hidden")));
      assertClose("logits", d.logits(last).toFloatArray(), Reference.floats(golden.get("logits")));
    }
  }
}
