package dev.memgen.model.generate;

import dev.memgen.model.Weaver;
import dev.memgen.model.memory.InProcessMemory;
import dev.memgen.model.memory.TriggerLink;
import dev.memgen.model.memory.WeaverLink;
import dev.memgen.model.text.DelimiterTable;
import java.util.ArrayList;
import java.util.EnumMap;
import java.util.List;
import java.util.Map;
import java.util.SplittableRandom;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * MemGen's insertion rule for a batch of sequences. Prompt latents go in once, right after the prompt (which ends
 * with the generation prompt {@code <|im_start|>assistant\n}); inference latents go in right after a token that
 * ends with a delimiter, at most {@code maxInferenceAug} times per sequence, when the trigger says so (an inactive
 * trigger always says so). Each sequence has its own weaver and trigger session, fed incrementally: the weaver
 * sees every token and every inserted latent, the trigger sees only tokens. A weaver that reads the reasoner's
 * hidden states rather than its input embeddings gets them with every token, and with each latent block right
 * after the reasoner has computed them. A weaver or trigger that fails is skipped at that point (counted, logged):
 * the sequence goes on without memory there.
 */
public final class MemGenInterleaver implements Generator.Interleaver, AutoCloseable {
  private static final Logger LOG = LoggerFactory.getLogger(MemGenInterleaver.class);

  public enum TriggerMode {
    /** Always invoke (how the weaver is trained in stage 1). */
    INACTIVE,
    /** Invoke when P(invoke) >= threshold. */
    THRESHOLD,
    /** Invoke with probability P(invoke), drawn from a seeded generator. */
    SAMPLE;

    /**
     * The mode named {@code name} ("threshold", "sample" or "inactive").
     *
     * @param setting the flag or property it came from, for the message
     */
    public static TriggerMode parse(String name, String setting) {
      return switch (name) {
        case "threshold" -> THRESHOLD;
        case "sample" -> SAMPLE;
        case "inactive" -> INACTIVE;
        default -> throw new IllegalArgumentException(setting + " must be threshold, sample or inactive, got '" + name + "'");
      };
    }
  }

  public enum Skip { TRIGGER_DECLINED, INSERTION_CAP, TRIGGER_UNAVAILABLE, WEAVER_UNAVAILABLE, CONTEXT_FULL }

  public record Options(boolean promptLatents, int maxInferenceAug, TriggerMode triggerMode, double threshold, long seed) {
    public static Options defaults(int maxInferenceAug) {
      return new Options(true, maxInferenceAug, TriggerMode.THRESHOLD, 0.5, 0);
    }
  }

  /**
   * Latent rows that went into a sequence: at stream {@code position} (= rows before them), after {@code tokenIndex}
   * generated tokens, woven by weaver version {@code weaverVersion}.
   */
  public record Insertion(int position, int tokenIndex, Weaver.Kind kind, int k, float probability, long weaverVersion) {}

  /** A trigger consultation at a delimiter. */
  public record Decision(int position, int tokenIndex, float probability, boolean invoke) {}

  /** Everything memory did in one sequence; {@code triggerVersion}: of the trigger that decided (0 if none did). */
  public record Trace(List<Insertion> insertions, List<Decision> decisions, Map<Skip, Integer> skips, long triggerVersion) {}

  private final DelimiterTable delimiters;
  private final Options options;
  private final Row[] rows;

  private final class Row {
    final WeaverLink.Session weaver;
    final TriggerLink.Session trigger;
    final SplittableRandom random;
    final List<Integer> unseenByWeaver = new ArrayList<>();
    final List<float[]> unseenHidden = new ArrayList<>(); // their hidden states, when the weaver reads them
    boolean awaitingHidden; // latents went in; the weaver takes them once the reasoner's hidden states are known
    final List<Integer> unseenByTrigger = new ArrayList<>(); // token ids, and latent blocks as -k (never a token id)
    final List<Insertion> insertions = new ArrayList<>();
    final List<Decision> decisions = new ArrayList<>();
    final Map<Skip, Integer> skips = new EnumMap<>(Skip.class);
    int position;
    int generated;
    int inferenceInsertions;
    int room; // latent rows the sequence may still take before its last token would pass the context
    long triggerVersion;

    final boolean readsHidden;

    Row(WeaverLink.Session weaver, TriggerLink.Session trigger, long seed) {
      this.weaver = weaver;
      this.readsHidden = weaver.readsHiddenStates();
      this.trigger = trigger;
      this.random = new SplittableRandom(seed);
    }

    void skip(Skip why) {
      skips.merge(why, 1, Integer::sum);
    }

    /** Weaves and accepts latents of {@code kind}, or returns null (counted) if the weaver fails or they do not fit. */
    float[] weave(Weaver.Kind kind, float probability) {
      try {
        if (readsHidden) {
          weaver.appendTokens(drain(unseenByWeaver), concat(unseenHidden));
        } else {
          weaver.appendTokens(drain(unseenByWeaver));
        }
        float[] latents = weaver.weave(kind);
        int k = weaver.k(kind);
        if (k > room) { // woven but not accepted: they never join the weaver's prefix either
          skip(Skip.CONTEXT_FULL);
          return null;
        }
        if (readsHidden) {
          awaitingHidden = true;
        } else {
          weaver.acceptLatents();
        }
        unseenByTrigger.add(-k);
        insertions.add(new Insertion(position, generated, kind, k, probability, weaver.adapterVersion()));
        position += k;
        room -= k;
        return latents;
      } catch (RuntimeException e) {
        LOG.warn("weaver failed; continuing without memory at this point: {}", e.toString());
        LOG.debug("weaver failure", e);
        skip(Skip.WEAVER_UNAVAILABLE);
        return null;
      }
    }
  }

  /**
   * @param weavers one weaver session per sequence of the batch
   * @param triggers one trigger session per sequence (unused, may be null entries, when the trigger is inactive)
   */
  public MemGenInterleaver(List<WeaverLink.Session> weavers, List<TriggerLink.Session> triggers, DelimiterTable delimiters,
      Options options) {
    this.delimiters = delimiters;
    this.options = options;
    this.rows = new Row[weavers.size()];
    for (int b = 0; b < rows.length; b++) {
      rows[b] = new Row(weavers.get(b), triggers.get(b), options.seed() + b);
    }
  }

  /** A loop over {@code rows} fresh sessions of an in-process memory (no trigger sessions when it is inactive). */
  public static MemGenInterleaver inProcess(InProcessMemory memory, int rows, DelimiterTable delimiters, Options options) {
    List<WeaverLink.Session> weavers = new ArrayList<>();
    List<TriggerLink.Session> triggers = new ArrayList<>();
    for (int i = 0; i < rows; i++) {
      weavers.add(memory.newWeaverSession());
      triggers.add(options.triggerMode() == TriggerMode.INACTIVE ? null : memory.newTriggerSession());
    }
    return new MemGenInterleaver(weavers, triggers, delimiters, options);
  }

  @Override
  public boolean wantsHidden() {
    for (Row r : rows) {
      if (r.readsHidden) {
        return true;
      }
    }
    return false;
  }

  @Override
  public float[] afterPrompt(int row, int[] prompt, int room, float[] hidden) {
    Row r = rows[row];
    r.position = prompt.length;
    r.room = room;
    for (int id : prompt) {
      r.unseenByWeaver.add(id);
      r.unseenByTrigger.add(id);
    }
    if (r.readsHidden) {
      r.unseenHidden.add(hidden);
    }
    return options.promptLatents() ? r.weave(Weaver.Kind.PROMPT, Float.NaN) : null;
  }

  @Override
  public float[] afterToken(int row, int token, float[] hidden) {
    Row r = rows[row];
    r.position++;
    r.generated++;
    r.unseenByWeaver.add(token);
    if (r.readsHidden) {
      r.unseenHidden.add(hidden);
    }
    r.unseenByTrigger.add(token);
    if (!delimiters.isDelimiter(token)) {
      return null;
    }
    if (r.inferenceInsertions >= options.maxInferenceAug()) {
      r.skip(Skip.INSERTION_CAP);
      return null;
    }
    float p = Float.NaN;
    if (options.triggerMode() != TriggerMode.INACTIVE) {
      try {
        feed(r.trigger, r.unseenByTrigger);
        p = r.trigger.probability();
        r.triggerVersion = r.trigger.adapterVersion();
      } catch (RuntimeException e) {
        LOG.warn("trigger failed; continuing without memory at this point: {}", e.toString());
        LOG.debug("trigger failure", e);
        r.skip(Skip.TRIGGER_UNAVAILABLE);
        return null;
      }
      boolean invoke = options.triggerMode() == TriggerMode.THRESHOLD ? p >= options.threshold() : r.random.nextDouble() < p;
      r.decisions.add(new Decision(r.position, r.generated, p, invoke));
      if (!invoke) {
        r.skip(Skip.TRIGGER_DECLINED);
        return null;
      }
    }
    float[] latents = r.weave(Weaver.Kind.INFERENCE, p);
    if (latents != null) {
      r.inferenceInsertions++;
    }
    return latents;
  }

  @Override
  public void inserted(int row, float[] hidden) {
    Row r = rows[row];
    if (r.awaitingHidden) {
      r.awaitingHidden = false;
      try {
        r.weaver.acceptLatents(hidden);
      } catch (RuntimeException e) { // a remote weaver only records it; an in-process one cannot fail here
        LOG.warn("weaver failed to take the latents' hidden states: {}", e.toString());
      }
    }
  }

  public Trace trace(int row) {
    Row r = rows[row];
    return new Trace(List.copyOf(r.insertions), List.copyOf(r.decisions), Map.copyOf(r.skips), r.triggerVersion);
  }

  /** Sends the trigger what it has not read, in stream order: runs of tokens, and latent blocks as counts. */
  private static void feed(TriggerLink.Session trigger, List<Integer> unseen) {
    int start = 0;
    for (int i = 0; i <= unseen.size(); i++) {
      if (i == unseen.size() || unseen.get(i) < 0) {
        if (i > start) {
          trigger.appendTokens(unseen.subList(start, i).stream().mapToInt(Integer::intValue).toArray());
        }
        if (i < unseen.size()) {
          trigger.appendLatents(-unseen.get(i));
        }
        start = i + 1;
      }
    }
    unseen.clear();
  }

  private static float[] concat(List<float[]> parts) {
    int n = parts.stream().mapToInt(p -> p.length).sum();
    float[] all = new float[n];
    int at = 0;
    for (float[] p : parts) {
      System.arraycopy(p, 0, all, at, p.length);
      at += p.length;
    }
    parts.clear();
    return all;
  }

  private static int[] drain(List<Integer> pending) {
    int[] ids = pending.stream().mapToInt(Integer::intValue).toArray();
    pending.clear();
    return ids;
  }

  @Override
  public void close() {
    for (Row r : rows) {
      r.weaver.close();
      if (r.trigger != null) {
        r.trigger.close();
      }
    }
  }
}
