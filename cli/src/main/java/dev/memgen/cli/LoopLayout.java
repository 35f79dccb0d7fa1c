package dev.memgen.cli;

import java.time.Duration;

/**
 * Where the loop's reasoner, trigger, weaver and trainer run, as {@link LoopBench} drives them: as four processes over
 * gRPC ({@code deploy/local/services.sh}) or all in this JVM. The broker is a child JVM either way, and the accounting
 * reads only the broker and the adapter store, so it is the same for both.
 */
interface LoopLayout extends AutoCloseable {
  /** One answered request as the fleet sees it. */
  record Answer(String text, String trajectoryId, long weaverVersion, int inferenceInsertions, int consultations,
      int completionTokens, long latencyMs, boolean degraded) {}

  /** The trainer as the accounting needs it: trajectories waiting in its open window, and whether it is busy. */
  record TrainerView(long waiting, boolean busy) {}

  /** Starts every component (the trainer stores and announces the initial memory as v1). */
  void start() throws Exception;

  /** One chat request, greedy; its trajectory is recorded. */
  Answer generate(String question, int maxNewTokens);

  /** A reward for a recorded trajectory, through the reasoner's feedback path. */
  void feedback(String trajectoryId, double reward, String source);

  /** The weaver version new generations get now; throws while the memory is not reachable yet. */
  long servingVersion();

  /** The trainer's state; throws while it is restarting. */
  TrainerView trainer();

  /** Trajectory records after the trainer's committed offsets, over all partitions. */
  long trainerLag();

  /**
   * SIGKILLs the trainer once it has started a window and restarts it; true if the kill came before that window was
   * published.
   */
  boolean killTrainerMidWindow(Duration timeout) throws Exception;

  /** SIGKILLs one service ("weaver-service", "trigger-service", "trainer-service") and starts it again. */
  default void killAndRestart(String service) throws Exception {
    throw new UnsupportedOperationException("killing " + service + " needs the services as processes, not in this JVM");
  }

  /** Stops every component; safe to call more than once, and from a shutdown hook. */
  @Override
  void close();
}
