package dev.memgen.reasoner;

import java.util.Arrays;
import java.util.function.Function;

/**
 * Turns a growing list of completion tokens into text pieces whose concatenation is the decoded completion.
 *
 * <p>Byte-level tokens can end inside a multi-byte UTF-8 character, and tokenizers such as SentencePiece render a
 * token differently at the start of a text, so a single token cannot be decoded on its own. As TGI and vLLM do, each
 * step decodes a short window: the tokens since the previous piece plus the ones before them for context, and sends
 * what the window adds past its context. While the new text ends in U+FFFD (an incomplete character) it is held
 * back until a later token completes it, or until the last token, which flushes whatever is left. Each token costs
 * two decodes of a few tokens, not a decode of the whole completion.
 */
public final class IncrementalText {
  private static final char REPLACEMENT = '\uFFFD';

  private final Function<int[], String> decode;
  private int[] tokens = new int[16];
  private int count;
  private int prefixOffset; // the window's context starts here
  private int readOffset; // text up to here has been handed out

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
    String context = decode.apply(Arrays.copyOfRange(tokens, prefixOffset, readOffset));
    String text = decode.apply(Arrays.copyOfRange(tokens, prefixOffset, count));
    if (text.length() <= context.length() || (!last && text.charAt(text.length() - 1) == REPLACEMENT)) {
      return last && text.length() > context.length() ? text.substring(context.length()) : "";
    }
    prefixOffset = readOffset;
    readOffset = count;
    // Decoding more tokens only appends text for the tokenizers here; should a clean-up rule ever rewrite the
    // context, only what lies past it is new.
    return text.substring(context.length());
  }
}
