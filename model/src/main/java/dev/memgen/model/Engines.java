package dev.memgen.model;

import ai.djl.Device;
import ai.djl.engine.Engine;
import ai.djl.ndarray.NDManager;
import ai.djl.pytorch.jni.JniUtils;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;

/**
 * The one place that starts DJL's PyTorch engine. libtorch comes from the pytorch-native-cpu jar on the
 * classpath; offline mode stops DJL from ever trying to download a different build at run time.
 *
 * <p>libtorch's intra-op parallelism is set to one thread (unless {@code ai.djl.pytorch.num_threads} says
 * otherwise): {@link Linear} splits the large matrix products over {@link #WORKERS} itself, because libtorch
 * leaves a decode step's matrix-vector products on one core, and its spinning OpenMP workers would compete with
 * ours for the others.
 */
public final class Engines {
  /** Threads for the large matrix products: one per core, at most 8. */
  public static final int THREADS = Math.max(1, Math.min(8, Runtime.getRuntime().availableProcessors()));
  /** Daemon workers (THREADS - 1: the calling thread computes a share too). */
  public static final ExecutorService WORKERS = Executors.newFixedThreadPool(Math.max(1, THREADS - 1), r -> {
    Thread t = new Thread(r, "memgen-matmul");
    t.setDaemon(true);
    return t;
  });

  private static volatile NDManager root;

  private Engines() {}

  /**
   * Sets libtorch's intra-op threads: every core for compute-bound work (training: batched products and their
   * gradients), one for decoding (whose matrix-vector products {@link Linear} splits itself, and where idle OpenMP
   * workers would spin on the cores its blocks need). It takes effect on the calling thread and on threads whose first
   * libtorch operation comes later; threads that have run one keep theirs (libtorch's OpenMP and MKL settings are
   * per thread once a thread has started), so a training thread and a decoding thread in one process each set their
   * own. Returns the previous count of the calling thread.
   */
  public static int computeThreads(int n) {
    if (n < 1) {
      throw new IllegalArgumentException("libtorch needs at least one thread, got " + n);
    }
    manager(); // the engine reads ai.djl.pytorch.num_threads when it starts: start it first
    int previous = JniUtils.getNumThreads();
    JniUtils.setNumThreads(n);
    return previous;
  }

  /** A long-lived CPU manager on the PyTorch engine; callers take sub-managers from it. */
  public static NDManager manager() {
    NDManager m = root;
    if (m == null) {
      synchronized (Engines.class) {
        if (root == null) {
          if (System.getProperty("ai.djl.offline") == null) {
            System.setProperty("ai.djl.offline", "true");
          }
          if (System.getProperty("ai.djl.pytorch.num_threads") == null) {
            System.setProperty("ai.djl.pytorch.num_threads", "1");
          }
          root = Engine.getEngine("PyTorch").newBaseManager(Device.cpu());
        }
        m = root;
      }
    }
    return m;
  }
}
