package dev.memgen.rpc;

import io.grpc.Status;
import java.util.HashSet;
import java.util.Set;

/** The open sessions of one service, bounded: a session past the bound is refused with RESOURCE_EXHAUSTED. */
final class SessionRegistry {
  private final int maxSessions;
  private final Set<Object> open = new HashSet<>();

  SessionRegistry(int maxSessions) {
    this.maxSessions = maxSessions;
  }

  synchronized void acquire(Object session) {
    if (open.size() >= maxSessions) {
      throw new SessionCall.Refusal(Status.Code.RESOURCE_EXHAUSTED,
          "too many open sessions (" + open.size() + ", the server's limit is " + maxSessions + ")");
    }
    open.add(session);
  }

  synchronized void release(Object session) {
    open.remove(session);
  }

  synchronized int size() {
    return open.size();
  }
}
