package dev.memgen.reasoner;

import dev.memgen.log.SpooledPublisher;
import dev.memgen.log.Topics;
import dev.memgen.proto.v1.Feedback;
import dev.memgen.proto.v1.Trajectory;
import jakarta.annotation.PreDestroy;
import jakarta.enterprise.context.ApplicationScoped;
import jakarta.inject.Inject;
import java.util.Map;
import java.util.Optional;
import java.util.UUID;
import org.eclipse.microprofile.config.inject.ConfigProperty;
import org.jboss.logging.Logger;

/**
 * The reasoner's side of the experience log: one {@code Trajectory} per finished generation to
 * {@code memgen.trajectories} (key: session id) and every accepted reward to {@code memgen.feedback} (key: trajectory
 * id), through one {@link SpooledPublisher} (one producer, one bounded spool for the whole service), so recording
 * adds no latency to a response and a broker outage loses nothing the spool can hold (and counts what it cannot).
 * Off when {@code memgen.log.bootstrap} is unset.
 */
@ApplicationScoped
public class ExperienceRecorder {
  private static final Logger LOG = Logger.getLogger(ExperienceRecorder.class);

  /** What became of a record offered to the log. */
  public enum Outcome {
    /** In the spool; the publisher delivers it when the broker is up. */
    SPOOLED,
    /** The spool was full (the broker has been unreachable for a while); the record was refused and counted. */
    SPOOL_FULL,
    /** No experience log is configured on this server. */
    NO_LOG
  }

  private final SpooledPublisher publisher; // null: no log configured

  @Inject
  ExperienceRecorder(@ConfigProperty(name = "memgen.log.bootstrap") Optional<String> bootstrap,
      @ConfigProperty(name = "memgen.log.spool-capacity", defaultValue = "10000") int capacity,
      @ConfigProperty(name = "memgen.log.spool-dir") Optional<String> spoolDir) {
    if (capacity < 1) {
      throw new IllegalStateException("memgen.log.spool-capacity must be >= 1, got " + capacity);
    }
    publisher = bootstrap.map(b -> new SpooledPublisher(b, capacity, spoolDir.map(java.nio.file.Path::of).orElse(null)))
        .orElse(null);
    LOG.infof("experience log: %s", bootstrap.map(b -> "trajectories and feedback to " + b + " (spool of " + capacity
        + spoolDir.map(d -> ", kept in " + d + " until delivered").orElse(", in memory: set memgen.log.spool-dir to keep "
            + "it across restarts") + ")").orElse("off (set memgen.log.bootstrap)"));
  }

  /** Over a publisher the caller made (and closes); {@code null}: no log. For tests outside the container. */
  ExperienceRecorder(SpooledPublisher publisher) {
    this.publisher = publisher;
  }

  /** Whether records go anywhere: false when {@code memgen.log.bootstrap} is unset. */
  public boolean enabled() {
    return publisher != null;
  }

  /**
   * Spools the trajectory (its id is set here) and returns the id, or "" when no log is configured. Never blocks.
   * The id is returned even when a full spool refused the record (the publisher counts and logs that): the
   * generation has been answered already, and the client may still send feedback for it.
   */
  public String recordTrajectory(Trajectory.Builder trajectory) {
    return recordTrajectory(trajectory, Map.of());
  }

  /** {@link #recordTrajectory(Trajectory.Builder)} with Kafka record headers (the request's trace context). */
  public String recordTrajectory(Trajectory.Builder trajectory, Map<String, String> headers) {
    if (publisher == null) {
      return "";
    }
    String id = UUID.randomUUID().toString();
    // Keyed by adapter: its stream is one partition, which one trainer of a group owns (Topics.partitionOf).
    publisher.offer(Topics.TRAJECTORIES, trajectory.getAdapterName(), trajectory.setTrajectoryId(id).build(), headers);
    return id;
  }

  /** Spools one reward to {@code memgen.feedback}, keyed by its trajectory so the trainer joins them. Never blocks. */
  public Outcome recordFeedback(Feedback feedback) {
    if (publisher == null) {
      return Outcome.NO_LOG;
    }
    return publisher.offer(Topics.FEEDBACK, feedback.getTrajectoryId(), feedback) ? Outcome.SPOOLED : Outcome.SPOOL_FULL;
  }

  public Optional<SpooledPublisher.Stats> stats() {
    return Optional.ofNullable(publisher).map(SpooledPublisher::stats);
  }

  @PreDestroy
  void close() {
    if (publisher != null) {
      publisher.close();
    }
  }
}
