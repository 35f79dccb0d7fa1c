package dev.memgen.model.memory;

/** How a generation reaches a trigger: in the same process or over gRPC. One session per generated sequence. */
public interface TriggerLink {
  Session open(String sessionId);

  interface Session extends AutoCloseable {
    /** Tokens appended to the sequence (the trigger reads text only, never latents). */
    void appendTokens(int[] ids);

    /**
     * {@code k} latent rows went into the reasoner's stream here. The trigger never reads latents; a remote trigger
     * counts them so its positions stay those of the reasoner's stream.
     */
    default void appendLatents(int k) {}

    /** P(invoke) after the tokens appended so far. */
    float probability();

    /** Version of the trigger that answers (known once it has answered; 0 when unknown). */
    default long adapterVersion() {
      return 0;
    }

    @Override
    void close();
  }
}
