package dev.memgen.trainer;

import com.google.protobuf.Timestamp;
import dev.memgen.log.AdapterLog;
import dev.memgen.log.ExperienceLog;
import dev.memgen.log.ConsumerLag;
import dev.memgen.log.KafkaClients;
import dev.memgen.log.store.AdapterStore;
import dev.memgen.proto.v1.AdapterComponent;
import dev.memgen.proto.v1.AdapterPublished;
import dev.memgen.proto.v1.AdapterStatus;
import dev.memgen.proto.v1.ConsumerPosition;
import dev.memgen.proto.v1.PublishReply;
import dev.memgen.proto.v1.PublishRequest;
import dev.memgen.proto.v1.RollbackReply;
import dev.memgen.proto.v1.RollbackRequest;
import dev.memgen.proto.v1.StatusRequest;
import dev.memgen.proto.v1.TrainerAdminGrpc;
import dev.memgen.proto.v1.TrainerStatus;
import dev.memgen.proto.v1.TrajectoryCounts;
import dev.memgen.proto.v1.WindowProgress;
import dev.memgen.rpc.ApiKeys;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import io.grpc.stub.StreamObserver;
import io.quarkus.grpc.GrpcService;
import io.smallrye.common.annotation.Blocking;
import java.time.Duration;
import java.time.Instant;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;

/**
 * {@code memgen.v1.TrainerAdmin}: the operator's view of the trainer (status with Kafka lag), a forced publish of the
 * open window (gated like any window), and rollback (the same announcement `memgen adapters rollback` makes). All
 * three talk to Kafka or train, so they run on worker threads, never on the event loop.
 */
@GrpcService
public class TrainerAdminService extends TrainerAdminGrpc.TrainerAdminImplBase {
  private static final Duration KAFKA_TIMEOUT = Duration.ofSeconds(30);
  /** Longest a forced publish may take (a window's training and evaluation). */
  private static final Duration PUBLISH_TIMEOUT = Duration.ofMinutes(30);

  private final TrainerLoop loop;

  TrainerAdminService(TrainerLoop loop) {
    this.loop = loop;
  }

  @Override
  @Blocking
  public void status(StatusRequest request, StreamObserver<TrainerStatus> out) {
    respond(out, () -> {
      ContinualTrainer.Settings s = loop.settings().orElseThrow(TrainerAdminService::unavailable);
      Map<String, ContinualTrainer> which;
      if (request.getAdapterName().isEmpty()) {
        which = loop.trainers(); // every adapter this process trains now
        if (which.isEmpty()) {
          throw unavailable();
        }
      } else {
        which = Map.of(request.getAdapterName(), running(request.getAdapterName()));
      }
      TrainerStatus.Builder reply = TrainerStatus.newBuilder().setAsOf(timestamp(Instant.now()));
      List<String> activities = new ArrayList<>();
      try (Admin admin = Admin.create(KafkaClients.properties(Map.of(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, s.bootstrapServers())))) {
        for (Map.Entry<String, ContinualTrainer> e : new TreeMap<>(which).entrySet()) {
          ContinualTrainer t = e.getValue();
          ContinualTrainer.Status st = t.status();
          AdapterStatus.Builder a = AdapterStatus.newBuilder()
              .setAdapterName(e.getKey())
              .setComponent(AdapterComponent.WEAVER)
              .setPublishedVersion(st.currentVersion())
              .setHasCandidate(false) // a candidate is published or refused as soon as it is evaluated
              .setWindow(WindowProgress.newBuilder().setTrajectories(st.windowTrajectories()).setRewarded(st.windowRewarded())
                  .setTarget(st.windowTarget()).setHeldBack(st.heldBack()))
              .putAllLastEvalMetrics(st.lastEvalMetrics())
              .setTrajectories(counts(st.counts()));
          if (st.lastPublished() != null) {
            a.setPublishedAt(st.lastPublished().getCreatedAt());
          }
          if (st.lastEvalAt() != null) {
            a.setLastEvalAt(timestamp(st.lastEvalAt()));
          }
          reply.addAdapters(a);
          activities.add(which.size() == 1 ? st.activity() : e.getKey() + ": " + st.activity());
          // What the group has committed, read from Kafka (the trainer commits after each publish and at start).
          ConsumerLag.of(admin, t.groupId(), st.committed().keySet(), KAFKA_TIMEOUT).forEach((tp, p) ->
              reply.addConsumerPositions(ConsumerPosition.newBuilder().setGroupId(t.groupId()).setTopic(tp.topic())
                  .setPartition(tp.partition()).setCommittedOffset(p.committed()).setEndOffset(p.end()).setLag(p.lag())));
        }
      }
      return reply.setActivity(String.join("; ", activities)).build();
    });
  }

  @Override
  @Blocking
  public void publish(PublishRequest request, StreamObserver<PublishReply> out) {
    respond(out, () -> {
      ContinualTrainer t = running(request.getAdapterName());
      if (request.getComponent() == AdapterComponent.TRIGGER) {
        throw Status.FAILED_PRECONDITION.withDescription("this trainer trains the weaver only; component TRIGGER has "
            + "nothing to publish").asRuntimeException();
      }
      ContinualTrainer.Outcome o;
      try {
        o = t.publishNow(request.getReason().isEmpty() ? "operator" : request.getReason())
            .get(PUBLISH_TIMEOUT.toSeconds(), TimeUnit.SECONDS);
      } catch (ExecutionException e) {
        throw Status.UNAVAILABLE.withDescription(e.getCause().getMessage()).asRuntimeException();
      }
      if (o.published().isEmpty()) {
        throw Status.FAILED_PRECONDITION.withDescription("nothing published: " + o.refusal()).asRuntimeException();
      }
      return PublishReply.newBuilder().addPublished(o.published().get()).build();
    });
  }

  @Override
  @Blocking
  public void rollback(RollbackRequest request, StreamObserver<RollbackReply> out) {
    respond(out, () -> {
      ContinualTrainer.Settings s = loop.settings().orElseThrow(TrainerAdminService::unavailable);
      checkName(request.getAdapterName());
      String name = request.getAdapterName();
      if (request.getComponent() != AdapterComponent.WEAVER && request.getComponent() != AdapterComponent.TRIGGER) {
        throw Status.INVALID_ARGUMENT.withDescription("component must be WEAVER or TRIGGER, got " + request.getComponent())
            .asRuntimeException();
      }
      if (request.getVersion() < 1) {
        throw Status.INVALID_ARGUMENT.withDescription("version must be >= 1, got " + request.getVersion()).asRuntimeException();
      }
      AdapterStore store = AdapterStore.open(s.storeDir());
      if (store.versions(name).stream().noneMatch(v -> v.version() == request.getVersion())) {
        throw Status.NOT_FOUND.withDescription("adapter " + name + " has no version " + request.getVersion()
            + " in " + s.storeDir()).asRuntimeException();
      }
      try (ExperienceLog log = new ExperienceLog(s.bootstrapServers())) {
        AdapterPublished a = AdapterLog.rollback(store, log, name, request.getComponent(), request.getVersion(),
            request.getReason(), KAFKA_TIMEOUT).announced();
        return RollbackReply.newBuilder().setPublished(a).build();
      } catch (IllegalArgumentException e) {
        throw Status.FAILED_PRECONDITION.withDescription(e.getMessage()).asRuntimeException();
      }
    });
  }

  private static TrajectoryCounts counts(ContinualTrainer.Counts c) {
    return TrajectoryCounts.newBuilder().setTrained(c.trained()).setLowReward(c.lowReward()).setDuplicated(c.duplicated())
        .setDeadLettered(c.deadLettered()).setSkipped(c.skipped()).setExpired(c.expired()).setWaiting(c.waiting())
        .setOtherAdapters(c.otherAdapters()).setFeedbackDeadLettered(c.feedbackDeadLettered())
        .setFeedbackAfterTraining(c.feedbackAfterTraining()).build();
  }

  /** The trainer of {@code name} in this process, or the gRPC status that says why there is none. */
  private ContinualTrainer running(String name) {
    loop.settings().orElseThrow(TrainerAdminService::unavailable);
    checkName(name);
    if (!loop.holds(name)) {
      throw Status.UNAVAILABLE.withDescription("adapter '" + name + "' is trained by another member of the trainer group "
          + "now (this one trains " + loop.trainers().keySet() + ")").asRuntimeException();
    }
    return loop.trainer(name).orElseThrow(TrainerAdminService::unavailable);
  }

  private static StatusRuntimeException unavailable() {
    return Status.UNAVAILABLE.withDescription("the trainer is not running (no memgen.log.bootstrap, or it is starting or "
        + "reconnecting to Kafka)").asRuntimeException();
  }

  private void checkName(String name) {
    if (name.isEmpty()) {
      throw Status.INVALID_ARGUMENT.withDescription("adapter_name is required").asRuntimeException();
    }
    if (!loop.adapters().contains(name)) {
      throw Status.NOT_FOUND.withDescription("adapter '" + name + "' is not trained here (this trainer trains "
          + (loop.adapters().size() == 1 ? "'" + loop.adapters().get(0) + "'" : loop.adapters()) + ")").asRuntimeException();
    }
    ApiKeys.require(name, "adapter_name");
  }

  private static Timestamp timestamp(Instant t) {
    return Timestamp.newBuilder().setSeconds(t.getEpochSecond()).setNanos(t.getNano()).build();
  }

  private interface Call<T> {
    T run() throws Exception;
  }

  /** Replies, or ends the call with the gRPC status an error carries (INTERNAL, with its message, for the rest). */
  private static <T> void respond(StreamObserver<T> out, Call<T> call) {
    T reply;
    try {
      reply = call.run();
    } catch (StatusRuntimeException e) {
      out.onError(e);
      return;
    } catch (TimeoutException e) {
      out.onError(Status.DEADLINE_EXCEEDED.withDescription("timed out: " + e.getMessage()).asRuntimeException());
      return;
    } catch (Exception e) {
      out.onError(Status.INTERNAL.withDescription(e.toString()).asRuntimeException());
      return;
    }
    out.onNext(reply);
    out.onCompleted();
  }
}
