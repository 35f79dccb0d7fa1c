package dev.memgen.cli;

import com.google.protobuf.Message;
import com.google.protobuf.util.JsonFormat;
import dev.memgen.proto.v1.FeedbackIntakeGrpc;
import dev.memgen.proto.v1.PublishRequest;
import dev.memgen.proto.v1.RollbackRequest;
import dev.memgen.proto.v1.StatusRequest;
import dev.memgen.proto.v1.SubmitFeedbackRequest;
import dev.memgen.proto.v1.TrainerAdminGrpc;
import io.grpc.ManagedChannel;
import io.grpc.ManagedChannelBuilder;
import io.grpc.StatusRuntimeException;
import java.util.concurrent.Callable;
import java.util.concurrent.TimeUnit;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;
import picocli.CommandLine.Parameters;

/** The running services' operator APIs from the command line: TrainerAdmin, and FeedbackIntake on the reasoner. */
final class TrainerCommand {
  private TrainerCommand() {}

  @Command(name = "trainer", mixinStandardHelpOptions = true,
      description = "Ask a running trainer-service (memgen.v1.TrainerAdmin): status, publish, rollback. Prints JSON.",
      subcommands = {Status.class, Publish.class, Rollback.class})
  static final class Admin {}

  abstract static class Call implements Callable<Integer> {
    @Option(names = "--trainer", defaultValue = "127.0.0.1:9003", description = "trainer-service gRPC (default ${DEFAULT-VALUE})")
    String target;

    abstract Message call(TrainerAdminGrpc.TrainerAdminBlockingStub admin);

    @Override
    public Integer call() throws Exception {
      return run(target, ch -> call(TrainerAdminGrpc.newBlockingStub(ch).withDeadlineAfter(30, TimeUnit.MINUTES)));
    }
  }

  @Command(name = "status", mixinStandardHelpOptions = true, description = "Versions, window progress, last evaluation, Kafka lag.")
  static final class Status extends Call {
    @Option(names = "--name", defaultValue = "", description = "only this adapter") String name;

    @Override
    Message call(TrainerAdminGrpc.TrainerAdminBlockingStub admin) {
      return admin.status(StatusRequest.newBuilder().setAdapterName(name).build());
    }
  }

  @Command(name = "publish", mixinStandardHelpOptions = true,
      description = "Train the open window now (the held-out gate still applies); waits for the result.")
  static final class Publish extends Call {
    @Parameters(index = "0", description = "adapter name") String name;

    @Option(names = "--reason", defaultValue = "", description = "recorded as 'forced: REASON'") String reason;

    @Override
    Message call(TrainerAdminGrpc.TrainerAdminBlockingStub admin) {
      return admin.publish(PublishRequest.newBuilder().setAdapterName(name).setReason(reason).build());
    }
  }

  @Command(name = "rollback", mixinStandardHelpOptions = true, description = "Make an older version current again.")
  static final class Rollback extends Call {
    @Parameters(index = "0", description = "adapter name") String name;

    @Parameters(index = "1", description = "version") long version;

    @Option(names = "--component", defaultValue = "weaver", description = "weaver or trigger (default ${DEFAULT-VALUE})")
    String component;

    @Option(names = "--reason", defaultValue = "", description = "recorded as 'rollback: REASON'") String reason;

    @Override
    Message call(TrainerAdminGrpc.TrainerAdminBlockingStub admin) {
      return admin.rollback(RollbackRequest.newBuilder().setAdapterName(name).setVersion(version).setReason(reason)
          .setComponent(AdaptersCommand.component(component)).build());
    }
  }

  @Command(name = "feedback", mixinStandardHelpOptions = true,
      description = "Send a reward for a finished generation (its Finished.trajectory_id) to the reasoner. Prints JSON.")
  static final class Feedback implements Callable<Integer> {
    @Parameters(index = "0", description = "trajectory id") String trajectoryId;

    @Parameters(index = "1", description = "reward, e.g. 1 (good) or 0 (bad)") double reward;

    @Option(names = "--reasoner", defaultValue = "127.0.0.1:9000", description = "reasoner-service gRPC (default ${DEFAULT-VALUE})")
    String target;

    @Option(names = "--source", defaultValue = "", description = "who judges (default: human)") String source;

    @Option(names = "--comment", defaultValue = "") String comment;

    @Option(names = "--correction", defaultValue = "", description = "the answer it should have given: an SFT target")
    String correction;

    @Option(names = "--feedback-id", defaultValue = "", description = "your id for safe retries (default: the server's)")
    String feedbackId;

    @Override
    public Integer call() throws Exception {
      return run(target, ch -> FeedbackIntakeGrpc.newBlockingStub(ch).withDeadlineAfter(30, TimeUnit.SECONDS).submit(
          SubmitFeedbackRequest.newBuilder().setTrajectoryId(trajectoryId).setReward(reward).setSource(source)
              .setComment(comment).setFeedbackId(feedbackId).setCorrectedAnswer(correction).build()));
    }
  }

  /** Calls a service at {@code target}; prints the reply as one JSON line, or the gRPC error (exit 1). */
  static int run(String target, java.util.function.Function<ManagedChannel, Message> call) throws Exception {
    int colon = target.lastIndexOf(':');
    if (colon < 0) {
      throw new IllegalArgumentException("target '" + target + "' must be HOST:PORT");
    }
    ManagedChannel ch = ManagedChannelBuilder.forAddress(target.substring(0, colon),
        Integer.parseInt(target.substring(colon + 1))).usePlaintext().build();
    try {
      Message reply = call.apply(ch);
      System.out.println(JsonFormat.printer().omittingInsignificantWhitespace().print(reply));
      return 0;
    } catch (StatusRuntimeException e) {
      System.err.println("memgen: " + target + ": " + e.getStatus().getCode() + ": " + e.getStatus().getDescription());
      return 1;
    } finally {
      ch.shutdownNow().awaitTermination(5, TimeUnit.SECONDS);
    }
  }
}
