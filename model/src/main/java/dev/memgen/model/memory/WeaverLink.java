package dev.memgen.model.memory;

import dev.memgen.model.Weaver;

/**
 * How a generation reaches a weaver: in the same process ({@link InProcessMemory}) or over gRPC (the
 * weaver-service). One session per generated sequence.
 */
public interface WeaverLink {
  Session open(String sessionId);

  interface Session extends AutoCloseable {
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

    @Override
    void close();
  }
}
