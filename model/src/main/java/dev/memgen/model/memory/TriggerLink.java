package dev.memgen.model.memory;

import java.util.List;

/** How a generation reaches a trigger: in the same process or over gRPC. One session per generated sequence. */
public interface TriggerLink {
  Session open(String sessionId);

  /** One session's answer in a batch ({@link #probabilities}): P(invoke), or why it failed. */
  record Read(float probability, RuntimeException error) {}

  /**
   * P(invoke) of several sessions (each after the tokens appended to it): in-process sessions on one base in one
   * forward call, the others (remote) at once, their calls overlapping. A failure is that session's alone.
   */
  static List<Read> probabilities(List<? extends Session> sessions) {
    return Concurrently.batched(sessions, s -> s.inProcess() != null,
        at -> InProcessMemory.probabilities(at.stream().map(i -> sessions.get(i).inProcess()).toList()),
        i -> {
          try {
            return new Read(sessions.get(i).probability(), null);
          } catch (RuntimeException e) {
            return new Read(Float.NaN, e);
          }
        });
  }

  interface Session extends AutoCloseable {
    /**
     * The in-process session doing this session's work (itself, or the one a wrapper holds), or null (a remote
     * session): {@link #probabilities} reads in-process sessions together in one forward call.
     */
    default InProcessMemory.TriggerSession inProcess() {
      return null;
    }

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
