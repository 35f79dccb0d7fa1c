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
 * in-process weaver, and for the same memory it gets the same latents. With input embeddings, token rows are not
 * sent (the service embeds the ids with its own copy of the base) and latents the service wove are appended by
 * reference to the Weave that made them; a weaver that reads hidden states gets the reasoner's with both. Every call waits at most {@code deadline}; after a failure the link fails fast until its backoff
 * allows a new stream, which replays the session's sequence.
 */
public final class RemoteWeaver implements WeaverLink {
  private final Channel channel;
  private final WeaverGrpc.WeaverStub stub;
  private final String baseFingerprint;
  private final int hiddenSize;
  private final String adapterName;
  private final CallDeadline deadline;
  private final Backoff backoff = new Backoff(Duration.ofMillis(200), Duration.ofSeconds(5));

  /**
   * @param baseFingerprint the reasoner's base (the service refuses sessions from another base)
   * @param hiddenSize the reasoner's hidden size (the width of the latents)
   * @param adapterName the memory to use, "" for the service's default
   */
  public RemoteWeaver(Channel channel, String baseFingerprint, int hiddenSize, String adapterName, CallDeadline deadline) {
    this.channel = channel;
    this.stub = WeaverGrpc.newStub(channel);
    this.baseFingerprint = baseFingerprint;
    this.hiddenSize = hiddenSize;
    this.adapterName = adapterName;
    this.deadline = deadline;
  }

  @Override
  public Session open(String sessionId) {
    return new Session(sessionId, false);
  }

  /** A session with a weaver that reads the reasoner's hidden states ({@code readsHidden}) or its input embeddings. */
  public Session open(String sessionId, boolean readsHidden) {
    return new Session(sessionId, readsHidden);
  }

  public final class Session extends RemoteSession<WeaverRequest, WeaverReply> implements WeaverLink.Session {
    private final boolean readsHidden;
    private SessionOpened opened;
    private Item woven; // the latest weave, not yet accepted

    Session(String sessionId, boolean readsHidden) {
      super(channel, stub::session, WeaverReply::getSeq, deadline, backoff, "weaver", sessionId);
      this.readsHidden = readsHidden;
    }

    @Override
    public boolean readsHiddenStates() {
      return readsHidden;
    }

    @Override
    public void appendTokens(int[] ids, float[] hiddenStates) {
      if (!readsHidden || hiddenStates.length != ids.length * hiddenSize) {
        throw new IllegalArgumentException("hidden states for " + ids.length + " tokens: need " + ids.length * hiddenSize
            + " values and a weaver that reads them, got " + hiddenStates.length);
      }
      if (ids.length > 0) {
        add(new Item(ids.clone(), null, 0, hiddenStates, 0, null));
      }
    }

    @Override
    public void acceptLatents(float[] hiddenStates) {
      if (woven == null || !readsHidden || hiddenStates.length != woven.k() * hiddenSize) {
        throw new IllegalStateException("no weave to accept with " + hiddenStates.length + " hidden-state values");
      }
      add(new Item(null, woven.kind(), woven.k(), hiddenStates, 0, null)); // the rows travel: no weave_seq
      woven = null;
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
      if (readsHidden) {
        throw new IllegalStateException("this weaver reads the reasoner's hidden states: append them with the tokens");
      }
      if (ids.length > 0) {
        add(new Item(ids.clone(), null, 0, null, 0, null));
      }
    }

    @Override
    public float[] weave(Weaver.Kind kind) {
      woven = null;
      int queries = opened == null ? 16 : k(kind);
      return withStream(queries, (s, wait) -> {
        int position = length;
        WeaverReply reply = s.call(seq -> WeaverRequest.newBuilder().setSeq(seq)
            .setWeave(Weave.newBuilder().setKind(Protocol.wire(kind)).setPosition(position)).build(), wait);
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
      if (readsHidden) {
        throw new IllegalStateException("this weaver reads the reasoner's hidden states: accept latents with theirs");
      }
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
          .setRowSource(readsHidden ? RowSource.LAST_HIDDEN_STATES : RowSource.INPUT_EMBEDDINGS)).build();
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
        if (item.rows() != null) { // hidden states
          t.setRows(Tensors.f32(item.rows(), item.tokens().length, hiddenSize));
        }
        a.setTokens(t);
      } else {
        LatentSpan.Builder l = LatentSpan.newBuilder().setKind(Protocol.wire(item.kind())).setK(item.k());
        if (sameStream && item.weaveSeq() != 0) {
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
