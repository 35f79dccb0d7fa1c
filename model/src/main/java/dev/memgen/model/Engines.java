package dev.memgen.model;

import ai.djl.Device;
import ai.djl.engine.Engine;
import ai.djl.ndarray.NDManager;
import ai.djl.pytorch.jni.JniUtils;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;

/**
 * The one place that starts DJL's PyTorch engine. libtorch comes from the pytorch-native-cpu jar on the
 * classpath; offline mode stops DJL from ever trying to download a different build at run time. Every tensor is made
 * from the manager here, so {@code memgen.device} ({@link #DEVICE_PROPERTY}) moves the whole model; nothing else names
 * a device.
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
  /** Where every tensor lives: {@code cpu} (the default), {@code gpu} (the first) or {@code gpu:N}. */
  public static final String DEVICE_PROPERTY = "memgen.device";
  /** The same setting from the environment (a container's), when the system property is not set. */
  public static final String DEVICE_ENV = "MEMGEN_DEVICE";

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

  /**
   * The device a {@code memgen.device} value names, checked against the GPUs the engine sees: a GPU that is not there
   * is refused naming the setting, before any tensor is made (a CPU-only libtorch sees none; the README's GPU section
   * says which DJL build sees them).
   */
  static Device device(String setting, int gpus) {
    String v = setting.strip();
    if (v.equals("cpu")) {
      return Device.cpu();
    }
    java.util.regex.Matcher m = java.util.regex.Pattern.compile("gpu(?::(\\d{1,3}))?").matcher(v);
    if (!m.matches()) {
      throw new IllegalArgumentException(DEVICE_PROPERTY + " (or " + DEVICE_ENV + ") is '" + setting
          + "': expected cpu, gpu or gpu:N");
    }
    int id = m.group(1) == null ? 0 : Integer.parseInt(m.group(1));
    if (id >= gpus) {
      throw new IllegalArgumentException(DEVICE_PROPERTY + " (or " + DEVICE_ENV + ") is '" + setting + "', but the PyTorch "
          + "engine sees " + (gpus == 0 ? "no GPU (a CPU-only libtorch, or no CUDA driver)" : gpus + " GPU(s)")
          + ": use cpu, or run with DJL's CUDA libtorch on a GPU node (README, GPU)");
    }
    return Device.gpu(id);
  }

  /** A long-lived manager on the PyTorch engine, on the configured device; callers take sub-managers from it. */
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
          NativeAllocator.tuneForTensors();
          String setting = System.getProperty(DEVICE_PROPERTY, System.getenv().getOrDefault(DEVICE_ENV, "cpu"));
          Engine engine = Engine.getEngine("PyTorch");
          root = engine.newBaseManager(device(setting, setting.strip().equals("cpu") ? 0 : engine.getGpuCount()));
        }
        m = root;
      }
    }
    return m;
  }
}
