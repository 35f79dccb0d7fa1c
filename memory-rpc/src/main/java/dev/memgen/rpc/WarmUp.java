package dev.memgen.rpc;

import dev.memgen.model.Weaver;
import dev.memgen.model.memory.TriggerLink;
import dev.memgen.model.memory.WeaverLink;
import io.grpc.BindableService;
import io.grpc.ManagedChannel;
import io.grpc.Server;
import io.grpc.inprocess.InProcessChannelBuilder;
import io.grpc.inprocess.InProcessServerBuilder;
import java.io.IOException;
import java.time.Duration;
import java.util.SplittableRandom;
import java.util.concurrent.TimeUnit;
import java.util.function.Function;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Synthetic traffic through a weaver or a trigger before real traffic: generations shaped like the reasoner's (a
 * prompt, then a span of tokens and a call at each insertion). A service warms itself up before it serves
 * ({@link #inProcess}: the reasoner's own client over an in-process channel to the service's own handler, so its
 * session code and model run as for real requests, only the socket and the wire format left out); a client can warm
 * up the whole path to a remote service ({@link #weaver}, {@link #trigger} with its remote links), as
 * {@code bench memgen} does.
 *
 * <p>Why: a weaver or trigger gets a few calls per generation, so a fresh JVM runs their request path interpreted
 * for hundreds of calls. Measured on the tiny model (2-core VM, a fresh client decoding 46 tokens between calls):
 * a trigger-service's 46-token Decide took a median 7.7 ms over its first 100 calls, 5.5 ms over the next 100 and
 * 3.4 ms after 500 (1.7 ms in-process, whose path the reasoner's own decoding keeps compiled); after this warm-up
 * the first 100 took 5.7 ms. The rest is the socket path and wire format, which the in-process channel skips, and
 * the client's side: in bench memgen, warming the whole path with 600 calls took a trigger call from 7.8 ms to
 * 4.1–5.1 ms and a weave from 8.6 ms to 4.6–5.3 ms, and 5000 calls took a weave further, from 6.4–7.0 ms to 5.0 ms
 * (each pair side by side, same day). On large models the matrix products dominate, and the budget runs out after
 * a few calls.
 */
public final class WarmUp {
  private static final Logger LOG = LoggerFactory.getLogger(WarmUp.class);
  /** Per call: generous, since one call on a large model on a CPU takes seconds. */
  static final CallDeadline DEADLINE = CallDeadline.of(Duration.ofMinutes(5));

  /**
   * Calls a service's warm-up makes unless told otherwise: where its in-process latency had levelled off (above). The
   * socket path gains for thousands of calls more, which only real traffic (or bench memgen) gives it.
   */
  public static final int DEFAULT_CALLS = 600;

  static final int PROMPT_TOKENS = 32;
  static final int SPAN_TOKENS = 46; // tokens between insertions, as in bench memgen's default density
  static final int INSERTIONS = 10;

  /** What a warm-up did: synthetic sessions and calls (Decides or Weaves) made, in how long. */
  public record Report(int sessions, int calls, Duration took) {}

  /** One synthetic generation's session. */
  private interface Session extends AutoCloseable {
    /**
     * Appends {@code ids} (the prompt when {@code prompt}, else the span since the last insertion) and makes the
     * call a reasoner makes there; returns the latent rows that join the sequence after them.
     */
    int step(int[] ids, boolean prompt, SplittableRandom random);

    @Override
    void close();
  }

  private WarmUp() {}

  /**
   * Warms up a weaver and the path to it: synthetic generations through sessions that {@code open} makes (an
   * in-process weaver, or a remote one: then the client, the transport and the service all run), for at most
   * {@code budget} or {@code maxCalls} weaves. A weaver that reads hidden states is sent random rows. Never throws:
   * a failure ends the warm-up and is logged.
   *
   * @param maxLength rows a session may grow to (the service's limit)
   */
  public static Report weaver(String what, Function<String, WeaverLink.Session> open, int vocabSize, int hiddenSize,
      int maxLength, Duration budget, int maxCalls) {
    return drive(what, vocabSize, maxLength, budget, maxCalls, id -> {
      WeaverLink.Session s = open.apply(id);
      boolean hidden = s.readsHiddenStates();
      return new Session() {
        @Override
        public int step(int[] ids, boolean prompt, SplittableRandom random) {
          Weaver.Kind kind = prompt ? Weaver.Kind.PROMPT : Weaver.Kind.INFERENCE;
          if (hidden) {
            s.appendTokens(ids, rows(random, ids.length, hiddenSize));
          } else {
            s.appendTokens(ids);
          }
          s.weave(kind);
          int k = s.k(kind);
          if (hidden) {
            s.acceptLatents(rows(random, k, hiddenSize));
          } else {
            s.acceptLatents();
          }
          return k;
        }

        @Override
        public void close() {
          s.close();
        }
      };
    });
  }

  /**
   * Warms up a trigger and the path to it, as {@link #weaver} does: at each insertion a Decide, then the latent
   * block ({@code promptK} or {@code inferenceK} rows) as if the weaver had been invoked.
   */
  public static Report trigger(String what, Function<String, TriggerLink.Session> open, int vocabSize, int promptK,
      int inferenceK, int maxLength, Duration budget, int maxCalls) {
    return drive(what, vocabSize, maxLength, budget, maxCalls, id -> {
      TriggerLink.Session s = open.apply(id);
      return new Session() {
        @Override
        public int step(int[] ids, boolean prompt, SplittableRandom random) {
          s.appendTokens(ids);
          s.probability();
          int k = prompt ? promptK : inferenceK;
          s.appendLatents(k);
          return k;
        }

        @Override
        public void close() {
          s.close();
        }
      };
    });
  }

  /**
   * Serves {@code service} on an in-process channel for {@code warmUp}, then waits until its model thread has handled
   * the ends of the synthetic sessions: after this, nothing of the warm-up is left.
   */
  static Report inProcess(String what, BindableService service, ModelThread modelThread,
      Function<ManagedChannel, Report> warmUp) {
    String name = "memgen-warm-up-" + what + "-" + System.identityHashCode(service);
    Server server = null;
    ManagedChannel channel = null;
    try {
      server = InProcessServerBuilder.forName(name).directExecutor().addService(service).build().start();
      channel = InProcessChannelBuilder.forName(name).directExecutor().build();
      return warmUp.apply(channel);
    } catch (IOException | RuntimeException e) { // e.g. the service refused to describe itself
      LOG.warn("{} warm-up did not start: {}", what, e.toString());
      return new Report(0, 0, Duration.ZERO);
    } finally {
      if (channel != null) {
        channel.shutdownNow();
      }
      if (server != null) {
        server.shutdownNow();
        try {
          server.awaitTermination(10, TimeUnit.SECONDS);
        } catch (InterruptedException e) {
          Thread.currentThread().interrupt();
        }
      }
      modelThread.drain();
    }
  }

  /**
   * Runs synthetic generations until {@code budget} has passed (checked before each call, so it may run over by one
   * call) or {@code maxCalls} calls were made. A failure stops the warm-up and is logged.
   */
  private static Report drive(String what, int vocabSize, int maxLength, Duration budget, int maxCalls,
      Function<String, Session> open) {
    long start = System.nanoTime();
    if (budget.isZero() || budget.isNegative() || maxCalls <= 0) {
      return new Report(0, 0, Duration.ZERO);
    }
    long deadline = start + budget.toNanos();
    int sessions = 0;
    int[] calls = {0}; // counted call by call: a failure in a session keeps the ones made before it
    try {
      SplittableRandom random = new SplittableRandom(1);
      while (calls[0] < maxCalls && System.nanoTime() < deadline) {
        int before = calls[0];
        sessions++;
        try (Session s = open.apply("warm-up-" + sessions)) {
          generation(s, random, vocabSize, maxLength, maxCalls, deadline, calls);
        }
        if (calls[0] == before) { // not even the prompt fits the session length
          break;
        }
      }
    } catch (RuntimeException e) {
      LOG.warn("{} warm-up stopped after {} calls: {}", what, calls[0], e.toString());
    }
    Report report = new Report(sessions, calls[0], Duration.ofNanos(System.nanoTime() - start));
    LOG.info("{} warmed up: {} calls in {} synthetic sessions, {} ms", what, report.calls(), report.sessions(),
        report.took().toMillis());
    return report;
  }

  /**
   * One synthetic generation: the prompt, then up to INSERTIONS spans, as far as the session length allows, counting
   * each call in {@code calls[0]} (stops at {@code maxCalls}).
   */
  private static void generation(Session s, SplittableRandom random, int vocabSize, int maxLength, int maxCalls,
      long deadline, int[] calls) {
    int length = 0;
    int latents = 0; // rows the last call added: the next one will likely add as many
    for (int i = 0; i <= INSERTIONS && calls[0] < maxCalls && System.nanoTime() < deadline; i++) {
      int n = i == 0 ? PROMPT_TOKENS : SPAN_TOKENS;
      if (length + n + latents > maxLength) {
        return;
      }
      latents = s.step(tokens(random, n, vocabSize), i == 0, random);
      length += n + latents;
      calls[0]++;
    }
  }

  /** {@code n} random token ids below {@code vocab}. */
  static int[] tokens(SplittableRandom random, int n, int vocab) {
    int[] ids = new int[n];
    for (int i = 0; i < n; i++) {
      ids[i] = random.nextInt(vocab);
    }
    return ids;
  }

  /** {@code n} random rows of width {@code width}, like a reasoner's hidden states. */
  static float[] rows(SplittableRandom random, int n, int width) {
    float[] rows = new float[n * width];
    for (int i = 0; i < rows.length; i++) {
      rows[i] = (float) random.nextGaussian();
    }
    return rows;
  }
}
