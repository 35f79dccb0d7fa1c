package dev.memgen.cli;

import dev.memgen.proto.v1.ChatMessage;
import dev.memgen.proto.v1.ChatMessages;
import dev.memgen.proto.v1.ConsumerPosition;
import dev.memgen.proto.v1.DescribeRequest;
import dev.memgen.proto.v1.FeedbackIntakeGrpc;
import dev.memgen.proto.v1.Finished;
import dev.memgen.proto.v1.GenerateEvent;
import dev.memgen.proto.v1.GenerateRequest;
import dev.memgen.proto.v1.ReasonerGrpc;
import dev.memgen.proto.v1.SkipReason;
import dev.memgen.proto.v1.StatusRequest;
import dev.memgen.proto.v1.SubmitFeedbackRequest;
import dev.memgen.proto.v1.TrainerAdminGrpc;
import dev.memgen.proto.v1.TrainerStatus;
import dev.memgen.proto.v1.WeaverGrpc;
import io.grpc.ManagedChannel;
import io.grpc.ManagedChannelBuilder;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Iterator;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.function.Consumer;

/**
 * The loop as four processes: {@code deploy/local/services.sh} with the loop on, in its own run directory and ports;
 * requests to the reasoner over gRPC, feedback through its FeedbackIntake, the serving version from the weaver's
 * Describe, the trainer's state from TrainerAdmin.
 */
final class ProcessLayout implements LoopLayout {
  /** A window with a reward in it is due this long after it opened, however few it holds. */
  static final Duration MAX_WINDOW_WAIT = Duration.ofSeconds(5);

  private final LoopBench.Settings s;
  private final Path runDir;
  private final String bootstrap;
  private final Consumer<String> progress;
  private int grpcBase;
  private int httpBase;
  private ManagedChannel reasoner;
  private ManagedChannel weaver;
  private ManagedChannel trainer;
  private boolean started;
  private boolean closed;

  ProcessLayout(LoopBench.Settings s, Path runDir, String bootstrap, Consumer<String> progress) {
    this.s = s;
    this.runDir = runDir;
    this.bootstrap = bootstrap;
    this.progress = progress;
  }

  @Override
  public void start() throws Exception {
    // After the broker (whose ports are then bound, so not picked): gRPC of the four services, then their HTTP ports.
    grpcBase = LoopBench.freePortBlock(8);
    httpBase = grpcBase + 4;
    started = true;
    script(startArgs());
    reasoner = channel(grpcBase);
    weaver = channel(grpcBase + 2);
    trainer = channel(grpcBase + 3);
  }

  private String[] startArgs() {
    return new String[] {"start", "--model", s.model().toString(), "--memory", s.memory().toString(), "--log", bootstrap,
        "--store", s.work().resolve("store").toString()};
  }

  @Override
  public Answer generate(String question, int maxNewTokens) {
    GenerateRequest request = GenerateRequest.newBuilder()
        .setChat(ChatMessages.newBuilder().addMessages(ChatMessage.newBuilder().setRole("user").setContent(question)))
        .setMaxNewTokens(maxNewTokens).setWantTrace(true).setAdapterName(LoopBench.NAME).build();
    StringBuilder text = new StringBuilder();
    Finished finished = null;
    long version = 0;
    int inference = 0;
    Iterator<GenerateEvent> events = ReasonerGrpc.newBlockingStub(reasoner).withDeadlineAfter(120, TimeUnit.SECONDS)
        .generate(request);
    while (events.hasNext()) {
      GenerateEvent e = events.next();
      switch (e.getEventCase()) {
        case TOKEN -> text.append(e.getToken().getText());
        case MEMORY -> {
          version = Math.max(version, e.getMemory().getWeaverVersion());
          inference += e.getMemory().getKind() == dev.memgen.proto.v1.LatentKind.INFERENCE ? 1 : 0;
        }
        case FINISHED -> finished = e.getFinished();
        default -> { }
      }
    }
    if (finished == null || finished.getTrajectoryId().isEmpty()) {
      throw new IllegalStateException("the reasoner did not record a trajectory (is its experience log on?): " + finished);
    }
    int declined = (int) finished.getMemorySkippedList().stream().filter(k -> k.getReason() == SkipReason.TRIGGER_DECLINED)
        .mapToLong(k -> Math.max(1, k.getCount())).sum();
    boolean degraded = finished.getMemorySkippedList().stream().anyMatch(k -> k.getReason() == SkipReason.WEAVER_UNAVAILABLE
        || k.getReason() == SkipReason.TRIGGER_UNAVAILABLE);
    return new Answer(text.toString(), finished.getTrajectoryId(), version, inference, inference + declined,
        finished.getCompletionTokens(), finished.getLatencyMs(), degraded);
  }

  @Override
  public void feedback(String trajectoryId, double reward, String source) {
    FeedbackIntakeGrpc.newBlockingStub(reasoner).withDeadlineAfter(10, TimeUnit.SECONDS).submit(
        SubmitFeedbackRequest.newBuilder().setTrajectoryId(trajectoryId).setReward(reward).setSource(source).build());
  }

  @Override
  public long servingVersion() {
    return WeaverGrpc.newBlockingStub(weaver).withDeadlineAfter(5, TimeUnit.SECONDS)
        .describe(DescribeRequest.newBuilder().setAdapterName(LoopBench.NAME).build()).getAdapterVersion();
  }

  @Override
  public TrainerView trainer() {
    TrainerStatus st = status();
    return new TrainerView(st.getAdapters(0).getTrajectories().getWaiting(), !st.getActivity().equals("collecting"));
  }

  @Override
  public long trainerLag() {
    return status().getConsumerPositionsList().stream().mapToLong(ConsumerPosition::getLag).sum();
  }

  private TrainerStatus status() {
    return TrainerAdminGrpc.newBlockingStub(trainer).withDeadlineAfter(30, TimeUnit.SECONDS)
        .status(StatusRequest.getDefaultInstance());
  }

  @Override
  public synchronized void close() {
    if (closed || !started) {
      return;
    }
    closed = true;
    for (ManagedChannel c : new ManagedChannel[] {reasoner, weaver, trainer}) {
      if (c != null) {
        c.shutdownNow();
      }
    }
    try {
      script("stop");
    } catch (IOException | InterruptedException e) {
      System.err.println("bench loop: stopping the services failed: " + e.getMessage());
    }
  }

  private static ManagedChannel channel(int port) {
    return ManagedChannelBuilder.forAddress("127.0.0.1", port).usePlaintext().build();
  }

  /**
   * Waits for the trainer to start training a window, SIGKILLs it there, and starts it again. Returns whether the
   * kill came before that window was published (it may not, if the window was very quick).
   */
  @Override
  public boolean killTrainerMidWindow(Duration timeout) throws Exception {
    Path logFile = runDir.resolve("trainer-service.log");
    int windowsBefore = count(logFile, "published " + LoopBench.NAME + " v");
    long deadline = System.nanoTime() + timeout.toNanos();
    while (count(logFile, "training window") <= windowsBefore) {
      if (System.nanoTime() > deadline) {
        throw new IllegalStateException("the trainer never started a window; its log: " + logFile);
      }
      Thread.sleep(20);
    }
    long pid = Long.parseLong(Files.readString(runDir.resolve("trainer-service.pid")).trim());
    ProcessHandle.of(pid).ifPresent(ProcessHandle::destroyForcibly);
    boolean midWindow = count(logFile, "published " + LoopBench.NAME + " v") == windowsBefore;
    progress.accept("killed the trainer (pid " + pid + ") " + (midWindow ? "in the middle of a window" : "after its window")
        + "; restarting it");
    ProcessHandle.of(pid).ifPresent(p -> p.onExit().join());
    Files.move(logFile, runDir.resolve("trainer-service.killed.log"), java.nio.file.StandardCopyOption.REPLACE_EXISTING);
    script(startArgs()); // starts only what is not running: the trainer
    return midWindow;
  }

  @Override
  public void killAndRestart(String service) throws Exception {
    long pid = Long.parseLong(Files.readString(runDir.resolve(service + ".pid")).trim());
    ProcessHandle.of(pid).ifPresent(ProcessHandle::destroyForcibly);
    ProcessHandle.of(pid).ifPresent(p -> p.onExit().join());
    Path log = runDir.resolve(service + ".log");
    if (Files.exists(log)) {
      Files.move(log, runDir.resolve(service + ".killed-" + System.currentTimeMillis() + ".log"));
    }
    script(startArgs()); // starts only what is not running
  }

  private int count(Path file, String needle) throws IOException {
    if (!Files.exists(file)) {
      return 0;
    }
    String text = Files.readString(file, StandardCharsets.UTF_8);
    int n = 0;
    for (int at = text.indexOf(needle); at >= 0; at = text.indexOf(needle, at + 1)) {
      n++;
    }
    return n;
  }

  private void script(String... args) throws IOException, InterruptedException {
    List<String> cmd = new ArrayList<>(List.of("bash", s.root().resolve("deploy/local/services.sh").toString()));
    cmd.addAll(List.of(args));
    ProcessBuilder pb = new ProcessBuilder(cmd).redirectErrorStream(true);
    pb.environment().put("MEMGEN_RUN_DIR", runDir.toString());
    pb.environment().put("MEMGEN_GRPC_PORT_BASE", String.valueOf(grpcBase));
    pb.environment().put("MEMGEN_HTTP_PORT_BASE", String.valueOf(httpBase));
    pb.environment().put("MEMGEN_JAVA_OPTS", String.join(" ", List.of(
        "-Dmemgen.trainer.window=" + s.window(),
        "-Dmemgen.trainer.sft-steps=" + s.sftSteps(),
        "-Dmemgen.trainer.max-window-wait=" + MAX_WINDOW_WAIT,
        "-Dmemgen.trainer.eval-set=" + s.evalSet(),
        "-Dmemgen.trainer.rollouts=" + s.rollouts(),
        "-Dmemgen.trainer.rollout-base-samples=" + s.baseRollouts(),
        "-Dmemgen.trainer.verifier=" + (s.verifier() ? "arithmetic" : "none"),
        "-Dmemgen.trainer.eval-max-new-tokens=" + s.maxNewTokens(),
        "-Dmemgen.trainer.gate-tolerance=" + s.gateTolerance(),
        "-Dmemgen.trainer.max-window=" + s.maxWindow(),
        "-Dmemgen.trainer.trigger-steps=" + s.triggerSteps(),
        "-Dmemgen.trigger.mode=" + s.triggerMode(),
        "-Dmemgen.log.partitions=2",
        "-Dai.djl.offline=true")));
    Process p = pb.start();
    String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
    if (p.waitFor() != 0) {
      String last = out.lines().filter(l -> !l.isBlank()).reduce((a, b) -> b).orElse("no output");
      throw new StartupException("the services did not " + args[0] + " (services.sh: " + last.strip() + "); their logs "
          + "are in " + runDir + " (fix: what the log names, e.g. a port in use or a service that failed to load)", null);
    }
  }
}
