package dev.memgen.cli;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.index.NDIndex;
import ai.djl.ndarray.types.Shape;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.concurrent.Future;
import dev.memgen.model.Engines;

/** Facts about the machine a benchmark ran on, and its measured memory read bandwidth. */
final class Machine {
  private Machine() {}

  static String cpuModel() {
    try {
      return Files.readAllLines(Path.of("/proc/cpuinfo")).stream().filter(l -> l.startsWith("model name"))
          .map(l -> l.substring(l.indexOf(':') + 1).trim()).findFirst().orElse("unknown");
    } catch (IOException e) {
      return "unknown";
    }
  }

  static ObjectNode describe() {
    ObjectNode m = Json.object();
    m.put("cpu", cpuModel());
    m.put("cores", Runtime.getRuntime().availableProcessors());
    m.put("java", System.getProperty("java.version"));
    return m;
  }

  /**
   * Read bandwidth in bytes/s with every core reading, as decode reads weights: a 1 GiB f32 tensor of random
   * values (larger than any cache) is split into one block per matmul thread, each thread sums its block, and the
   * median wall time of {@code runs} passes counts.
   */
  static double readBandwidth(NDManager parent, int runs) {
    try (NDManager m = parent.newSubManager()) {
      long elements = (1L << 30) / 4;
      NDArray big = m.randomNormal(new Shape(elements));
      int threads = Engines.THREADS;
      NDArray[] blocks = new NDArray[threads];
      for (int i = 0; i < threads; i++) {
        blocks[i] = big.get(new NDIndex("{}:{}", elements * i / threads, elements * (i + 1) / threads));
      }
      double[] seconds = new double[runs + 1];
      for (int r = 0; r <= runs; r++) { // the first pass only warms up
        long t0 = System.nanoTime();
        List<Future<Float>> sums = new ArrayList<>();
        for (int i = 1; i < threads; i++) {
          NDArray block = blocks[i];
          sums.add(Engines.WORKERS.submit(() -> block.sum().getFloat()));
        }
        blocks[0].sum().getFloat();
        for (Future<Float> f : sums) {
          try {
            f.get();
          } catch (Exception e) {
            throw new IllegalStateException(e);
          }
        }
        seconds[r] = (System.nanoTime() - t0) / 1e9;
      }
      return elements * 4 / Stats.median(Arrays.copyOfRange(seconds, 1, runs + 1));
    }
  }
}
