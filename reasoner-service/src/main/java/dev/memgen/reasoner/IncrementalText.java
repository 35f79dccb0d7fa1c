package dev.memgen.reasoner;

import java.util.Arrays;
import java.util.function.Function;

/**
 * Turns a growing list of completion tokens into text pieces whose concatenation is the decoded completion.
 *
 * <p>Byte-level tokens can end inside a multi-byte UTF-8 character, so a single token cannot be decoded on its
 * own: each step decodes everything generated so far and sends what is new. While the decoded text ends in
 * U+FFFD (an incomplete character), the piece is held back until a later token completes it, or until the last
 * token, which flushes whatever is left.
 */
public final class IncrementalText {
  private static final char REPLACEMENT = '\uFFFD';

  private final Function<int[], String> decode;
  private int[] tokens = new int[16];
  private int count;
  private int sent; // chars of the decoded text already handed out

  /** @param decode ids to text (special tokens skipped); null when there is no tokenizer: every piece is "" */
  public IncrementalText(Function<int[], String> decode) {
    this.decode = decode;
  }

  /** Adds a token and returns the text it completes ("" when none yet). */
  public String add(int token, boolean last) {
    if (count == tokens.length) {
      tokens = Arrays.copyOf(tokens, count * 2);
    }
    tokens[count++] = token;
    if (decode == null) {
      return "";
    }
    String text = decode.apply(Arrays.copyOf(tokens, count));
    int end = text.length();
    if (!last) {
      while (end > sent && text.charAt(end - 1) == REPLACEMENT) {
        end--;
      }
    }
    if (end <= sent) {
      return "";
    }
    // Decoding a longer sequence only appends text for byte-level vocabularies; if a tokenizer's clean-up ever
    // rewrote earlier text, what was sent stays sent and only the tail past it is new.
    String piece = text.substring(sent, end);
    sent = end;
    return piece;
  }
}
