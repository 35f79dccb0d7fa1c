package dev.memgen.log;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.memgen.log.broker.KafkaBroker;
import dev.memgen.proto.v1.Trajectory;
import java.nio.file.Path;
import java.time.Duration;
import java.util.HashSet;
import java.util.List;
import java.util.Set;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** The spool on a real broker that is down at first: nothing blocks, nothing is lost, overflow is counted. */
class SpooledPublisherTest {
  @TempDir Path tmp;

  static Trajectory trajectory(int i) {
    return Trajectory.newBuilder().setTrajectoryId("t" + i).setSessionId("s" + i).build();
  }

  @Test
  void recordsOfferedWhileTheBrokerIsDownAreDeliveredWhenItComesUp() throws Exception {
    int port = freePort();
    try (SpooledPublisher publisher = new SpooledPublisher("localhost:" + port, 100)) {
      long t0 = System.nanoTime();
      for (int i = 0; i < 40; i++) {
        assertTrue(publisher.offer(Topics.TRAJECTORIES, "s" + i, trajectory(i)));
      }
      long offerMs = (System.nanoTime() - t0) / 1_000_000;
      assertTrue(offerMs < 2000, "offering 40 records with no broker took " + offerMs + " ms: it must not block");
      Thread.sleep(1500);
      assertEquals(0, publisher.stats().delivered(), "no broker yet");
      assertEquals(40, publisher.stats().pending());

      try (KafkaBroker broker = KafkaBroker.start(tmp.resolve("kafka"), port);
          ExperienceLog log = new ExperienceLog(broker.bootstrapServers())) {
        log.ensureTopics(1);
        long deadline = System.nanoTime() + Duration.ofSeconds(90).toNanos();
        while (publisher.stats().delivered() < 40 && System.nanoTime() < deadline) {
          Thread.sleep(200);
        }
        SpooledPublisher.Stats s = publisher.stats();
        assertEquals(40, s.delivered(), s.toString());
        assertEquals(0, s.pending(), s.toString());
        assertEquals(0, s.overflowed(), s.toString());
        Set<String> ids = new HashSet<>();
        for (var r : ExperienceLogTest.readAll(broker, Topics.TRAJECTORIES)) {
          ids.add(Trajectory.parseFrom(r.value()).getTrajectoryId());
        }
        assertEquals(40, ids.size(), "every trajectory is in the topic: " + ids);
      }
    }
  }

  @Test
  void aBrokerKilledAndRestartedInTheMiddleOfAStreamLosesAndDuplicatesNothing() throws Exception {
    int port = freePort();
    try (KafkaBroker broker = KafkaBroker.start(tmp.resolve("kafka"), port);
        SpooledPublisher publisher = new SpooledPublisher(broker.bootstrapServers(), 1000)) {
      try (ExperienceLog log = new ExperienceLog(broker.bootstrapServers())) {
        log.ensureTopics(2);
      }
      int n = 300;
      for (int i = 0; i < n; i++) {
        assertTrue(publisher.offer(Topics.TRAJECTORIES, "s" + i, trajectory(i)));
        if (i == n / 3) {
          broker.kill(); // SIGKILL, with records in flight
        }
        if (i == 2 * n / 3) {
          broker.restart();
        }
        Thread.sleep(5); // a stream, not a burst
      }
      long deadline = System.nanoTime() + Duration.ofSeconds(120).toNanos();
      while (publisher.stats().delivered() < n && System.nanoTime() < deadline) {
        Thread.sleep(200);
      }
      assertEquals(n, publisher.stats().delivered(), publisher.stats().toString());
      List<String> ids = new java.util.ArrayList<>();
      for (var r : ExperienceLogTest.readAll(broker, Topics.TRAJECTORIES)) {
        ids.add(Trajectory.parseFrom(r.value()).getTrajectoryId());
      }
      assertEquals(n, new HashSet<>(ids).size(), "every record arrived");
      assertEquals(n, ids.size(), "none twice (idempotent producer across the broker's restart)");
    }
  }

  @Test
  void aFullSpoolRefusesAndCountsInsteadOfBlocking() {
    try (SpooledPublisher publisher = new SpooledPublisher("localhost:" + freePort(), 5)) {
      int refused = 0;
      for (int i = 0; i < 12; i++) {
        if (!publisher.offer(Topics.TRAJECTORIES, "s", trajectory(i))) {
          refused++;
        }
      }
      SpooledPublisher.Stats s = publisher.stats();
      assertTrue(refused >= 6, "refused " + refused);
      assertEquals(refused, s.overflowed());
      assertEquals(12 - refused, s.accepted());
      assertFalse(s.pending() > 6, s.toString());
    }
  }

  static int freePort() {
    try (java.net.ServerSocket s = new java.net.ServerSocket(0)) {
      return s.getLocalPort();
    } catch (java.io.IOException e) {
      throw new java.io.UncheckedIOException(e);
    }
  }
}
