package dev.memgen.cli;

import java.util.Arrays;

/** Comma-separated token ids, as the commands take and print them. */
final class Ids {
  private Ids() {}

  static int[] parse(String csv) {
    try {
      return Arrays.stream(csv.split(",")).map(String::trim).filter(s -> !s.isEmpty()).mapToInt(Integer::parseInt).toArray();
    } catch (NumberFormatException e) {
      throw new IllegalArgumentException("--ids must be comma-separated integers, got '" + csv + "'");
    }
  }

  static String format(int[] ids) {
    StringBuilder sb = new StringBuilder();
    for (int i = 0; i < ids.length; i++) {
      sb.append(i == 0 ? "" : ",").append(ids[i]);
    }
    return sb.toString();
  }
}
