package dev.memgen.model;

import ai.djl.Device;
import ai.djl.engine.Engine;
import ai.djl.ndarray.NDManager;

/**
 * The one place that starts DJL's PyTorch engine. libtorch comes from the pytorch-native-cpu jar on the
 * classpath; offline mode stops DJL from ever trying to download a different build at run time.
 */
public final class Engines {
  private static volatile NDManager root;

  private Engines() {}

  /** A long-lived CPU manager on the PyTorch engine; callers take sub-managers from it. */
  public static NDManager manager() {
    NDManager m = root;
    if (m == null) {
      synchronized (Engines.class) {
        if (root == null) {
          if (System.getProperty("ai.djl.offline") == null) {
            System.setProperty("ai.djl.offline", "true");
          }
          root = Engine.getEngine("PyTorch").newBaseManager(Device.cpu());
        }
        m = root;
      }
    }
    return m;
  }
}
