package dev.memgen.trainer;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.memgen.log.ExperienceLog;
import dev.memgen.log.Topics;
import dev.memgen.model.checkpoint.Checkpoint;
import dev.memgen.model.data.ArithmeticTasks;
import dev.memgen.model.text.ChatTemplate;
import dev.memgen.model.text.TextTokenizer;
import dev.memgen.model.train.TokenizedExample;
import dev.memgen.proto.v1.AdapterComponent;
import dev.memgen.proto.v1.AdapterPublished;
import dev.memgen.proto.v1.FinishReason;
import dev.memgen.proto.v1.PublishRequest;
import dev.memgen.proto.v1.RollbackRequest;
import dev.memgen.proto.v1.StatusRequest;
import dev.memgen.proto.v1.TrainerAdminGrpc;
import dev.memgen.proto.v1.TrainerStatus;
import dev.memgen.proto.v1.Trajectory;
import io.grpc.ManagedChannel;
import io.grpc.ManagedChannelBuilder;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import io.quarkus.arc.Arc;
import io.quarkus.grpc.runtime.GrpcServer;
import io.quarkus.test.common.QuarkusTestResource;
import io.quarkus.test.junit.QuarkusTest;
import io.quarkus.value.registry.ValueRegistry;
import java.util.List;
import java.util.UUID;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;

/**
 * TrainerAdmin over gRPC on a trainer with its loop on (real broker): status with the window's progress and the Kafka
 * lag, a forced publish (gated, announced, lag back to 0), refusals by name, and rollback.
 */
@QuarkusTest
@QuarkusTestResource(value = TrainerLoopResource.class, restrictToAnnotatedClass = true)
class TrainerAdminTest {
  @Test
  void statusPublishAndRollbackOverGrpc() throws Exception {
    int port = Arc.container().instance(ValueRegistry.class).get().get(GrpcServer.GRPC_PORT);
    ManagedChannel channel = ManagedChannelBuilder.forAddress("127.0.0.1", port).usePlaintext().build();
    try {
      TrainerAdminGrpc.TrainerAdminBlockingStub admin = TrainerAdminGrpc.newBlockingStub(channel);
      TrainerStatus st = awaitStatus(admin, s -> s.getAdaptersCount() == 1);
      assertEquals(1, st.getAdapters(0).getPublishedVersion(), "the initial memory is v1");
      assertEquals(1000, st.getAdapters(0).getWindow().getTarget());

      List<Trajectory> sent = publishTrajectories(3);
      st = awaitStatus(admin, s -> s.getAdapters(0).getWindow().getRewarded() == 3);
      assertEquals(3, st.getAdapters(0).getWindow().getTrajectories());
      assertEquals(1, st.getConsumerPositionsCount());
      assertEquals(3, st.getConsumerPositions(0).getLag(), "nothing published yet: " + st);

      assertEquals(Status.Code.NOT_FOUND, code(() -> admin.publish(PublishRequest.newBuilder().setAdapterName("nope").build())));
      assertEquals(Status.Code.FAILED_PRECONDITION, code(() -> admin.publish(PublishRequest.newBuilder()
          .setAdapterName("default").setComponent(AdapterComponent.TRIGGER).build())));

      AdapterPublished v2 = admin.withDeadlineAfter(120, TimeUnit.SECONDS).publish(PublishRequest.newBuilder()
          .setAdapterName("default").setReason("test").build()).getPublished(0);
      assertEquals(2, v2.getVersion());
      assertEquals("forced: test", v2.getReason());
      assertEquals(3, v2.getTrainedOn(0).getToOffset() - v2.getTrainedOn(0).getFromOffset());
      st = admin.status(StatusRequest.getDefaultInstance());
      assertEquals(2, st.getAdapters(0).getPublishedVersion());
      assertEquals(0, st.getConsumerPositions(0).getLag(), st.toString());
      assertTrue(st.getAdapters(0).containsLastEvalMetrics("eval_accuracy"), st.toString());

      assertEquals(3, st.getAdapters(0).getTrajectories().getTrained(), st.toString());
      // A reasoner's spool redelivers one after a crash: counted as a duplicate, not trained again.
      try (ExperienceLog log = new ExperienceLog(TrainerLoopResource.broker.bootstrapServers())) {
        log.publish(Topics.TRAJECTORIES, sent.get(1).getSessionId(), sent.get(1)).get();
      }
      st = awaitStatus(admin, s -> s.getAdapters(0).getTrajectories().getDuplicated() == 1);
      assertEquals(3, st.getAdapters(0).getTrajectories().getTrained());
      operatorSees(); // what /q/metrics and /q/health/ready say of the same trainer
      assertEquals(0, st.getAdapters(0).getTrajectories().getWaiting(), st.toString());

      StatusRuntimeException empty = assertThrows(StatusRuntimeException.class, () -> admin.withDeadlineAfter(60,
          TimeUnit.SECONDS).publish(PublishRequest.newBuilder().setAdapterName("default").build()));
      assertEquals(Status.Code.FAILED_PRECONDITION, empty.getStatus().getCode());
      assertTrue(empty.getStatus().getDescription().contains("no rewarded trajectory"), empty.getMessage());

      AdapterPublished back = admin.rollback(RollbackRequest.newBuilder().setAdapterName("default")
          .setComponent(AdapterComponent.WEAVER).setVersion(1).setReason("bad answers").build()).getPublished();
      assertEquals(1, back.getVersion());
      assertEquals(2, back.getRolledBackFrom());
      assertEquals("rollback: bad answers", back.getReason());
      assertEquals(Status.Code.NOT_FOUND, code(() -> admin.rollback(RollbackRequest.newBuilder().setAdapterName("default")
          .setComponent(AdapterComponent.WEAVER).setVersion(99).build())));
      assertEquals(Status.Code.FAILED_PRECONDITION, code(() -> admin.rollback(RollbackRequest.newBuilder()
          .setAdapterName("default").setComponent(AdapterComponent.WEAVER).setVersion(1).build())), "already current");
      assertEquals(Status.Code.INVALID_ARGUMENT, code(() -> admin.rollback(RollbackRequest.newBuilder()
          .setAdapterName("default").setVersion(1).build())), "component unset");
    } finally {
      channel.shutdownNow().awaitTermination(5, TimeUnit.SECONDS);
    }
  }

  static List<Trajectory> publishTrajectories(int n) throws Exception {
    List<Trajectory> sent = new java.util.ArrayList<>();
    String fingerprint = Checkpoint.open(TrainerLoopResource.model).fingerprint();
    try (ExperienceLog log = new ExperienceLog(TrainerLoopResource.broker.bootstrapServers());
        TextTokenizer tok = TextTokenizer.load(TrainerLoopResource.model)) {
      for (ArithmeticTasks.Example e : ArithmeticTasks.generate(ArithmeticTasks.Domain.A, n, 1, 4)) {
        TokenizedExample x = TokenizedExample.of(tok, ChatTemplate.userPrompt(e.prompt()), e.answer());
        String id = UUID.randomUUID().toString();
        Trajectory.Builder t = Trajectory.newBuilder().setTrajectoryId(id).setSessionId(id).setAdapterName("default")
            .setWeaverVersion(1).setBaseFingerprint(fingerprint).setFinishReason(FinishReason.STOP_TOKEN)
            .setSchemaVersion(1).setMemoryEnabled(true);
        for (int p : x.prompt()) {
          t.addPromptTokenIds(p);
        }
        for (int a : x.answer()) {
          t.addCompletionTokenIds(a);
        }
        log.publish(Topics.TRAJECTORIES, id, t.build()).get();
        sent.add(t.build());
      }
    }
    return sent;
  }

  static TrainerStatus awaitStatus(TrainerAdminGrpc.TrainerAdminBlockingStub admin,
      java.util.function.Predicate<TrainerStatus> ready) throws InterruptedException {
    long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(120);
    StatusRuntimeException last = null;
    while (System.nanoTime() < deadline) {
      try {
        TrainerStatus s = admin.withDeadlineAfter(30, TimeUnit.SECONDS).status(StatusRequest.getDefaultInstance());
        if (ready.test(s)) {
          return s;
        }
      } catch (StatusRuntimeException e) {
        if (e.getStatus().getCode() != Status.Code.UNAVAILABLE) {
          throw e;
        }
        last = e; // starting
      }
      Thread.sleep(100);
    }
    throw new AssertionError("status never got there" + (last == null ? "" : ": " + last.getMessage()));
  }

  static Status.Code code(Runnable call) {
    return assertThrows(StatusRuntimeException.class, call::run).getStatus().getCode();
  }

  @io.quarkus.test.common.http.TestHTTPResource("/q/metrics") java.net.URL metrics;
  @io.quarkus.test.common.http.TestHTTPResource("/q/health/ready") java.net.URL ready;

  /** The exposition passes Prometheus's linter and agrees with the status; readiness names the broker and the trainer. */
  void operatorSees() throws Exception {
    java.net.http.HttpClient http = java.net.http.HttpClient.newHttpClient();
    String text = http.send(java.net.http.HttpRequest.newBuilder(metrics.toURI()).build(),
        java.net.http.HttpResponse.BodyHandlers.ofString()).body();
    List<String> lint = dev.memgen.rpc.Prometheus.lint(text);
    assertTrue(lint.isEmpty(), "promtool check metrics: " + lint + dev.memgen.rpc.Prometheus.at(text, lint));
    assertTrue(text.contains("memgen_trainer_windows_total{adapter=\"default\",outcome=\"published\"} 1.0"), text);
    assertTrue(text.contains("memgen_trainer_trajectories_total{adapter=\"default\",outcome=\"trained\"} 3.0"), text);
    assertTrue(text.contains("memgen_trainer_trajectories_total{adapter=\"default\",outcome=\"duplicate\"} 1.0"), text);
    assertTrue(text.contains("memgen_trainer_version{adapter=\"default\"} 2.0"), text);
    assertTrue(text.contains("memgen_trainer_consumer_lag{adapter=\"default\"}"), text);
    java.net.http.HttpResponse<String> r = http.send(java.net.http.HttpRequest.newBuilder(ready.toURI()).build(),
        java.net.http.HttpResponse.BodyHandlers.ofString());
    assertEquals(200, r.statusCode(), r.body());
    assertTrue(r.body().contains("memgen-trainer") && r.body().contains("broker"), r.body());
  }
}
