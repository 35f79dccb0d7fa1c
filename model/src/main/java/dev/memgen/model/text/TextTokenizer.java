package dev.memgen.model.text;

import ai.djl.huggingface.tokenizers.Encoding;
import ai.djl.huggingface.tokenizers.HuggingFaceTokenizer;
import dev.memgen.model.checkpoint.CheckpointException;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;

/**
 * A checkpoint's {@code tokenizer.json}, through DJL's binding of Hugging Face tokenizers. Built with
 * truncation and padding off (DJL truncates to 512 tokens by default) and without automatic special tokens:
 * prompts carry their own ChatML markers, which the tokenizer maps to single added tokens.
 */
public final class TextTokenizer implements AutoCloseable {
  private final HuggingFaceTokenizer tokenizer;

  private TextTokenizer(HuggingFaceTokenizer tokenizer) {
    this.tokenizer = tokenizer;
  }

  public static TextTokenizer load(Path checkpointDir) {
    Path file = checkpointDir.resolve("tokenizer.json");
    if (!Files.isRegularFile(file)) {
      throw new CheckpointException(file, null, "missing file (text prompts need the checkpoint's tokenizer; "
          + "pass token ids instead)");
    }
    try {
      return new TextTokenizer(HuggingFaceTokenizer.builder()
          .optTokenizerPath(file)
          .optTruncation(false)
          .optPadding(false)
          .optAddSpecialTokens(false)
          .build());
    } catch (IOException | RuntimeException e) {
      throw new CheckpointException(file, null, "unusable tokenizer: " + e.getMessage(), e);
    }
  }

  public int[] encode(String text) {
    Encoding e = tokenizer.encode(text, false, false);
    long[] ids = e.getIds();
    int[] out = new int[ids.length];
    for (int i = 0; i < ids.length; i++) {
      out[i] = Math.toIntExact(ids[i]);
    }
    return out;
  }

  /** Decodes ids to text; special tokens (ChatML markers, end of text) are dropped when {@code skipSpecial}. */
  public String decode(int[] ids, boolean skipSpecial) {
    long[] l = new long[ids.length];
    for (int i = 0; i < ids.length; i++) {
      l[i] = ids[i];
    }
    return tokenizer.decode(l, skipSpecial);
  }

  /** The id of a single token (e.g. "<|im_end|>"), or -1 if the vocabulary does not have it as one token. */
  public int tokenId(String token) {
    long[] ids = tokenizer.encode(token, false, false).getIds();
    return ids.length == 1 ? Math.toIntExact(ids[0]) : -1;
  }

  @Override
  public void close() {
    tokenizer.close();
  }
}
