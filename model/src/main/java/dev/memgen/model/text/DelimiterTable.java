package dev.memgen.model.text;

import java.util.List;

/**
 * Which token ids end with a delimiter (MemGen inserts inference memory right after such a token), computed once
 * per vocabulary by decoding each token alone, so the decode loop never re-decodes text. A token whose text ends
 * with a delimiter counts ("." and ".\n" both do); special tokens never do.
 */
public final class DelimiterTable {
  public static final List<String> DEFAULT = List.of(",", ".", "\n");

  private final boolean[] isDelimiter;
  private final List<String> delimiters;

  private DelimiterTable(boolean[] isDelimiter, List<String> delimiters) {
    this.isDelimiter = isDelimiter;
    this.delimiters = delimiters;
  }

  public static DelimiterTable build(TextTokenizer tokenizer, int vocabSize, List<String> delimiters) {
    if (delimiters.isEmpty() || delimiters.stream().anyMatch(String::isEmpty)) {
      throw new IllegalArgumentException("delimiters must be non-empty strings, got " + delimiters);
    }
    boolean[] table = new boolean[vocabSize];
    for (int id = 0; id < vocabSize; id++) {
      String text = tokenizer.decode(new int[] {id}, true);
      for (String d : delimiters) {
        if (text.endsWith(d)) {
          table[id] = true;
          break;
        }
      }
    }
    return new DelimiterTable(table, List.copyOf(delimiters));
  }

  /** A table given directly by token id (for vocabularies without a tokenizer, and for tests). */
  public static DelimiterTable ofTokenIds(int vocabSize, java.util.function.IntPredicate isDelimiter) {
    boolean[] table = new boolean[vocabSize];
    for (int id = 0; id < vocabSize; id++) {
      table[id] = isDelimiter.test(id);
    }
    return new DelimiterTable(table, List.of());
  }

  public boolean isDelimiter(int token) {
    return token >= 0 && token < isDelimiter.length && isDelimiter[token];
  }

  public List<String> delimiters() {
    return delimiters;
  }

  /** How many token ids end with a delimiter. */
  public int count() {
    int n = 0;
    for (boolean b : isDelimiter) {
      n += b ? 1 : 0;
    }
    return n;
  }
}
