package dev.memgen.engine.core;

import dev.memgen.model.KvCache;
import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.Map;

/**
 * The keys and values of recently finished sequences, so that an agent's next turn, which re-sends the conversation
 * so far, prefills only what is new (vLLM's automatic prefix caching, by token-exact longest-prefix match rather
 * than hashed blocks: a few hundred entries scan faster than they hash). Bounded by tokens held, least recently used
 * first out. Only the plain-token part of a sequence is kept: latent rows inserted in a turn are not tokens a later
 * prompt can contain, so an entry ends before the first latent row (with memory on, the prompt latents go in right
 * after the prompt: the prompt is what is kept). Engine thread only.
 */
final class PrefixCache implements AutoCloseable {
  /** A copy of a cached prefix of {@code length} tokens, the caller's to continue and close. */
  record Hit(KvCache cache, int length) {}

  private record Entry(int[] tokens, KvCache cache) {}

  private final int maxTokens;
  private final LinkedHashMap<Long, Entry> entries = new LinkedHashMap<>(16, 0.75f, true); // access order: LRU first
  private long nextId;
  private int held;

  PrefixCache(int maxTokens) {
    this.maxTokens = maxTokens;
  }

  boolean enabled() {
    return maxTokens > 0;
  }

  /** The longest cached prefix of {@code prompt} that leaves at least its last token to compute, or null. */
  Hit lookup(int[] prompt) {
    Entry best = null;
    int bestLength = 0;
    for (Map.Entry<Long, Entry> e : entries.entrySet()) {
      int n = common(e.getValue().tokens, prompt, prompt.length - 1);
      if (n > bestLength) {
        best = e.getValue();
        bestLength = n;
      }
    }
    if (best == null) {
      return null;
    }
    for (Map.Entry<Long, Entry> e : entries.entrySet()) { // touch it: the LinkedHashMap moves it to the back
      if (e.getValue() == best) {
        entries.get(e.getKey());
        break;
      }
    }
    KvCache copy = best.cache.repack(new int[] {0}, prompt.length + 16);
    copy.truncate(bestLength);
    return new Hit(copy, bestLength);
  }

  /** Keeps the plain-token prefix of a sequence that is leaving row {@code s.lane} of {@code batch}. */
  void store(Sequence s, KvCache batch) {
    int[] tokens = s.plainTokens();
    if (tokens.length < 2 || tokens.length > maxTokens) {
      return;
    }
    for (Iterator<Entry> it = entries.values().iterator(); it.hasNext();) {
      Entry e = it.next();
      int n = common(e.tokens, tokens, Integer.MAX_VALUE);
      if (n == tokens.length) {
        return; // already held (as itself or inside a longer entry)
      }
      if (n == e.tokens.length) { // the new one extends it: keep the longer only
        it.remove();
        held -= e.tokens.length;
        e.cache.close();
      }
    }
    KvCache copy = batch.repack(new int[] {s.lane}, tokens.length);
    copy.truncate(tokens.length);
    entries.put(nextId++, new Entry(tokens, copy));
    held += tokens.length;
    for (Iterator<Entry> it = entries.values().iterator(); held > maxTokens && it.hasNext();) {
      Entry e = it.next();
      it.remove();
      held -= e.tokens.length;
      e.cache.close();
    }
  }

  /** How many leading tokens {@code a} and {@code b} share, at most {@code limit}. */
  private static int common(int[] a, int[] b, int limit) {
    int n = Math.min(Math.min(a.length, b.length), limit);
    int i = 0;
    while (i < n && a[i] == b[i]) {
      i++;
    }
    return i;
  }

  @Override
  public void close() {
    entries.values().forEach(e -> e.cache.close());
    entries.clear();
    held = 0;
  }
}
