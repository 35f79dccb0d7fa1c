package dev.memgen.model.data;

/**
 * Scoring for math answers, as MemGen's reference does: the first {@code \boxed{...}} in the output (braces nested
 * inside it are kept), normalised, compared exactly with the expected answer.
 */
public final class BoxedAnswer {
  private static final String BOXED = "\\boxed{";

  private BoxedAnswer() {}

  /** The contents of the first {@code \boxed{...}}, or null when there is none or it never closes. */
  public static String extract(String text) {
    int start = text.indexOf(BOXED);
    if (start < 0) {
      return null;
    }
    int depth = 1;
    for (int i = start + BOXED.length(); i < text.length(); i++) {
      char c = text.charAt(i);
      if (c == '{') {
        depth++;
      } else if (c == '}' && --depth == 0) {
        return text.substring(start + BOXED.length(), i);
      }
    }
    return null;
  }

  /** Whitespace removed, a leading '+' and leading zeros of an integer dropped, a trailing '.' dropped. */
  public static String normalize(String answer) {
    String s = answer.replaceAll("\\s+", "");
    if (s.endsWith(".")) {
      s = s.substring(0, s.length() - 1);
    }
    if (s.startsWith("+")) {
      s = s.substring(1);
    }
    if (s.matches("-?0*\\d+")) {
      boolean negative = s.startsWith("-");
      String digits = s.substring(negative ? 1 : 0).replaceFirst("^0+(?=\\d)", "");
      s = (negative && !digits.equals("0") ? "-" : "") + digits;
    }
    return s;
  }

  /** Whether {@code output}'s first boxed answer equals {@code expected}, both normalised. */
  public static boolean matches(String output, String expected) {
    String got = extract(output);
    return got != null && normalize(got).equals(normalize(expected));
  }
}
