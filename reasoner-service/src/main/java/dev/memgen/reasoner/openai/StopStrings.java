package dev.memgen.reasoner.openai;

import java.util.List;

/**
 * OpenAI's {@code stop}: the completion ends before the first occurrence of any stop string, which is not returned.
 * Streamed text is held back while it could still be the start of a stop string, so no chunk ever shows part of one.
 */
final class StopStrings {
  private final List<String> stops;
  private final StringBuilder held = new StringBuilder();
  private boolean stopped;

  StopStrings(List<String> stops) {
    this.stops = stops;
  }

  boolean stopped() {
    return stopped;
  }

  /** Adds decoded text and returns what may be shown now ("" while it could be a stop string's start). */
  String add(String text) {
    if (stopped) {
      return "";
    }
    held.append(text);
    int first = -1;
    for (String s : stops) {
      int at = held.indexOf(s);
      if (at >= 0 && (first < 0 || at < first)) {
        first = at;
      }
    }
    if (first >= 0) {
      stopped = true;
      String out = held.substring(0, first);
      held.setLength(0);
      return out;
    }
    int keep = 0; // the longest end of the held text that begins some stop string
    for (String s : stops) {
      for (int n = Math.min(s.length() - 1, held.length()); n > keep; n--) {
        if (held.substring(held.length() - n).equals(s.substring(0, n))) {
          keep = n;
          break;
        }
      }
    }
    String out = held.substring(0, held.length() - keep);
    held.delete(0, held.length() - keep);
    return out;
  }

  /** The text still held when the completion ends without a stop string. */
  String flush() {
    String out = stopped ? "" : held.toString();
    held.setLength(0);
    return out;
  }
}
