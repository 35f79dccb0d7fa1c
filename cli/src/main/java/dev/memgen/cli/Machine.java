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
   * Read bandwidth with every core reading, as decode reads weights: a 1 GiB f32 tensor of random values (larger
   * than any cache) split into one block per matmul thread; each thread sums its block; a measurement is the median
   * wall time of several passes.
   */
  static final class BandwidthProbe implements AutoCloseable {
    private static final long ELEMENTS = (1L << 30) / 4;
    private final NDManager manager;
    private final NDArray[] blocks;

    BandwidthProbe(NDManager parent) {
      manager = parent.newSubManager();
      NDArray big = manager.randomNormal(new Shape(ELEMENTS));
      int threads = Engines.THREADS;
      blocks = new NDArray[threads];
      for (int i = 0; i < threads; i++) {
        blocks[i] = big.get(new NDIndex("{}:{}", ELEMENTS * i / threads, ELEMENTS * (i + 1) / threads));
      }
      pass(); // first touch
    }

    /** Bytes per second, the median of {@code passes} passes. */
    double measure(int passes) {
      double[] seconds = new double[passes];
      for (int r = 0; r < passes; r++) {
        seconds[r] = pass();
      }
      return ELEMENTS * 4 / Stats.median(seconds);
    }

    private double pass() {
      long t0 = System.nanoTime();
      List<Future<Float>> sums = new ArrayList<>();
      for (int i = 1; i < blocks.length; i++) {
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
      return (System.nanoTime() - t0) / 1e9;
    }

    @Override
    public void close() {
      manager.close();
    }
  }
}
