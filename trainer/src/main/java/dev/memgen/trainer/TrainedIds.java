package dev.memgen.trainer;

import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.time.Duration;
import java.time.Instant;
import java.util.Map;
import java.util.TreeMap;
import java.util.UUID;
import java.util.regex.Pattern;

/**
 * The trajectory ids trained in published versions, for deduplication by id: the reasoner's spool delivers at least
 * once across a crash, so a trajectory may reach the log twice, in the same window or in windows days apart.
 *
 * <p>Bounded by time, not by count: ids are kept for {@code horizon} after the version that trained them was
 * published (by default the trajectories topic's retention, 7 days, after which the original record is gone from the
 * log too), in one segment per day, the oldest dropped as it passes the horizon. An id is kept as 128 bits: a UUID's
 * own bits (what the reasoner writes), or the first 128 bits of the SHA-256 of any other string (a false match needs a
 * 128-bit collision), in open-addressing tables of two {@code long}s per slot at most half full — 32 bytes of heap per
 * trained trajectory or less, so a trainer that trains a million trajectories a day holds about 224 MB for 7 days.
 */
final class TrainedIds {
  private static final Pattern UUID_TEXT =
      Pattern.compile("[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}");
  private static final long DAY_SECONDS = Duration.ofDays(1).toSeconds();

  private final Duration horizon;
  private final TreeMap<Long, Table> byDay = new TreeMap<>(); // day of the publishing version -> its ids

  TrainedIds(Duration horizon) {
    this.horizon = horizon;
  }

  /** Records {@code id} as trained by a version published at {@code publishedAt}; old segments are dropped. */
  void add(String id, Instant publishedAt) {
    if (publishedAt.isBefore(Instant.now().minus(horizon)) || contains(id)) {
      return;
    }
    long[] key = key(id);
    byDay.computeIfAbsent(publishedAt.getEpochSecond() / DAY_SECONDS, d -> new Table()).add(key[0], key[1]);
    evict();
  }

  boolean contains(String id) {
    long[] key = key(id);
    for (Table t : byDay.values()) {
      if (t.contains(key[0], key[1])) {
        return true;
      }
    }
    return false;
  }

  long size() {
    return byDay.values().stream().mapToLong(t -> t.size).sum();
  }

  private void evict() {
    long oldestKept = Instant.now().minus(horizon).getEpochSecond() / DAY_SECONDS;
    for (Map.Entry<Long, Table> e; (e = byDay.firstEntry()) != null && e.getKey() < oldestKept; ) {
      byDay.remove(e.getKey());
    }
  }

  static long[] key(String id) {
    if (id.length() == 36 && UUID_TEXT.matcher(id).matches()) {
      UUID u = UUID.fromString(id);
      return new long[] {u.getMostSignificantBits(), u.getLeastSignificantBits()};
    }
    try {
      ByteBuffer h = ByteBuffer.wrap(MessageDigest.getInstance("SHA-256").digest(id.getBytes(StandardCharsets.UTF_8)));
      return new long[] {h.getLong(), h.getLong()};
    } catch (NoSuchAlgorithmException e) {
      throw new IllegalStateException(e);
    }
  }

  /** A set of 128-bit keys: linear probing over two parallel arrays; (0, 0) marks an empty slot, so it is kept apart. */
  private static final class Table {
    long[] hi = new long[16];
    long[] lo = new long[16];
    long size;
    boolean hasZero;

    boolean contains(long h, long l) {
      if (h == 0 && l == 0) {
        return hasZero;
      }
      int mask = hi.length - 1;
      for (int i = slot(h, l, mask); ; i = (i + 1) & mask) {
        if (hi[i] == h && lo[i] == l) {
          return true;
        }
        if (hi[i] == 0 && lo[i] == 0) {
          return false;
        }
      }
    }

    void add(long h, long l) {
      if (h == 0 && l == 0) {
        size += hasZero ? 0 : 1;
        hasZero = true;
        return;
      }
      if (2 * (size + 1) > hi.length) {
        grow();
      }
      if (insert(hi, lo, h, l)) {
        size++;
      }
    }

    private void grow() {
      long[] h2 = new long[hi.length * 2];
      long[] l2 = new long[lo.length * 2];
      for (int i = 0; i < hi.length; i++) {
        if (hi[i] != 0 || lo[i] != 0) {
          insert(h2, l2, hi[i], lo[i]);
        }
      }
      hi = h2;
      lo = l2;
    }

    private static boolean insert(long[] hs, long[] ls, long h, long l) {
      int mask = hs.length - 1;
      for (int i = slot(h, l, mask); ; i = (i + 1) & mask) {
        if (hs[i] == h && ls[i] == l) {
          return false;
        }
        if (hs[i] == 0 && ls[i] == 0) {
          hs[i] = h;
          ls[i] = l;
          return true;
        }
      }
    }

    private static int slot(long h, long l, int mask) {
      long x = h * 0x9E3779B97F4A7C15L ^ l;
      x ^= x >>> 32;
      return (int) x & mask;
    }
  }
}
