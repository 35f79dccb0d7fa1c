package dev.memgen.model.train;

import java.util.ArrayList;
import java.util.List;
import java.util.Random;

/**
 * Examples in seeded, shuffled epochs, addressed by batch index: batch i is the same whether training ran straight
 * through or was interrupted and resumed, so a resumed run sees exactly the data an uninterrupted one does.
 */
public final class Batches<T> {
  private final List<T> examples;
  private final int batchSize;
  private final long seed;
  private long cachedEpoch = -1;
  private int[] order;

  public Batches(List<T> examples, int batchSize, long seed) {
    if (examples.isEmpty() || batchSize < 1) {
      throw new IllegalArgumentException("need examples and a batch size >= 1");
    }
    this.examples = List.copyOf(examples);
    this.batchSize = batchSize;
    this.seed = seed;
  }

  /** Batch {@code index}: the next {@code batchSize} examples of the shuffled stream (epochs run on seamlessly). */
  public List<T> get(long index) {
    List<T> batch = new ArrayList<>(batchSize);
    for (long i = index * batchSize; i < (index + 1) * batchSize; i++) {
      long epoch = i / examples.size();
      batch.add(examples.get(order(epoch)[(int) (i % examples.size())]));
    }
    return batch;
  }

  private int[] order(long epoch) {
    if (epoch != cachedEpoch) {
      order = new int[examples.size()];
      for (int i = 0; i < order.length; i++) {
        order[i] = i;
      }
      Random r = new Random(seed * 1_000_003L + epoch); // Fisher-Yates with a per-epoch seed
      for (int i = order.length - 1; i > 0; i--) {
        int j = r.nextInt(i + 1);
        int t = order[i];
        order[i] = order[j];
        order[j] = t;
      }
      cachedEpoch = epoch;
    }
    return order;
  }
}
