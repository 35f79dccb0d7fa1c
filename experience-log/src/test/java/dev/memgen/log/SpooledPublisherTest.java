package dev.memgen.log;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.memgen.log.broker.KafkaBroker;
import dev.memgen.proto.v1.Trajectory;
import java.nio.file.Files;
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
  void aSpoolDirectoryKeepsUndeliveredRecordsForTheNextPublisher() throws Exception {
    int port = freePort();
    Path spool = tmp.resolve("spool");
    try (SpooledPublisher first = new SpooledPublisher("localhost:" + port, 100, spool)) {
      for (int i = 0; i < 25; i++) { // every third with a header, which must survive the spool file
        assertTrue(first.offer(Topics.TRAJECTORIES, "s" + i, trajectory(i),
            i % 3 == 0 ? java.util.Map.of("traceparent", traceparent(i)) : java.util.Map.of()));
      }
      assertEquals(25, spoolFiles(spool), "every accepted record is on disk before offer returns");
      first.close(Duration.ofMillis(500)); // the broker never came: the process goes away with everything spooled
    }
    Files.writeString(spool.resolve("00000000000000000999.rec"), "garbage"); // a torn or foreign file is set aside
    try (KafkaBroker broker = KafkaBroker.start(tmp.resolve("kafka"), port);
        ExperienceLog log = new ExperienceLog(broker.bootstrapServers())) {
      log.ensureTopics(1);
      try (SpooledPublisher second = new SpooledPublisher(broker.bootstrapServers(), 100, spool)) {
        assertTrue(second.offer(Topics.TRAJECTORIES, "s25", trajectory(25)));
        long deadline = System.nanoTime() + Duration.ofSeconds(60).toNanos();
        while (second.stats().delivered() < 26 && System.nanoTime() < deadline) {
          Thread.sleep(100);
        }
        assertEquals(26, second.stats().delivered(), second.stats().toString());
      }
      Set<String> ids = new HashSet<>();
      for (var r : ExperienceLogTest.readAll(broker, Topics.TRAJECTORIES)) {
        String id = Trajectory.parseFrom(r.value()).getTrajectoryId();
        ids.add(id);
        int i = Integer.parseInt(id.substring(1));
        var header = r.headers().lastHeader("traceparent");
        assertEquals(i < 25 && i % 3 == 0 ? traceparent(i) : null,
            header == null ? null : new String(header.value(), java.nio.charset.StandardCharsets.UTF_8), id);
      }
      assertEquals(26, ids.size(), "the 25 left by the first publisher and the new one");
      assertEquals(0, spoolFiles(spool), "delivered records leave the spool");
      assertTrue(Files.exists(spool.resolve("00000000000000000999.rec.bad")));
    }
  }

  private static String traceparent(int i) {
    return String.format("00-%032x-%016x-01", i + 1, i + 7);
  }

  static long spoolFiles(Path dir) throws java.io.IOException {
    try (var files = Files.list(dir)) {
      return files.filter(f -> f.toString().endsWith(".rec")).count();
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
      publisher.close(Duration.ofMillis(200)); // no broker will come: do not wait the default drain time
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
