package dev.memgen.model.train;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDArrays;
import ai.djl.ndarray.NDList;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.Shape;
import dev.memgen.model.Decoder;
import dev.memgen.model.KvCache;
import dev.memgen.model.Weaver;
import dev.memgen.model.text.DelimiterTable;
import java.util.ArrayList;
import java.util.List;

/**
 * Teacher forcing with memory. A batch of examples runs through the frozen reasoner in one forward call, with memory
 * rows spliced in where the generate loop puts them with an always-invoking trigger: prompt rows right after the
 * prompt, inference rows right after each of the first {@code maxInferenceAug} delimiter tokens of the answer. The
 * loss is the cross-entropy of the answer tokens ({@code <|im_end|>} included): prompt tokens and memory rows are
 * not predicted, and the last memory row of a block predicts the token after it.
 *
 * <p>Memory rows come from a {@link MemorySource} that sees, for each slot, the reasoner rows before it (tokens and
 * earlier memory rows), so a weaver's later latents depend on its earlier ones exactly as in generation.
 */
public final class TeacherForcing {
  /** Supplies the rows spliced in at one memory slot of each example of a batch. */
  @FunctionalInterface
  public interface MemorySource {
    /**
     * @param prefixes per example, the reasoner rows before the slot, {@code [n, hidden]}
     * @return per example, the rows to splice in, {@code [k, hidden]} (k may differ between examples, and be 0)
     */
    List<NDArray> rows(Weaver.Kind kind, List<NDArray> prefixes);
  }

  /** Summed negative log-likelihood of the answer tokens of a batch, and how many tokens it sums over. */
  public record Loss(NDArray sum, int tokens) {}

  /**
   * The log-probability of every answer token of a batch, {@code [tokens]}, in example order then answer order, and
   * the example each belongs to.
   */
  public record TokenLogProbs(NDArray values, int[] example) {}

  private final Decoder reasoner;
  private final DelimiterTable delimiters;
  private final int maxInferenceAug;

  public TeacherForcing(Decoder reasoner, DelimiterTable delimiters, int maxInferenceAug) {
    this.reasoner = reasoner;
    this.delimiters = delimiters;
    this.maxInferenceAug = maxInferenceAug;
  }

  /**
   * Answer indices after which inference memory goes: the first {@code maxInferenceAug} delimiters, never the last
   * answer token (nothing is predicted after it).
   */
  public int[] inferenceSlots(int[] answer) {
    List<Integer> slots = new ArrayList<>();
    for (int t = 0; t < answer.length - 1 && slots.size() < maxInferenceAug; t++) {
      if (delimiters.isDelimiter(answer[t])) {
        slots.add(t);
      }
    }
    return slots.stream().mapToInt(Integer::intValue).toArray();
  }

  /** The loss of {@code batch} with memory from {@code memory} (null: no memory rows at all, the plain base). */
  public Loss loss(NDManager m, List<TokenizedExample> batch, MemorySource memory) {
    TokenLogProbs lp = logProbs(m, batch, memory);
    return new Loss(lp.values().sum().neg(), lp.example().length);
  }

  /** Every answer token's log-probability under the reasoner with memory from {@code memory} (null: none). */
  public TokenLogProbs logProbs(NDManager m, List<TokenizedExample> batch, MemorySource memory) {
    int n = batch.size();
    List<List<NDArray>> rows = new ArrayList<>(); // per example, its row blocks in order
    int[][] slots = new int[n][];
    NDArray[] answers = new NDArray[n];
    int maxSlots = 0;
    for (int b = 0; b < n; b++) {
      TokenizedExample e = batch.get(b);
      List<NDArray> r = new ArrayList<>();
      r.add(embed(m, e.prompt()));
      rows.add(r);
      answers[b] = embed(m, e.answer());
      slots[b] = inferenceSlots(e.answer());
      maxSlots = Math.max(maxSlots, slots[b].length);
    }
    // Row index of each answer token's predecessor, and the token: the loss's targets.
    List<long[]> targets = new ArrayList<>();
    int[] length = new int[n];
    for (int b = 0; b < n; b++) {
      length[b] = batch.get(b).prompt().length;
    }
    for (int j = 0; j <= maxSlots; j++) {
      Weaver.Kind kind = j == 0 ? Weaver.Kind.PROMPT : Weaver.Kind.INFERENCE;
      List<Integer> members = new ArrayList<>();
      for (int b = 0; b < n; b++) {
        if (slots[b].length >= j) {
          members.add(b);
        }
      }
      if (memory != null) {
        List<NDArray> prefixes = new ArrayList<>();
        for (int b : members) {
          prefixes.add(concat(rows.get(b)));
        }
        List<NDArray> inserted = memory.rows(kind, prefixes);
        for (int i = 0; i < members.size(); i++) {
          NDArray block = inserted.get(i);
          if (block.getShape().get(0) > 0) {
            rows.get(members.get(i)).add(block);
            length[members.get(i)] += (int) block.getShape().get(0);
          }
        }
      }
      for (int b : members) { // the answer piece up to the next slot (or the end)
        int from = j == 0 ? 0 : slots[b][j - 1] + 1;
        int to = j < slots[b].length ? slots[b][j] + 1 : batch.get(b).answer().length;
        rows.get(b).add(answers[b].get(from + ":" + to));
        for (int t = from; t < to; t++) {
          targets.add(new long[] {b, length[b] - 1, batch.get(b).answer()[t]});
          length[b]++;
        }
      }
    }
    int longest = 0;
    for (int len : length) {
      longest = Math.max(longest, len);
    }
    boolean[][] valid = new boolean[n][longest];
    NDList padded = new NDList(n);
    for (int b = 0; b < n; b++) {
      for (int t = 0; t < length[b]; t++) {
        valid[b][t] = true;
      }
      padded.add(pad(m, concat(rows.get(b)), longest, false));
    }
    NDArray hidden;
    try (KvCache cache = reasoner.newCache(n, longest)) {
      hidden = reasoner.forward(cache, NDArrays.stack(padded, 0), valid);
    }
    targets.sort(java.util.Comparator.comparingLong(t -> t[0])); // example order (stable: answer order within)
    long[] at = new long[targets.size()];
    long[] tokens = new long[targets.size()];
    int[] example = new int[targets.size()];
    for (int i = 0; i < at.length; i++) {
      at[i] = targets.get(i)[0] * longest + targets.get(i)[1];
      tokens[i] = targets.get(i)[2];
      example[i] = (int) targets.get(i)[0];
    }
    NDArray picked = hidden.reshape(n * (long) longest, hidden.getShape().get(2)).get(m.create(at));
    NDArray logProbs = reasoner.logits(picked).logSoftmax(-1);
    NDArray values = logProbs.gather(m.create(tokens, new Shape(tokens.length, 1)), 1).reshape(tokens.length);
    return new TokenLogProbs(values, example);
  }

  private NDArray embed(NDManager m, int[] ids) {
    NDArray e = reasoner.embed(m, new int[][] {ids});
    return e.reshape(ids.length, e.getShape().get(2));
  }

  static NDArray concat(List<NDArray> blocks) {
    return blocks.size() == 1 ? blocks.get(0) : NDArrays.concat(new NDList(blocks), 0);
  }

  /** {@code rows [k, h]} padded with zero rows to {@code length}, on the left or the right. */
  static NDArray pad(NDManager m, NDArray rows, int length, boolean left) {
    long k = rows.getShape().get(0);
    if (k == length) {
      return rows;
    }
    NDArray zeros = m.zeros(new Shape(length - k, rows.getShape().get(1)));
    return left ? zeros.concat(rows, 0) : rows.concat(zeros, 0);
  }

  /** The weaver as a memory source: each slot's prefixes, left-padded into one batch, go through one weave. */
  public static MemorySource weaver(Weaver weaver) {
    return (kind, prefixes) -> {
      NDManager m = prefixes.get(0).getManager();
      int longest = prefixes.stream().mapToInt(p -> (int) p.getShape().get(0)).max().orElseThrow();
      boolean[][] valid = new boolean[prefixes.size()][longest];
      NDList padded = new NDList(prefixes.size());
      for (int b = 0; b < prefixes.size(); b++) {
        int len = (int) prefixes.get(b).getShape().get(0);
        for (int t = longest - len; t < longest; t++) {
          valid[b][t] = true;
        }
        padded.add(pad(m, prefixes.get(b), longest, true));
      }
      NDArray latents = weaver.weave(kind, NDArrays.stack(padded, 0), valid); // [batch, K, h]
      List<NDArray> out = new ArrayList<>(prefixes.size());
      for (int b = 0; b < prefixes.size(); b++) {
        out.add(latents.get(b));
      }
      return out;
    };
  }
}
