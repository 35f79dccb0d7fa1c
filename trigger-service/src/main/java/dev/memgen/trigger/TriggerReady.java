package dev.memgen.trigger;

import dev.memgen.rpc.TriggerService;
import jakarta.inject.Singleton;

/**
 * The trigger service once {@link TriggerModel} has built it; null before. A {@link Singleton} (no client proxy,
 * nothing to construct), so the endpoint can ask it on the event loop without waiting for the model bean.
 */
@Singleton
public class TriggerReady {
  private volatile TriggerService service;

  void set(TriggerService service) {
    this.service = service;
  }

  TriggerService get() {
    return service;
  }
}
