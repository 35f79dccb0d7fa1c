package dev.memgen.log.store;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.EnumMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.TreeMap;

/**
 * What a published version did with the trajectory records in its range, one entry per record: the account that says,
 * by trajectory id, what was trained. Stored as a blob of the store ({@code blobs/sha256/<hash>}; stores written
 * before that keep it at {@code adapters/<name>/<version>.ledger.jsonl}), its sha256 in the record, so the
 * announcement's one hash pins it too; one JSON object per line:
 * {@code {"source": "memgen.trajectories-0@17", "id": "…", "outcome": "trained", "detail": "reward 1.0"}}.
 *
 * <p>Every record of the version's {@code trained_on} ranges has exactly one entry with an outcome other than
 * {@link Outcome#CARRIED} in this ledger or (when carried) in a later one, except records of other adapters, which are
 * only counted ({@code otherAdapters}): with many adapters on one topic, each trainer would otherwise list every other
 * adapter's traffic.
 */
public record Ledger(List<Entry> entries, long otherAdapters) {
  private static final ObjectMapper JSON = new ObjectMapper();

  /** What became of one record. */
  public enum Outcome {
    /** Taught the version: an SFT target (its reward reached the trainer's threshold) or a GRPO prompt. */
    TRAINED,
    /** Rewarded below the SFT threshold with nothing else to learn from it: judged, not trained. */
    LOW_REWARD,
    /** Still waiting for a reward (or its window's candidate was refused): open, decided in a later version. */
    CARRIED,
    /** Its trajectory id was already trained, or already waiting: not trained again. */
    DUPLICATE,
    /** Did not decode or validate (the reason is in its dead letter and in {@code detail}). */
    DEAD_LETTERED,
    /** A valid trajectory this adapter cannot learn from: memory off, cancelled or failed, nothing generated. */
    SKIPPED,
    /** Never rewarded within the trainer's reward horizon. */
    EXPIRED;

    public String json() {
      return name().toLowerCase(Locale.ROOT);
    }

    static Outcome of(String json) {
      return valueOf(json.toUpperCase(Locale.ROOT));
    }
  }

  /** One record's outcome; {@code trajectoryId} is "" for a record that did not decode. */
  public record Entry(String source, String trajectoryId, Outcome outcome, String detail) {}

  public static final Ledger EMPTY = new Ledger(List.of(), 0);

  public Ledger {
    entries = List.copyOf(entries);
  }

  /** Entries per outcome (every outcome present, zero or not), plus {@code other_adapters}: the record's summary. */
  public Map<String, Long> counts() {
    Map<Outcome, Long> by = new EnumMap<>(Outcome.class);
    for (Outcome o : Outcome.values()) {
      by.put(o, 0L);
    }
    entries.forEach(e -> by.merge(e.outcome(), 1L, Long::sum));
    Map<String, Long> out = new TreeMap<>();
    by.forEach((o, n) -> out.put(o.json(), n));
    out.put("other_adapters", otherAdapters);
    return out;
  }

  /** The trajectory ids with {@code outcome}, in ledger order. */
  public List<String> ids(Outcome outcome) {
    return entries.stream().filter(e -> e.outcome() == outcome).map(Entry::trajectoryId).toList();
  }

  /** The entries with {@code outcome}. */
  public List<Entry> entries(Outcome outcome) {
    return entries.stream().filter(e -> e.outcome() == outcome).toList();
  }

  byte[] toJsonLines() throws IOException {
    ByteArrayOutputStream out = new ByteArrayOutputStream();
    ObjectNode head = JSON.createObjectNode();
    head.put("other_adapters", otherAdapters);
    out.write(JSON.writeValueAsBytes(head));
    out.write('\n');
    for (Entry e : entries) {
      ObjectNode n = JSON.createObjectNode();
      n.put("source", e.source());
      n.put("id", e.trajectoryId());
      n.put("outcome", e.outcome().json());
      if (!e.detail().isEmpty()) {
        n.put("detail", e.detail());
      }
      out.write(JSON.writeValueAsBytes(n));
      out.write('\n');
    }
    return out.toByteArray();
  }

  static Ledger fromJsonLines(byte[] bytes, String where) throws IOException {
    List<Entry> entries = new ArrayList<>();
    long other = 0;
    int line = 0;
    for (String text : new String(bytes, StandardCharsets.UTF_8).split("\n")) {
      line++;
      if (text.isBlank()) {
        continue;
      }
      try {
        JsonNode n = JSON.readTree(text);
        if (line == 1 && n.has("other_adapters")) {
          other = n.get("other_adapters").asLong();
          continue;
        }
        entries.add(new Entry(n.path("source").asText(), n.path("id").asText(), Outcome.of(n.path("outcome").asText()),
            n.path("detail").asText("")));
      } catch (IOException | IllegalArgumentException e) {
        throw new IOException(where + ":" + line + ": unreadable ledger entry: " + e.getMessage(), e);
      }
    }
    return new Ledger(entries, other);
  }
}
