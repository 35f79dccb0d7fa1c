package dev.memgen.model.text;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.util.ArrayList;
import java.util.List;

/**
 * A byte-level BPE {@code tokenizer.json} with no merges: ids 0-255 are the bytes (spelled with GPT-2's
 * byte-to-unicode table, like every byte-level BPE), then the ChatML special tokens. Any text encodes, one
 * token per byte, which is what a tiny model trained on synthetic tasks wants.
 */
public final class ByteLevelVocabulary {
  public static final List<String> SPECIAL_TOKENS =
      List.of(ChatTemplate.END_OF_TEXT, ChatTemplate.IM_START, ChatTemplate.IM_END);
  /** Ids of the special tokens, right after the 256 bytes. */
  public static final int END_OF_TEXT_ID = 256;
  public static final int IM_START_ID = 257;
  public static final int IM_END_ID = 258;
  /** The smallest vocabulary that holds every byte and every special token. */
  public static final int MIN_SIZE = 259;
  /** Up to this size, ids past the special tokens are named reserved tokens (as Qwen pads its vocabulary). */
  private static final int MAX_NAMED = 4096;

  private ByteLevelVocabulary() {}

  /** GPT-2's reversible map from bytes to printable unicode characters. */
  static char[] byteToUnicode() {
    char[] map = new char[256];
    boolean[] printable = new boolean[256];
    for (int b = '!'; b <= '~'; b++) printable[b] = true;
    for (int b = 0xA1; b <= 0xAC; b++) printable[b] = true;
    for (int b = 0xAE; b <= 0xFF; b++) printable[b] = true;
    int next = 0;
    for (int b = 0; b < 256; b++) {
      map[b] = printable[b] ? (char) b : (char) (256 + next++);
    }
    return map;
  }

  /** The tokenizer.json text for a model with {@code vocabSize} embedding rows. */
  public static String tokenizerJson(int vocabSize) {
    if (vocabSize < MIN_SIZE) {
      throw new IllegalArgumentException("vocab_size " + vocabSize + " < " + MIN_SIZE + " (256 bytes + 3 special tokens)");
    }
    ObjectMapper json = new ObjectMapper();
    ObjectNode root = json.createObjectNode();
    root.put("version", "1.0");
    root.putNull("truncation");
    root.putNull("padding");
    ArrayNode added = root.putArray("added_tokens");
    List<String> specials = new ArrayList<>(SPECIAL_TOKENS);
    for (int id = MIN_SIZE; id < Math.min(vocabSize, MAX_NAMED); id++) {
      specials.add("<|reserved_" + (id - MIN_SIZE) + "|>");
    }
    for (int i = 0; i < specials.size(); i++) {
      ObjectNode t = added.addObject();
      t.put("id", 256 + i);
      t.put("content", specials.get(i));
      t.put("single_word", false);
      t.put("lstrip", false);
      t.put("rstrip", false);
      t.put("normalized", false);
      t.put("special", true);
    }
    root.putNull("normalizer");
    root.set("pre_tokenizer", byteLevel(json));
    root.set("post_processor", byteLevel(json));
    root.set("decoder", byteLevel(json));
    ObjectNode model = root.putObject("model");
    model.put("type", "BPE");
    model.putNull("dropout");
    model.putNull("unk_token");
    model.putNull("continuing_subword_prefix");
    model.putNull("end_of_word_suffix");
    model.put("fuse_unk", false);
    model.put("byte_fallback", false);
    model.put("ignore_merges", false);
    ObjectNode vocab = model.putObject("vocab");
    char[] map = byteToUnicode();
    for (int b = 0; b < 256; b++) {
      vocab.put(String.valueOf(map[b]), b);
    }
    model.putArray("merges");
    return root.toPrettyString();
  }

  private static ObjectNode byteLevel(ObjectMapper json) {
    ObjectNode n = json.createObjectNode();
    n.put("type", "ByteLevel");
    n.put("add_prefix_space", false);
    n.put("trim_offsets", true);
    n.put("use_regex", true);
    return n;
  }
}
