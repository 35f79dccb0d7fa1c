package dev.memgen.rpc;

import dev.memgen.model.memory.TriggerLink;
import dev.memgen.proto.v1.Decide;
import dev.memgen.proto.v1.LatentSpan;
import dev.memgen.proto.v1.RowSource;
import dev.memgen.proto.v1.SessionAppend;
import dev.memgen.proto.v1.SessionClose;
import dev.memgen.proto.v1.SessionOpen;
import dev.memgen.proto.v1.TokenSpan;
import dev.memgen.proto.v1.TriggerGrpc;
import dev.memgen.proto.v1.TriggerReply;
import dev.memgen.proto.v1.TriggerRequest;
import io.grpc.Channel;
import java.time.Duration;

/**
 * A trigger-service reached over gRPC, as a {@link TriggerLink}: token ids and latent counts go out lazily, a
 * Decide at each consultation comes back with P(invoke). Deadlines, fail-fast and reconnect as in
 * {@link RemoteWeaver}.
 */
public final class RemoteTrigger implements TriggerLink {
  private final Channel channel;
  private final TriggerGrpc.TriggerStub stub;
  private final String baseFingerprint;
  private final String adapterName;
  private final CallDeadline deadline;
  private final Backoff backoff = new Backoff(Duration.ofMillis(200), Duration.ofSeconds(5));

  public RemoteTrigger(Channel channel, String baseFingerprint, String adapterName, CallDeadline deadline) {
    this.channel = channel;
    this.stub = TriggerGrpc.newStub(channel);
    this.baseFingerprint = baseFingerprint;
    this.adapterName = adapterName;
    this.deadline = deadline;
  }

  @Override
  public Session open(String sessionId) {
    return new Session(sessionId);
  }

  public final class Session extends RemoteSession<TriggerRequest, TriggerReply> implements TriggerLink.Session {
    private volatile long version; // the trigger-service's, from SessionOpened

    Session(String sessionId) {
      super(channel, stub::session, TriggerReply::getSeq, deadline, backoff, "trigger", sessionId);
    }

    @Override
    public void appendTokens(int[] ids) {
      if (ids.length > 0) {
        add(new Item(ids.clone(), null, 0, null, 0, null));
      }
    }

    @Override
    public void appendLatents(int k) {
      add(new Item(null, null, k, null, 0, null));
    }

    @Override
    public float probability() {
      return withStream(0, (s, wait) -> {
        int position = length - 1;
        TriggerReply reply = s.call(seq -> TriggerRequest.newBuilder().setSeq(seq)
            .setDecide(Decide.newBuilder().setPosition(position)).build(), wait);
        float p = reply.getDecision().getProbability();
        if (!reply.hasDecision() || !(p >= 0 && p <= 1)) {
          throw new IllegalArgumentException("expected a Decision with a probability in [0, 1], got " + reply);
        }
        return p;
      });
    }

    @Override
    public long adapterVersion() {
      return version;
    }

    @Override
    TriggerRequest openRequest(long seq) {
      return TriggerRequest.newBuilder().setSeq(seq).setOpen(SessionOpen.newBuilder()
          .setSessionId(sessionId)
          .setBaseFingerprint(baseFingerprint)
          .setAdapterName(adapterName)
          .setRowSource(RowSource.NO_ROWS)).build();
    }

    @Override
    void opened(TriggerReply reply) {
      if (!reply.hasOpened()) {
        throw new IllegalArgumentException("expected SessionOpened, got " + reply);
      }
      version = reply.getOpened().getAdapterVersion();
    }

    @Override
    TriggerRequest appendRequest(long seq, int position, Item item, boolean sameStream) {
      SessionAppend.Builder a = SessionAppend.newBuilder().setPosition(position);
      if (item.tokens() != null) {
        TokenSpan.Builder t = TokenSpan.newBuilder();
        for (int id : item.tokens()) {
          t.addTokenIds(id);
        }
        a.setTokens(t);
      } else {
        a.setLatents(LatentSpan.newBuilder().setK(item.k()));
      }
      return TriggerRequest.newBuilder().setSeq(seq).setAppend(a).build();
    }

    @Override
    TriggerRequest closeRequest(long seq) {
      return TriggerRequest.newBuilder().setSeq(seq).setClose(SessionClose.getDefaultInstance()).build();
    }
  }
}
