package dev.memgen.rpc;

import io.grpc.Status;
import io.grpc.stub.StreamObserver;

/**
 * The answer to a call that arrives before its service has started. Quarkus opens the gRPC port before the
 * {@code @Startup} beans are built, and loading the model, catching up with adapter announcements and warming up take
 * seconds: a call that touched the bean then would wait on the event loop for its construction (seen: 2-7.5 s
 * blocked in Describe). Refusing with UNAVAILABLE instead lets the client back off and retry, as it does for any
 * service that is not there yet.
 */
public final class NotReady {
  private NotReady() {}

  /** Ends a unary call with UNAVAILABLE. */
  public static void refuse(StreamObserver<?> out, String service) {
    out.onError(Status.UNAVAILABLE.withDescription(service + " is starting (loading the model and memory, warming up); "
        + "retry shortly").asRuntimeException());
  }

  /** Ends a streaming call with UNAVAILABLE; the returned observer ignores what the client still sends. */
  public static <T> StreamObserver<T> refuseStream(StreamObserver<?> out, String service) {
    refuse(out, service);
    return new StreamObserver<>() {
      @Override
      public void onNext(T value) {}

      @Override
      public void onError(Throwable t) {}

      @Override
      public void onCompleted() {}
    };
  }
}
