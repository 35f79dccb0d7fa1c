package dev.memgen.model.train;

import dev.memgen.model.text.ChatTemplate;
import dev.memgen.model.text.TextTokenizer;
import java.util.Arrays;

/**
 * A training example as the reasoner reads it: the chat prompt up to and including the generation prompt
 * ({@code <|im_start|>assistant\n}), and the answer the model should produce, ending with {@code <|im_end|>}.
 */
public record TokenizedExample(int[] prompt, int[] answer) {
  public TokenizedExample {
    if (prompt.length == 0 || answer.length == 0) {
      throw new IllegalArgumentException("an example needs a prompt and an answer, got " + prompt.length + " and "
          + answer.length + " tokens");
    }
  }

  /** {@code prompt} is the conversation so far, already rendered with the generation prompt (see {@link ChatTemplate}). */
  public static TokenizedExample of(TextTokenizer tokenizer, String renderedPrompt, String answer) {
    int end = tokenizer.tokenId(ChatTemplate.IM_END);
    if (end < 0) {
      throw new IllegalArgumentException("the tokenizer has no single " + ChatTemplate.IM_END + " token");
    }
    int[] a = tokenizer.encode(answer);
    int[] withEnd = Arrays.copyOf(a, a.length + 1);
    withEnd[a.length] = end;
    return new TokenizedExample(tokenizer.encode(renderedPrompt), withEnd);
  }

  public int length() {
    return prompt.length + answer.length;
  }
}
