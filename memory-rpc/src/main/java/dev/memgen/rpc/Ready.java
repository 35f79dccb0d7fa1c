package dev.memgen.rpc;

/**
 * A service once its model bean has built it; null before. Each service declares a {@code @Singleton} subclass (no
 * client proxy, nothing to construct), so its gRPC endpoint can ask on the event loop without waiting for the model
 * bean, and answer {@link NotReady} until it is set.
 */
public abstract class Ready<T> {
  private volatile T service;

  public void set(T service) {
    this.service = service;
  }

  /** The service, or null while it is starting. */
  public T get() {
    return service;
  }
}
