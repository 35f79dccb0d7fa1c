package dev.memgen.cli;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.memgen.model.Decoder;
import dev.memgen.model.KvCache;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

/** One forward pass; prints the last position's logits and final-norm hidden state. Needs no tokenizer. */
@Command(name = "forward", mixinStandardHelpOptions = true,
    description = "Run token ids through the model; print {\"logits\", \"hidden\"} of the last position as one JSON line.")
final class ForwardCommand implements Callable<Integer> {
  @Option(names = "--model", required = true, description = "Hugging Face checkpoint directory") Path model;

  @Option(names = "--ids", required = true, description = "comma-separated token ids, e.g. 3,5,7") String ids;

  @Override
  public Integer call() {
    int[] tokens = Ids.parse(ids);
    if (tokens.length == 0) {
      throw new IllegalArgumentException("--ids is empty");
    }
    try (Decoder decoder = Decoder.load(model);
        NDManager m = decoder.manager().newSubManager();
        KvCache cache = decoder.newCache(1, tokens.length)) {
      boolean[][] valid = new boolean[1][tokens.length];
      Arrays.fill(valid[0], true);
      NDArray last = decoder.forward(cache, decoder.embed(m, new int[][] {tokens}), valid).get("0, -1");
      ObjectNode out = Json.object();
      ArrayNode logits = out.putArray("logits");
      for (float v : decoder.logits(last).toFloatArray()) {
        logits.add(v);
      }
      ArrayNode hidden = out.putArray("hidden");
      for (float v : last.toFloatArray()) {
        hidden.add(v);
      }
      System.out.println(Json.line(out));
    }
    return 0;
  }
}
