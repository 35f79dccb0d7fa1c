package dev.memgen.rpc;

import dev.memgen.model.Weaver;
import dev.memgen.model.memory.WeaverLink;
import dev.memgen.proto.Tensors;
import dev.memgen.proto.v1.LatentSpan;
import dev.memgen.proto.v1.Latents;
import dev.memgen.proto.v1.RowSource;
import dev.memgen.proto.v1.SessionAppend;
import dev.memgen.proto.v1.SessionClose;
import dev.memgen.proto.v1.SessionOpen;
import dev.memgen.proto.v1.SessionOpened;
import dev.memgen.proto.v1.TokenSpan;
import dev.memgen.proto.v1.Weave;
import dev.memgen.proto.v1.WeaverGrpc;
import dev.memgen.proto.v1.WeaverReply;
import dev.memgen.proto.v1.WeaverRequest;
import io.grpc.Channel;
import java.time.Duration;

/**
 * A weaver-service reached over gRPC, as a {@link WeaverLink}: the generate loop cannot tell it from the
 * in-process weaver, and for the same memory it gets the same latents. Token rows are not sent (the service
 * embeds the ids with its own copy of the base); latents the service wove are appended by reference to the Weave
 * that made them. Every call waits at most {@code deadline}; after a failure the link fails fast until its backoff
 * allows a new stream, which replays the session's sequence.
 */
public final class RemoteWeaver implements WeaverLink {
  private final Channel channel;
  private final WeaverGrpc.WeaverStub stub;
  private final String baseFingerprint;
  private final int hiddenSize;
  private final String adapterName;
  private final Duration deadline;
  private final Backoff backoff = new Backoff(Duration.ofMillis(200), Duration.ofSeconds(5));

  /**
   * @param baseFingerprint the reasoner's base (the service refuses sessions from another base)
   * @param hiddenSize the reasoner's hidden size (the width of the latents)
   * @param adapterName the memory to use, "" for the service's default
   */
  public RemoteWeaver(Channel channel, String baseFingerprint, int hiddenSize, String adapterName, Duration deadline) {
    this.channel = channel;
    this.stub = WeaverGrpc.newStub(channel);
    this.baseFingerprint = baseFingerprint;
    this.hiddenSize = hiddenSize;
    this.adapterName = adapterName;
    this.deadline = deadline;
  }

  @Override
  public Session open(String sessionId) {
    return new Session(sessionId);
  }

  public final class Session extends RemoteSession<WeaverRequest, WeaverReply> implements WeaverLink.Session {
    private SessionOpened opened;
    private Item woven; // the latest weave, not yet accepted

    Session(String sessionId) {
      super(channel, stub::session, WeaverReply::getSeq, deadline, backoff, "weaver", sessionId);
    }

    @Override
    public int k(Weaver.Kind kind) {
      if (opened == null) {
        throw new IllegalStateException("the weaver session has not been opened yet");
      }
      return kind == Weaver.Kind.PROMPT ? opened.getPromptK() : opened.getInferenceK();
    }

    @Override
    public long adapterVersion() {
      if (opened == null) {
        throw new IllegalStateException("the weaver session has not been opened yet");
      }
      return opened.getAdapterVersion();
    }

    @Override
    public void appendTokens(int[] ids) {
      if (ids.length > 0) {
        add(new Item(ids.clone(), null, 0, null, 0, null));
      }
    }

    @Override
    public float[] weave(Weaver.Kind kind) {
      woven = null;
      return withStream(s -> {
        int position = length;
        WeaverReply reply = s.call(seq -> WeaverRequest.newBuilder().setSeq(seq)
            .setWeave(Weave.newBuilder().setKind(Protocol.wire(kind)).setPosition(position)).build());
        if (!reply.hasLatents()) {
          throw new IllegalArgumentException("expected latents, got " + reply.getBodyCase());
        }
        Latents l = reply.getLatents();
        int k = k(kind);
        float[] rows = Tensors.toF32(l.getRows(), "latents.rows", k, hiddenSize);
        woven = new Item(null, kind, k, rows, reply.getSeq(), s);
        return rows;
      });
    }

    @Override
    public void acceptLatents() {
      if (woven == null) {
        throw new IllegalStateException("no weave to accept");
      }
      add(woven);
      woven = null;
    }

    @Override
    WeaverRequest openRequest(long seq) {
      return WeaverRequest.newBuilder().setSeq(seq).setOpen(SessionOpen.newBuilder()
          .setSessionId(sessionId)
          .setBaseFingerprint(baseFingerprint)
          .setAdapterName(adapterName)
          .setHiddenSize(hiddenSize)
          .setRowSource(RowSource.INPUT_EMBEDDINGS)).build();
    }

    @Override
    void opened(WeaverReply reply) {
      if (!reply.hasOpened() || reply.getOpened().getPromptK() < 1 || reply.getOpened().getInferenceK() < 1) {
        throw new IllegalArgumentException("expected SessionOpened with K >= 1, got " + reply);
      }
      if (opened != null && (opened.getPromptK() != reply.getOpened().getPromptK()
          || opened.getInferenceK() != reply.getOpened().getInferenceK())) {
        throw new IllegalArgumentException("the weaver's K changed on reconnect: " + opened + " then " + reply.getOpened());
      }
      opened = reply.getOpened();
    }

    @Override
    WeaverRequest appendRequest(long seq, int position, Item item, boolean sameStream) {
      SessionAppend.Builder a = SessionAppend.newBuilder().setPosition(position);
      if (item.tokens() != null) {
        TokenSpan.Builder t = TokenSpan.newBuilder();
        for (int id : item.tokens()) {
          t.addTokenIds(id);
        }
        a.setTokens(t);
      } else {
        LatentSpan.Builder l = LatentSpan.newBuilder().setKind(Protocol.wire(item.kind())).setK(item.k());
        if (sameStream) {
          l.setWeaveSeq(item.weaveSeq()); // the service still holds these rows
        } else {
          l.setRows(Tensors.f32(item.rows(), item.k(), hiddenSize)); // replayed on a new stream
        }
        a.setLatents(l);
      }
      return WeaverRequest.newBuilder().setSeq(seq).setAppend(a).build();
    }

    @Override
    WeaverRequest closeRequest(long seq) {
      return WeaverRequest.newBuilder().setSeq(seq).setClose(SessionClose.getDefaultInstance()).build();
    }
  }
}
