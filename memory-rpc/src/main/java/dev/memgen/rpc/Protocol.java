package dev.memgen.rpc;

import dev.memgen.model.Weaver;
import dev.memgen.proto.v1.LatentKind;
import dev.memgen.proto.v1.SessionOpen;
import dev.memgen.proto.v1.TokenSpan;
import io.grpc.Status;

/** Checks and conversions both memory services apply the same way. */
final class Protocol {
  private Protocol() {}

  /** The part of SessionOpen every service checks: a session id, the same base, a known adapter. */
  static void check(SessionOpen o, String baseFingerprint, String adapterName, String service) {
    checkBase(o, baseFingerprint, service);
    if (!o.getAdapterName().isEmpty() && !o.getAdapterName().equals(adapterName)) {
      throw new SessionCall.Refusal(Status.Code.NOT_FOUND,
          "open.adapter_name '" + o.getAdapterName() + "' is unknown to this " + service + " (it serves '" + adapterName + "')");
    }
  }

  /** A session id and the same base (a service that serves several adapters resolves the name itself). */
  static void checkBase(SessionOpen o, String baseFingerprint, String service) {
    if (o.getSessionId().isEmpty()) {
      throw SessionCall.invalid("open.session_id is empty");
    }
    if (!o.getBaseFingerprint().equals(baseFingerprint)) {
      throw SessionCall.precondition("open.base_fingerprint '" + o.getBaseFingerprint() + "' is not this " + service
          + "'s base model ('" + baseFingerprint + "'): its memory was trained for another base");
    }
  }

  /** The span's token ids, each checked against the vocabulary. */
  static int[] tokenIds(TokenSpan t, int vocabSize) {
    int[] ids = new int[t.getTokenIdsCount()];
    for (int i = 0; i < ids.length; i++) {
      ids[i] = t.getTokenIds(i);
      if (ids[i] < 0 || ids[i] >= vocabSize) {
        throw SessionCall.invalid("append.tokens.token_ids[" + i + "] = " + ids[i] + " is outside the vocabulary [0, "
            + vocabSize + ")");
      }
    }
    return ids;
  }

  static LatentKind wire(Weaver.Kind kind) {
    return kind == Weaver.Kind.PROMPT ? LatentKind.PROMPT : LatentKind.INFERENCE;
  }
}
