package dev.memgen.cli;

import dev.memgen.log.AdapterLog;
import dev.memgen.log.ExperienceLog;
import dev.memgen.log.Topics;
import dev.memgen.log.broker.KafkaBroker;
import dev.memgen.log.store.AdapterStore;
import dev.memgen.log.store.Ledger;
import dev.memgen.model.data.ArithmeticTasks;
import dev.memgen.model.data.BoxedAnswer;
import dev.memgen.model.generate.MemGenInterleaver;
import dev.memgen.proto.v1.AdapterComponent;
import dev.memgen.proto.v1.AdapterPublished;
import dev.memgen.proto.v1.Trajectory;
import dev.memgen.trainer.ContinualTrainer;
import dev.memgen.trainer.HeldOut;
import dev.memgen.trainer.Verifier;
import java.io.IOException;
import java.net.ServerSocket;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.TimeUnit;
import java.util.function.Consumer;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.common.TopicPartition;

/**
 * The continual-learning loop for real, measured: a Kafka broker, and the reasoner, trigger, weaver and trainer either
 * as four processes ({@code deploy/local/services.sh}: traffic to the reasoner over gRPC, feedback through its
 * FeedbackIntake) or in this JVM ({@link LoopLayout}). Optionally the trainer is killed with SIGKILL in the middle of a window and restarted. At the end
 * every published trajectory is looked up by id in the published versions' ledgers: the accounting that says whether
 * anything was lost or trained twice. {@code memgen bench loop} prints the result; the deploy module's
 * loop test asserts it.
 */
public final class LoopBench {
  /**
   * @param root the project checkout (holds deploy/local/services.sh and the built services)
   * @param reward "accept": every answer gets reward 1 (exercises the plumbing on any model); "grade": the answer's
   *     boxed result is checked against the task and sent as feedback (a real reward, for a trained base);
   *     "verifier": no feedback at all, the trainer's verifier scores what it can (production's usual case)
   * @param traffic the domains requests alternate between, e.g. A and B, or A and C (see {@link ArithmeticTasks})
   * @param rollouts re-rollouts per window prompt for learning from rewards, with the serving memory (the trainer's
   *     {@code memgen.trainer.rollouts}; 0: off)
   * @param baseRollouts more re-rollouts per window prompt from the frozen base alone ({@code rollout-base-samples})
   * @param clients agents sending requests at once (each waits for its answer before the next)
   * @param gatePerDomain held-out problems per traffic domain in the trainer's gate
   * @param gateTolerance points a candidate may score below the serving version and still be published
   * @param maxWindow the most rewarded trajectories one window trains (0: no cap)
   * @param triggerSteps trigger RL updates per window, the weaver frozen (0: the trigger is not trained)
   * @param triggerMode how the reasoner uses the trigger: inactive, threshold or sample
   * @param inProcess the reasoner, memory and trainer in this JVM; false: the four services as processes
   */
  public record Settings(Path root, Path model, Path memory, Path work, int requests, int window, int sftSteps,
      int maxNewTokens, String reward, boolean crashTrainer, Duration timeout, List<ArithmeticTasks.Domain> traffic,
      int rollouts, int baseRollouts, int clients, int gatePerDomain, double gateTolerance, int maxWindow,
      int triggerSteps, String triggerMode, boolean inProcess) {
    public Settings {
      if (!List.of("accept", "grade", "verifier").contains(reward)) {
        throw new IllegalArgumentException("unknown reward '" + reward + "' (accept, grade or verifier)");
      }
      if (traffic.isEmpty() || clients < 1 || requests < 1 || rollouts < 0 || baseRollouts < 0 || gatePerDomain < 1
          || maxWindow < 0 || triggerSteps < 0) {
        throw new IllegalArgumentException("need traffic, >= 1 client and request, rollouts, max window and trigger steps "
            + ">= 0, a gate set >= 1");
      }
      MemGenInterleaver.TriggerMode.parse(triggerMode, "trigger mode");
      if (crashTrainer && inProcess) {
        throw new IllegalArgumentException("killing the trainer needs it in a process of its own, not in this JVM");
      }
    }

    /** What {@code bench loop} ran before it took these settings: A and B one after another, feedback for each. */
    public Settings(Path root, Path model, Path memory, Path work, int requests, int window, int sftSteps, int maxNewTokens,
        String reward, boolean crashTrainer, Duration timeout) {
      this(root, model, memory, work, requests, window, sftSteps, maxNewTokens, reward, crashTrainer, timeout,
          List.of(ArithmeticTasks.Domain.A, ArithmeticTasks.Domain.B), 0, 0, 1, 16, reward.equals("grade") ? 1.0 : 100, 0,
          0, "threshold", false);
    }

    /** The trainer's verifier: the task suite's, when the fleet leaves rewards to it or rollouts need one. */
    boolean verifier() {
      return reward.equals("verifier") || rollouts + baseRollouts > 0 || triggerSteps > 0;
    }

    String evalSet() {
      return "arithmetic:" + gatePerDomain + ":" + String.join(",", traffic.stream().map(Enum::name).toList());
    }
  }

  /** One served request, as the fleet saw it: its domain, whether the verifier accepts it, what served it. */
  public record Served(ArithmeticTasks.Domain domain, boolean right, long weaverVersion, int inferenceInsertions,
      int consultations, int completionTokens, long latencyMs) {}

  /** What a run measured. Times in seconds; versions count the announcements after the initial one. */
  public record Result(long trajectoriesPublished, long trajectoriesTrained, long trajectoriesJudged,
      long trajectoriesPending, long trajectoriesWaiting, long trajectoriesLost, long trajectoriesDuplicated, long trajectoriesDeduplicated,
      int adapterVersions, double ingestTps, double trajectoryToServingMedianS,
      double trajectoryToServingP90S, long latestVersion, long lastRequestWeaverVersion, boolean trainerKilledMidWindow,
      long trainerLag, double seconds, List<Double> trajectoryToServingS, List<Served> served,
      List<AdapterPublished> announced) {}

  static final String NAME = "default";
  /** Accounting stops waiting once nothing has changed for this long after the traffic. */
  private static final Duration SETTLE = Duration.ofSeconds(30);

  private final Settings s;
  private final Consumer<String> progress;
  private final Map<Long, Long> firstServedMillis = new ConcurrentHashMap<>(); // version -> when Describe first showed it

  public LoopBench(Settings settings, Consumer<String> progress) {
    this.s = settings;
    this.progress = progress;
  }

  /**
   * A soak: the fleet sends for {@code length} instead of a count of requests (cycling through the traffic), a failed
   * request is counted instead of ending the run, and with {@code faults} the broker is SIGKILLed and restarted, then
   * the weaver, then the trainer, at a fifth, two fifths and three fifths of the way (or as soon as the previous
   * restart is done); the fleet goes on until the last restart is 5 s behind it, however long the restarts take.
   */
  public record Soak(Duration length, boolean faults) {}

  /** What a soak measured: requests sent, failed, served without memory for a lost service, the faults, the loop. */
  public record SoakResult(long requests, long errors, long degraded, List<String> faults, double trafficSeconds,
      Result loop) {}

  /** How long the soak's broker stays dead before it is restarted. */
  private static final Duration BROKER_OUTAGE = Duration.ofSeconds(5);
  /** How long the fleet goes on after the last fault's restart. */
  private static final Duration AFTER_LAST_FAULT = Duration.ofSeconds(5);
  /** How long a soak agent waits after a failed request before its next, as a client backs off. */
  private static final Duration AGENT_BACKOFF = Duration.ofMillis(200);

  private Soak soak; // null: a count of requests
  private final java.util.concurrent.atomic.AtomicLong errors = new java.util.concurrent.atomic.AtomicLong();
  private final java.util.concurrent.atomic.AtomicLong degraded = new java.util.concurrent.atomic.AtomicLong();
  private final List<String> faultLog = new java.util.concurrent.CopyOnWriteArrayList<>();
  private volatile double trafficSeconds;

  public SoakResult soak(Soak soak) throws Exception {
    if (s.inProcess() && soak.faults()) {
      throw new IllegalArgumentException("faults need the services as processes, not in this JVM");
    }
    this.soak = soak;
    Result r = run();
    return new SoakResult(served.size() + errors.get(), errors.get(), degraded.get(), List.copyOf(faultLog), trafficSeconds,
        r);
  }

  /** The soak's fault schedule, on its own thread; each fault and what became of it goes to the fault log. */
  private Thread injectFaults(KafkaBroker broker, LoopLayout layout, long start) {
    Thread t = new Thread(() -> {
      long length = soak.length().toNanos();
      try {
        at(start + length / 5);
        fault("SIGKILL the broker", broker::kill);
        Thread.sleep(BROKER_OUTAGE.toMillis()); // the outage itself: the spool holds what the reasoner records meanwhile
        fault("restart the broker", broker::restart);
        at(start + 2 * length / 5);
        fault("SIGKILL and restart weaver-service", () -> layout.killAndRestart("weaver-service"));
        at(start + 3 * length / 5);
        fault("SIGKILL and restart trainer-service", () -> layout.killAndRestart("trainer-service"));
        Thread.sleep(AFTER_LAST_FAULT.toMillis()); // traffic after the last restart: the recovery is measured too
      } catch (InterruptedException e) {
        faultLog.add("fault injection stopped early");
      }
    }, "memgen-soak-faults");
    t.setDaemon(true);
    t.start();
    return t;
  }

  private interface Fault {
    void inject() throws Exception;
  }

  private void fault(String what, Fault f) throws InterruptedException {
    long t0 = System.nanoTime();
    try {
      f.inject();
      faultLog.add(String.format("%s (%.1f s)", what, (System.nanoTime() - t0) / 1e9));
    } catch (InterruptedException e) {
      throw e;
    } catch (Exception e) {
      faultLog.add(what + " FAILED: " + e.getMessage());
    }
    progress.accept("fault: " + faultLog.get(faultLog.size() - 1));
  }

  private static void at(long nanoTime) throws InterruptedException {
    long wait = nanoTime - System.nanoTime();
    if (wait > 0) {
      TimeUnit.NANOSECONDS.sleep(wait);
    }
  }

  public Result run() throws Exception {
    long t0 = System.nanoTime();
    Files.createDirectories(s.work());
    KafkaBroker broker;
    try {
      broker = KafkaBroker.start(s.work().resolve("kafka"), 0);
    } catch (IOException e) {
      String why = e instanceof java.nio.file.FileSystemException f // its message is only the path
          ? "cannot use " + f.getFile() + " (" + f.getClass().getSimpleName() + ")"
          : String.valueOf(e.getMessage()).lines().findFirst().orElse("");
      throw new StartupException("the Kafka broker did not start in " + s.work().resolve("kafka") + ": " + why
          + " (fix: free or remove that directory; if the kafka-broker module is missing, build with ./mvnw -B install "
          + "-DskipTests)", e);
    }
    String bootstrap = broker.bootstrapServers();
    Path runDir = s.work().resolve("run");
    LoopLayout layout = s.inProcess() ? new InProcessLayout(s, bootstrap, trainerSettings(bootstrap), progress)
        : new ProcessLayout(s, runDir, bootstrap, progress);
    // SIGTERM or Ctrl-C mid-run: the finally below never runs, so a hook stops the components (the broker's watchdog
    // would stop the broker with this JVM anyway).
    Thread onSignal = new Thread(() -> {
      try {
        layout.close();
      } catch (RuntimeException e) {
        System.err.println("bench loop: stopping the loop failed: " + e.getMessage());
      }
      broker.stop();
    }, "memgen-bench-loop-stop");
    Runtime.getRuntime().addShutdownHook(onSignal);
    try {
      try (ExperienceLog log = new ExperienceLog(bootstrap)) {
        log.ensureTopics(2);
      }
      progress.accept("broker on " + bootstrap + "; starting " + (s.inProcess()
          ? "the reasoner, its memory and the trainer in this JVM" : "the four services (logs in " + runDir + ")"));
      layout.start();
      awaitVersion(layout, 1, "the trainer to store and announce the initial memory, and the weaver to load it");
      // The weaver may have served the starting directory under its own manifest version before v1 came: serving
      // times count from here.
      firstServedMillis.clear();
      firstServedMillis.put(1L, System.currentTimeMillis());
      Thread prober = probe(layout);
      boolean killed = false;
      List<ArithmeticTasks.Example> tasks = traffic(s.traffic(), s.requests());
      int killAt = s.crashTrainer() ? Math.max(1, s.requests() / 2) : -1;
      java.util.concurrent.atomic.AtomicInteger next = new java.util.concurrent.atomic.AtomicInteger();
      java.util.concurrent.CountDownLatch killPoint = new java.util.concurrent.CountDownLatch(Math.max(0, killAt));
      java.util.concurrent.ExecutorService fleet = java.util.concurrent.Executors.newFixedThreadPool(s.clients());
      List<java.util.concurrent.Future<?>> agents = new ArrayList<>();
      long trafficStart = System.nanoTime();
      long trafficEnd = soak == null ? Long.MAX_VALUE : trafficStart + soak.length().toNanos();
      Thread faults = soak != null && soak.faults() ? injectFaults(broker, layout, trafficStart) : null;
      for (int c = 0; c < s.clients(); c++) {
        agents.add(fleet.submit(() -> {
          for (int i = next.getAndIncrement(); soak == null ? i < tasks.size()
              : System.nanoTime() < trafficEnd || (faults != null && faults.isAlive()); i = next.getAndIncrement()) {
            if (soak == null) {
              serve(layout, tasks.get(i));
            } else {
              try {
                serve(layout, tasks.get(i % tasks.size()));
              } catch (RuntimeException e) { // a soak counts failures and goes on, as an agent would retry
                long n = errors.incrementAndGet();
                if (n <= 5 || n % 50 == 0) {
                  progress.accept("request failed (" + n + " so far): " + e.getMessage());
                }
                Thread.sleep(AGENT_BACKOFF.toMillis());
              }
            }
            killPoint.countDown();
          }
          return null;
        }));
      }
      fleet.shutdown();
      try {
        if (killAt > 0 && awaitKillPoint(killPoint, fleet)) {
          killed = layout.killTrainerMidWindow(s.timeout());
        }
        for (java.util.concurrent.Future<?> f : agents) {
          f.get();
        }
      } catch (java.util.concurrent.ExecutionException e) {
        throw new IllegalStateException("an agent's request failed: " + e.getCause().getMessage(), e.getCause());
      } finally {
        fleet.shutdownNow();
      }
      trafficSeconds = (System.nanoTime() - trafficStart) / 1e9;
      if (faults != null) {
        faults.join(TimeUnit.MINUTES.toMillis(5)); // a restart still going on when the traffic stops is waited for
      }
      progress.accept("traffic done; waiting until every trajectory is in a published version");
      Accounting a = awaitAccounted(bootstrap, layout, served.size());
      long latest = a.announced.isEmpty() ? 1 : a.announced.get(a.announced.size() - 1).getVersion();
      awaitVersion(layout, latest, "the weaver to serve v" + latest);
      prober.interrupt();
      LoopLayout.Answer last = layout.generate(tasks.get(0).prompt(), s.maxNewTokens());
      long lag = trainerLag(layout);
      return new Result(a.published, a.trained, a.judged, a.pending, a.waiting, a.lost, a.duplicated, a.deduplicated,
          a.announced.size(), a.ingestTps(),
          a.toServing(firstServedMillis, 0.5), a.toServing(firstServedMillis, 0.9), latest, last.weaverVersion(), killed,
          lag, (System.nanoTime() - t0) / 1e9, a.delays(firstServedMillis), List.copyOf(served), List.copyOf(a.announced));
    } finally {
      if (removed(onSignal)) { // else the JVM is shutting down and the hook stops everything
        layout.close();
        broker.stop();
      }
    }
  }

  /**
   * The trainer's settings for the in-process layout: what {@link ProcessLayout} passes trainer-service as
   * {@code -Dmemgen.trainer.*} options, with trainer-service's defaults for the rest (its application.properties).
   */
  private ContinualTrainer.Settings trainerSettings(String bootstrap) throws IOException {
    return new ContinualTrainer.Settings(bootstrap, NAME, s.model(), s.memory(), s.work().resolve("store"),
        s.work().resolve("run").resolve("trainer-work"), HeldOut.parse(s.evalSet()), s.gateTolerance(), s.window(),
        ProcessLayout.MAX_WINDOW_WAIT, Duration.ofSeconds(10), 1.0, s.sftSteps(), 8, 3e-3, 0,
        s.verifier() ? Optional.of(Verifier.named("arithmetic")) : Optional.empty(), s.maxNewTokens(), 2, 0,
        new ContinualTrainer.Intake(Duration.ofHours(1), 100_000, Duration.ofDays(7), 0, s.maxWindow()),
        new ContinualTrainer.Rollouts(s.rollouts(), s.baseRollouts(), 1.0, 2),
        new ContinualTrainer.TriggerTraining(s.triggerSteps(), 4, 4, 1e-4, 0.1, 0.5));
  }

  /** The trainer's lag, waiting for a trainer that is (re)starting (a soak may have just restarted it) to answer. */
  private long trainerLag(LoopLayout layout) throws InterruptedException {
    long deadline = System.nanoTime() + s.timeout().toNanos();
    while (true) {
      try {
        return layout.trainerLag();
      } catch (io.grpc.StatusRuntimeException e) {
        if (e.getStatus().getCode() != io.grpc.Status.Code.UNAVAILABLE || System.nanoTime() > deadline) {
          throw e;
        }
        Thread.sleep(500);
      }
    }
  }

  private static boolean removed(Thread hook) {
    try {
      return Runtime.getRuntime().removeShutdownHook(hook);
    } catch (IllegalStateException shutdownInProgress) {
      return false;
    }
  }

  /**
   * Waits until {@code killAt} requests are served (true), or the fleet stops short of it (false: an agent failed, and
   * its future says why). The timeout only rechecks the fleet; the latch releases the moment the point is reached.
   */
  private static boolean awaitKillPoint(java.util.concurrent.CountDownLatch killPoint,
      java.util.concurrent.ExecutorService fleet) throws InterruptedException {
    while (!killPoint.await(1, TimeUnit.SECONDS)) {
      if (fleet.isTerminated()) {
        return false;
      }
    }
    return true;
  }

  /**
   * The {@code domains} in turn (the production mix: old work and new), the same for every run; seeds no held-out set
   * uses.
   */
  static List<ArithmeticTasks.Example> traffic(List<ArithmeticTasks.Domain> domains, int n) {
    List<List<ArithmeticTasks.Example>> each = new ArrayList<>();
    for (ArithmeticTasks.Domain d : domains) {
      each.add(ArithmeticTasks.generate(d, (n + domains.size() - 1) / domains.size(), 2, 20261123 + d.ordinal()));
    }
    List<ArithmeticTasks.Example> out = new ArrayList<>();
    for (int i = 0; i < n; i++) {
      out.add(each.get(i % domains.size()).get(i / domains.size()));
    }
    return out;
  }

  private final List<Served> served = java.util.Collections.synchronizedList(new ArrayList<>());

  /** One agent's turn: the request, its feedback (unless rewards are left to the trainer's verifier), the tally. */
  private void serve(LoopLayout layout, ArithmeticTasks.Example task) {
    LoopLayout.Answer r = layout.generate(task.prompt(), s.maxNewTokens());
    if (r.degraded()) {
      degraded.incrementAndGet();
    }
    boolean right = BoxedAnswer.matches(r.text(), task.boxed());
    if (!s.reward().equals("verifier")) {
      double reward = s.reward().equals("grade") ? (right ? 1 : 0) : 1;
      layout.feedback(r.trajectoryId(), reward, s.reward().equals("grade") ? "bench-grader" : "bench-accept-all");
    }
    served.add(new Served(task.domain(), right, r.weaverVersion(), r.inferenceInsertions(), r.consultations(),
        r.completionTokens(), r.latencyMs()));
    int n = served.size();
    if (n % 8 == 0 || n == s.requests()) {
      progress.accept(statusLine(n));
    }
  }

  /** requests, accuracy per served version and domain, invocation rate, tokens/s: the fleet's view. */
  private String statusLine(int n) {
    List<Served> copy;
    synchronized (served) {
      copy = List.copyOf(served);
    }
    Map<Long, Map<ArithmeticTasks.Domain, int[]>> byVersion = new java.util.TreeMap<>();
    long tokens = 0;
    long ms = 0;
    Map<ArithmeticTasks.Domain, int[]> invocations = new java.util.EnumMap<>(ArithmeticTasks.Domain.class); // insertions, consultations
    for (Served x : copy) {
      int[] c = byVersion.computeIfAbsent(x.weaverVersion(), k -> new java.util.EnumMap<>(ArithmeticTasks.Domain.class))
          .computeIfAbsent(x.domain(), k -> new int[2]);
      c[0] += x.right() ? 1 : 0;
      c[1]++;
      tokens += x.completionTokens();
      ms += x.latencyMs();
      int[] inv = invocations.computeIfAbsent(x.domain(), k -> new int[2]);
      inv[0] += x.inferenceInsertions();
      inv[1] += x.consultations();
    }
    StringBuilder b = new StringBuilder();
    b.append(n).append(soak == null ? "/" + s.requests() : "").append(" requests");
    byVersion.forEach((v, m) -> {
      b.append(" | v").append(v);
      m.forEach((d, c) -> b.append(' ').append(d).append(' ').append(Math.round(100.0 * c[0] / c[1])).append("% of ").append(c[1]));
    });
    b.append(" | invocation rate");
    invocations.forEach((d, c) -> b.append(String.format(" %s %.2f", d, c[1] == 0 ? 0.0 : (double) c[0] / c[1])));
    b.append(String.format(" | %.0f tok/s per agent", ms == 0 ? 0.0 : tokens / (ms / 1000.0)));
    return b.toString();
  }

  /**
   * Trajectories the trainer's consumer group has not committed, from TrainerAdmin.Status (the last request's own
   * trajectory, which no window holds yet, counts).
   */


  /** Polls the serving weaver version every 100 ms, noting when each version is first served. */
  private Thread probe(LoopLayout layout) {
    Thread t = new Thread(() -> {
      while (!Thread.currentThread().isInterrupted()) {
        try {
          firstServedMillis.putIfAbsent(layout.servingVersion(), System.currentTimeMillis());
          Thread.sleep(100);
        } catch (InterruptedException e) {
          return;
        } catch (RuntimeException e) {
          // the weaver is restarting or busy; try again
        }
      }
    }, "memgen-bench-probe");
    t.setDaemon(true);
    t.start();
    return t;
  }

  private void awaitVersion(LoopLayout layout, long version, String what) throws InterruptedException {
    long deadline = System.nanoTime() + s.timeout().toNanos();
    while (true) {
      try {
        long v = layout.servingVersion();
        firstServedMillis.putIfAbsent(v, System.currentTimeMillis());
        if (v == version) {
          return;
        }
      } catch (RuntimeException e) {
        // not up yet
      }
      if (System.nanoTime() > deadline) {
        throw new IllegalStateException("timed out after " + s.timeout() + " waiting for " + what);
      }
      Thread.sleep(100);
    }
  }

  /**
   * The published trajectories set against what the versions' ledgers (in the adapter store) say of each id: trained
   * (taught a published version), judged (rewarded too low to teach), otherwise decided (skipped, dead-lettered,
   * expired); pending (after the last published version's range: the trainer's open window, of which {@code waiting}
   * wait for a reward or for a candidate the gate accepts); or lost (inside a published range with no outcome: a bug).
   */
  private static final class Accounting {
    long published;
    long trained;
    long judged;
    long otherwiseDecided;
    long pending;
    long waiting;
    long lost;
    long duplicated; // ids trained into more than one version
    long deduplicated; // records the trainer recognised as copies of an id it had trained or held
    boolean trainerBusy; // rolling out, training, evaluating or publishing a window, holding a due one (or restarting)
    final List<AdapterPublished> announced = new ArrayList<>(); // after the initial version, in order
    final Map<String, Long> publishedAtMillis = new HashMap<>(); // trajectory id -> record timestamp
    final Map<String, Long> trainedInto = new HashMap<>(); // trajectory id -> version

    double ingestTps() {
      double seconds = announced.stream().mapToDouble(a -> a.getEvalMetricsOrDefault("window_seconds", 0)).sum();
      return seconds == 0 ? 0 : (trained + judged) / seconds;
    }

    /** The {@code q}-quantile over trained trajectories of (first served with their version) - (published). */
    double toServing(Map<Long, Long> firstServed, double q) {
      return Stats.quantile(delays(firstServed), q);
    }

    /** Per trained trajectory: seconds from its publication to the first moment a version trained on it served. */
    List<Double> delays(Map<Long, Long> firstServed) {
      List<Double> delays = new ArrayList<>();
      trainedInto.forEach((id, v) -> {
        Long served = firstServed.entrySet().stream().filter(e -> e.getKey() >= v).map(Map.Entry::getValue)
            .min(Long::compare).orElse(null);
        if (served != null && publishedAtMillis.containsKey(id)) {
          delays.add((served - publishedAtMillis.get(id)) / 1000.0);
        }
      });
      return delays;
    }

    /** A signature of the state: unchanged for a while, nothing more will happen. */
    String signature() {
      return published + "/" + trained + "/" + judged + "/" + otherwiseDecided + "/" + pending + "/" + waiting + "/"
          + announced.size();
    }
  }

  /**
   * Accounts until every published trajectory is decided, or nothing has changed for {@link #SETTLE} while the trainer
   * sits idle (trajectories that wait for a window the gate refused stay waiting, reported as such: with no more
   * traffic no new rewards come to retrain it, so the bench ends instead of waiting for it), or the timeout.
   */
  private Accounting awaitAccounted(String bootstrap, LoopLayout layout, int requests) throws Exception {
    long deadline = System.nanoTime() + s.timeout().toNanos();
    String last = "";
    long sameSince = System.nanoTime();
    while (true) {
      Accounting a = account(bootstrap, layout);
      // A window in training is a change on its way; so are trajectories in the log the trainer has not read yet (its
      // consumer once took about a minute to fetch them after a window, with a full window's worth there).
      if (!a.signature().equals(last) || a.trainerBusy || a.pending > a.waiting) {
        if (!a.signature().equals(last)) {
          progress.accept(String.format("%d versions published; %d of %d trajectories trained, %d judged, %d waiting for "
              + "the trainer", a.announced.size(), a.trained, a.published, a.judged, a.pending));
        }
        last = a.signature();
        sameSince = System.nanoTime();
      }
      // Every served request records one trajectory, through the reasoner's spool: until all are in the log, wait.
      boolean allLogged = a.published >= requests;
      if ((allLogged && a.pending + a.lost == 0) || System.nanoTime() > deadline
          || System.nanoTime() - sameSince > SETTLE.toNanos()) {
        return a;
      }
      Thread.sleep(1000);
    }
  }

  /** A record on the trajectories topic: its trajectory id (or where it is, if it does not parse) and its time. */
  record PublishedTrajectory(String id, long timestampMillis, String partition, long offset) {}

  /** Every record on the trajectories topic, from the beginning to its end now. */
  static List<PublishedTrajectory> trajectories(String bootstrap) {
    List<PublishedTrajectory> out = new ArrayList<>();
    try (KafkaConsumer<String, byte[]> c = ExperienceLog.consumer(bootstrap, "memgen-bench-accounting", null)) {
      List<TopicPartition> parts = c.partitionsFor(Topics.TRAJECTORIES).stream()
          .map(p -> new TopicPartition(p.topic(), p.partition())).toList();
      c.assign(parts);
      c.seekToBeginning(parts);
      Map<TopicPartition, Long> end = c.endOffsets(parts, Duration.ofSeconds(30));
      while (parts.stream().anyMatch(tp -> c.position(tp) < end.get(tp))) {
        for (ConsumerRecord<String, byte[]> r : c.poll(Duration.ofMillis(500))) {
          Trajectory t = dev.memgen.log.Records.TRAJECTORY.deserializeOrNull(r.value());
          out.add(new PublishedTrajectory(t == null ? "offset:" + r.partition() + "@" + r.offset() : t.getTrajectoryId(),
              r.timestamp(), r.topic() + "-" + r.partition(), r.offset()));
        }
      }
    }
    return out;
  }

  private Accounting account(String bootstrap, LoopLayout layout) throws IOException {
    Accounting a = new Accounting();
    Map<String, PublishedTrajectory> ids = new LinkedHashMap<>(); // every trajectory, by id
    for (PublishedTrajectory t : trajectories(bootstrap)) {
      ids.putIfAbsent(t.id(), t);
      a.publishedAtMillis.put(t.id(), t.timestampMillis());
      a.published++;
    }
    AdapterStore store = AdapterStore.open(s.work().resolve("store"));
    Map<String, Integer> trainedTimes = new HashMap<>();
    java.util.Set<String> judged = new java.util.HashSet<>();
    java.util.Set<String> decided = new java.util.HashSet<>();
    java.util.Set<String> carried = new java.util.HashSet<>(); // carried by a version: still open unless decided later
    for (AdapterPublished p : AdapterLog.readAll(bootstrap, Duration.ofSeconds(30))) {
      if (!p.getAdapterName().equals(NAME) || p.getComponent() != AdapterComponent.WEAVER || p.getVersion() == 1
          || p.getRolledBackFrom() != 0) {
        continue;
      }
      a.announced.add(p);
      for (Ledger.Entry e : store.ledger(NAME, p.getVersion()).entries()) {
        switch (e.outcome()) {
          case TRAINED -> {
            trainedTimes.merge(e.trajectoryId(), 1, Integer::sum);
            a.trainedInto.putIfAbsent(e.trajectoryId(), p.getVersion());
          }
          case LOW_REWARD -> judged.add(e.trajectoryId());
          case DUPLICATE -> a.deduplicated++;
          case CARRIED -> carried.add(e.trajectoryId());
          default -> decided.add(e.trajectoryId());
        }
      }
    }
    long waiting = 0;
    try {
      LoopLayout.TrainerView st = layout.trainer();
      waiting = st.waiting();
      a.trainerBusy = st.busy();
    } catch (RuntimeException e) {
      // the trainer is restarting: it holds nothing then, and what it will hold is not yet decided either
      a.trainerBusy = true;
    }
    Map<String, Long> rangeEnd = store.latest(NAME).map(AdapterStore.Version::offsets).orElse(Map.of());
    for (Map.Entry<String, PublishedTrajectory> r : ids.entrySet()) {
      String id = r.getKey();
      int n = trainedTimes.getOrDefault(id, 0);
      if (n > 0) {
        a.trained++;
        a.duplicated += n > 1 ? 1 : 0;
      } else if (judged.contains(id)) {
        a.judged++;
      } else if (decided.contains(id)) {
        a.otherwiseDecided++;
      } else if (carried.contains(id) || r.getValue().offset() >= rangeEnd.getOrDefault(r.getValue().partition(), 0L)) {
        a.pending++; // carried, or not in a published version's range yet: the open window
      } else {
        a.lost++;
      }
    }
    a.waiting = waiting;
    return a;
  }



  /**
   * The first of {@code n} consecutive free loopback ports, probed by binding. Below Linux's ephemeral range (32768
   * and up), so an outgoing connection's source port cannot take one between the probe and the service binding it,
   * nor a probe of a port nobody listens on connect to itself.
   */
  public static int freePortBlock(int n) throws IOException {
    java.util.Random random = new java.util.Random();
    for (int attempt = 0; attempt < 200; attempt++) {
      int base = 20000 + random.nextInt(32768 - 20000 - n);
      boolean free = true;
      for (int i = 0; i < n && free; i++) {
        try (ServerSocket probe = new ServerSocket(base + i)) {
          probe.setReuseAddress(true);
        } catch (IOException e) {
          free = false;
        }
      }
      if (free) {
        return base;
      }
    }
    throw new IOException("no block of " + n + " free ports found");
  }
}
