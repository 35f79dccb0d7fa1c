package dev.memgen.weaver;

import dev.memgen.rpc.WeaverService;
import jakarta.inject.Singleton;

/**
 * The weaver service once {@link WeaverModel} has built it; null before. A {@link Singleton} (no client proxy, nothing
 * to construct), so the endpoint can ask it on the event loop without waiting for the model bean.
 */
@Singleton
public class WeaverReady {
  private volatile WeaverService service;

  void set(WeaverService service) {
    this.service = service;
  }

  WeaverService get() {
    return service;
  }
}
