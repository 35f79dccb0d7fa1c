package dev.memgen.model.memory;

import dev.memgen.model.Weaver;
import java.util.List;

/**
 * How a generation reaches a weaver: in the same process ({@link InProcessMemory}) or over gRPC (the
 * weaver-service). One session per generated sequence.
 */
public interface WeaverLink {
  Session open(String sessionId);

  /** One session's weave in a batch ({@link #weaveAll}): its latents {@code [K * hidden]}, or why it failed. */
  record Woven(float[] latents, RuntimeException error) {}

  /**
   * Weaves several sessions (each after the rows appended to it): in-process sessions on one base in one forward
   * call, the others (remote) at once, their calls overlapping. Each entry says what became of its session; a
   * failure is that session's alone.
   */
  static List<Woven> weaveAll(List<? extends Session> sessions, List<Weaver.Kind> kinds) {
    return Concurrently.batched(sessions, s -> s.inProcess() != null,
        at -> InProcessMemory.weaveTogether(at.stream().map(i -> sessions.get(i).inProcess()).toList(),
            at.stream().map(kinds::get).toList()),
        i -> {
          try {
            return new Woven(sessions.get(i).weave(kinds.get(i)), null);
          } catch (RuntimeException e) {
            return new Woven(null, e);
          }
        });
  }

  interface Session extends AutoCloseable {
    /**
     * The in-process session doing this session's work (itself, or the one a wrapper holds), or null (a remote
     * session): {@link #weaveAll} weaves in-process sessions together in one forward call.
     */
    default InProcessMemory.WeaverSession inProcess() {
      return null;
    }

    /** Latent rows per weave of this kind. */
    int k(Weaver.Kind kind);

    /** Version of the weaver serving this session (pinned for its life). */
    long adapterVersion();

    /** Tokens appended to the reasoner's stream, in order (the weaver embeds them with the shared base). */
    void appendTokens(int[] ids);

    /** Latents {@code [K * hidden]} for the prefix so far; not part of the prefix until {@link #acceptLatents}. */
    float[] weave(Weaver.Kind kind);

    /** The latents of the last weave went into the reasoner's stream: they join the weaver's prefix too. */
    void acceptLatents();

    /**
     * Whether this weaver reads the reasoner's last-layer hidden states (the paper's wording) rather than its input
     * embeddings (the reference code). Then tokens and accepted latents come with the reasoner's hidden states at
     * their positions, through the two methods below.
     */
    default boolean readsHiddenStates() {
      return false;
    }

    /** Tokens with the reasoner's final-norm hidden states at their positions ({@code [n * hidden]}). */
    default void appendTokens(int[] ids, float[] hiddenStates) {
      throw new UnsupportedOperationException("this weaver reads input embeddings: append token ids only");
    }

    /** Accepts the last weave's latents, with the reasoner's hidden states at their positions ({@code [k * hidden]}). */
    default void acceptLatents(float[] hiddenStates) {
      throw new UnsupportedOperationException("this weaver reads input embeddings: accept latents without hidden states");
    }

    @Override
    void close();
  }
}
