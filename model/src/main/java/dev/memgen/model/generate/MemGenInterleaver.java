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
  public record Trace(List<Insertion> insertions, List<Decision> decisions, Map<Skip, Integer> skips, long triggerVersion) {
    /**
     * Whether {@code other} records the same insertions, decisions and skips, with probabilities within
     * {@code tolerance}: a trigger pass batched with other sessions rounds differently in the last bits than the same
     * pass alone (matrix products of another height), so only the decisions, not the float bits, repeat exactly.
     */
    public boolean matches(Trace other, float tolerance) {
      if (insertions.size() != other.insertions.size() || decisions.size() != other.decisions.size()
          || !skips.equals(other.skips) || triggerVersion != other.triggerVersion) {
        return false;
      }
      for (int i = 0; i < insertions.size(); i++) {
        Insertion a = insertions.get(i);
        Insertion b = other.insertions.get(i);
        if (a.position() != b.position() || a.tokenIndex() != b.tokenIndex() || a.kind() != b.kind() || a.k() != b.k()
            || a.weaverVersion() != b.weaverVersion() || !close(a.probability(), b.probability(), tolerance)) {
          return false;
        }
      }
      for (int i = 0; i < decisions.size(); i++) {
        Decision a = decisions.get(i);
        Decision b = other.decisions.get(i);
        if (a.position() != b.position() || a.tokenIndex() != b.tokenIndex() || a.invoke() != b.invoke()
            || !close(a.probability(), b.probability(), tolerance)) {
          return false;
        }
      }
      return true;
    }

    private static boolean close(float a, float b, float tolerance) {
      return Float.isNaN(a) ? Float.isNaN(b) : Math.abs(a - b) <= tolerance;
    }
  }

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

    /** Hands the weaver the rows it has not seen, ready to weave; false (counted) if that failed. */
    boolean readyToWeave() {
      try {
        if (readsHidden) {
          weaver.appendTokens(drain(unseenByWeaver), concat(unseenHidden));
        } else {
          weaver.appendTokens(drain(unseenByWeaver));
        }
        return true;
      } catch (RuntimeException e) {
        weaverFailed(e);
        return false;
      }
    }

    /** Accepts the latents of a weave of {@code kind}, or returns null (counted) if it failed or they do not fit. */
    float[] woven(Weaver.Kind kind, float probability, WeaverLink.Woven w) {
      if (w.error() != null) {
        weaverFailed(w.error());
        return null;
      }
      try {
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
        return w.latents();
      } catch (RuntimeException e) {
        weaverFailed(e);
        return null;
      }
    }

    private void weaverFailed(RuntimeException e) {
      LOG.warn("weaver failed; continuing without memory at this point: {}", e.toString());
      LOG.debug("weaver failure", e);
      skip(Skip.WEAVER_UNAVAILABLE);
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
    return afterPrompts(List.of(new Prompt(this, row, prompt, room, hidden)))[0];
  }

  @Override
  public float[] afterToken(int row, int token, float[] hidden) {
    return afterTokens(List.of(new At(this, row, token, hidden)))[0];
  }

  /** Every MemGen loop is of one family: rows of several loops (the serving engine's requests) are asked together. */
  @Override
  public Object family() {
    return MemGenInterleaver.class;
  }

  @Override
  public float[][] afterPrompts(List<Prompt> prompts) {
    float[][] out = new float[prompts.size()][];
    List<Pending> weaves = new ArrayList<>();
    for (int i = 0; i < prompts.size(); i++) {
      Prompt p = prompts.get(i);
      MemGenInterleaver loop = (MemGenInterleaver) p.memory();
      Row r = loop.rows[p.row()];
      r.position = p.prompt().length;
      r.room = p.room();
      for (int id : p.prompt()) {
        r.unseenByWeaver.add(id);
        r.unseenByTrigger.add(id);
      }
      if (r.readsHidden) {
        r.unseenHidden.add(p.hidden());
      }
      if (loop.options.promptLatents()) {
        weaves.add(new Pending(i, r, Weaver.Kind.PROMPT, Float.NaN));
      }
    }
    weave(weaves, out);
    return out;
  }

  /**
   * The rule at each row's new token, for rows of any MemGen loops at once: every row at a delimiter under its cap
   * asks its trigger, all in one call ({@link TriggerLink#probabilities}); every row whose trigger says so (or whose
   * trigger is inactive) weaves, all in one call ({@link WeaverLink#weaveAll}). Row by row it is the same rule.
   */
  @Override
  public float[][] afterTokens(List<At> steps) {
    float[][] out = new float[steps.size()][];
    List<Pending> consult = new ArrayList<>();
    List<Pending> weaves = new ArrayList<>();
    for (int i = 0; i < steps.size(); i++) {
      At a = steps.get(i);
      MemGenInterleaver loop = (MemGenInterleaver) a.memory();
      Row r = loop.rows[a.row()];
      r.position++;
      r.generated++;
      r.unseenByWeaver.add(a.token());
      if (r.readsHidden) {
        r.unseenHidden.add(a.hidden());
      }
      r.unseenByTrigger.add(a.token());
      if (!loop.delimiters.isDelimiter(a.token())) {
        continue;
      }
      if (r.inferenceInsertions >= loop.options.maxInferenceAug()) {
        r.skip(Skip.INSERTION_CAP);
        continue;
      }
      Pending p = new Pending(i, r, Weaver.Kind.INFERENCE, Float.NaN);
      (loop.options.triggerMode() == TriggerMode.INACTIVE ? weaves : consult).add(p);
    }
    decide(consult, steps, weaves);
    weave(weaves, out);
    for (Pending p : weaves) {
      if (out[p.index()] != null) {
        p.row().inferenceInsertions++;
      }
    }
    return out;
  }

  /** A row that asks its trigger or weaves in this call: entry {@code index} of the call. */
  private record Pending(int index, Row row, Weaver.Kind kind, float probability) {}

  /** Asks the triggers of {@code consult} at once; the rows they send go to {@code weaves}. */
  private static void decide(List<Pending> consult, List<At> steps, List<Pending> weaves) {
    List<Pending> asked = new ArrayList<>();
    for (Pending p : consult) {
      try {
        feed(p.row().trigger, p.row().unseenByTrigger);
        asked.add(p);
      } catch (RuntimeException e) {
        triggerFailed(p.row(), e);
      }
    }
    if (asked.isEmpty()) {
      return;
    }
    List<TriggerLink.Read> reads = TriggerLink.probabilities(asked.stream().map(p -> p.row().trigger).toList());
    for (int j = 0; j < asked.size(); j++) {
      Pending p = asked.get(j);
      Row r = p.row();
      TriggerLink.Read read = reads.get(j);
      if (read.error() != null) {
        triggerFailed(r, read.error());
        continue;
      }
      float prob = read.probability();
      MemGenInterleaver loop = (MemGenInterleaver) steps.get(p.index()).memory();
      r.triggerVersion = r.trigger.adapterVersion();
      boolean invoke = loop.options.triggerMode() == TriggerMode.THRESHOLD ? prob >= loop.options.threshold()
          : r.random.nextDouble() < prob;
      r.decisions.add(new Decision(r.position, r.generated, prob, invoke));
      if (invoke) {
        weaves.add(new Pending(p.index(), r, p.kind(), prob));
      } else {
        r.skip(Skip.TRIGGER_DECLINED);
      }
    }
  }

  private static void triggerFailed(Row r, RuntimeException e) {
    LOG.warn("trigger failed; continuing without memory at this point: {}", e.toString());
    LOG.debug("trigger failure", e);
    r.skip(Skip.TRIGGER_UNAVAILABLE);
  }

  /** Weaves for every row of {@code weaves} at once; each row's accepted latents go to {@code out[index]}. */
  private static void weave(List<Pending> weaves, float[][] out) {
    List<Pending> ready = weaves.stream().filter(p -> p.row().readyToWeave()).toList();
    if (ready.isEmpty()) {
      return;
    }
    List<WeaverLink.Woven> woven = WeaverLink.weaveAll(ready.stream().map(p -> p.row().weaver).toList(),
        ready.stream().map(Pending::kind).toList());
    for (int j = 0; j < ready.size(); j++) {
      Pending p = ready.get(j);
      out[p.index()] = p.row().woven(p.kind(), p.probability(), woven.get(j));
    }
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
