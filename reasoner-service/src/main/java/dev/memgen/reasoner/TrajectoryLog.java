package dev.memgen.reasoner;

import dev.memgen.log.SpooledPublisher;
import dev.memgen.log.Topics;
import dev.memgen.proto.v1.Trajectory;
import jakarta.annotation.PreDestroy;
import jakarta.enterprise.context.ApplicationScoped;
import java.util.Optional;
import java.util.UUID;
import org.eclipse.microprofile.config.inject.ConfigProperty;
import org.jboss.logging.Logger;

/**
 * The reasoner's side of the experience log: one {@code Trajectory} per finished generation to
 * {@code memgen.trajectories} (key: session id), through a {@link SpooledPublisher}, so recording adds no latency to
 * the response and a broker outage loses nothing the spool can hold (and counts what it cannot). Off when
 * {@code memgen.log.bootstrap} is unset.
 */
@ApplicationScoped
public class TrajectoryLog {
  private static final Logger LOG = Logger.getLogger(TrajectoryLog.class);

  private final SpooledPublisher publisher; // null: no log configured

  TrajectoryLog(@ConfigProperty(name = "memgen.log.bootstrap") Optional<String> bootstrap,
      @ConfigProperty(name = "memgen.log.spool-capacity", defaultValue = "10000") int capacity) {
    if (capacity < 1) {
      throw new IllegalStateException("memgen.log.spool-capacity must be >= 1, got " + capacity);
    }
    publisher = bootstrap.map(b -> new SpooledPublisher(b, capacity)).orElse(null);
    LOG.infof("experience log: %s", bootstrap.map(b -> "trajectories to " + b + " (spool of " + capacity + ")")
        .orElse("off (set memgen.log.bootstrap)"));
  }

  /**
   * Spools the trajectory (its id is set here) and returns the id, or "" when no log is configured. Never blocks;
   * a full spool is counted and logged by the publisher.
   */
  public String record(Trajectory.Builder trajectory) {
    if (publisher == null) {
      return "";
    }
    String id = UUID.randomUUID().toString();
    publisher.offer(Topics.TRAJECTORIES, trajectory.getSessionId(), trajectory.setTrajectoryId(id).build());
    return id;
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
