package dev.memgen.model.text;

import java.util.List;

/**
 * ChatML as Qwen writes it, with no default system prompt:
 * {@code <|im_start|>{role}\n{content}<|im_end|>\n}, and the generation prompt {@code <|im_start|>assistant\n}.
 * Prompt latent memory goes right after the generation prompt.
 */
public final class ChatTemplate {
  public static final String IM_START = "<|im_start|>";
  public static final String IM_END = "<|im_end|>";
  public static final String END_OF_TEXT = "<|endoftext|>";

  public record Message(String role, String content) {}

  private ChatTemplate() {}

  public static String render(List<Message> messages, boolean addGenerationPrompt) {
    StringBuilder sb = new StringBuilder();
    for (Message m : messages) {
      sb.append(IM_START).append(m.role()).append('\n').append(m.content()).append(IM_END).append('\n');
    }
    if (addGenerationPrompt) {
      sb.append(generationPrompt());
    }
    return sb.toString();
  }

  /** A single user turn followed by the generation prompt. */
  public static String userPrompt(String content) {
    return render(List.of(new Message("user", content)), true);
  }

  /**
   * The ids that end a chat answer: the model's end-of-sequence ids and, when the tokenizer has them inside the
   * vocabulary, {@code <|im_end|>} and {@code <|endoftext|>}.
   */
  public static java.util.Set<Integer> stopTokens(dev.memgen.model.ModelConfig config, TextTokenizer tokenizer) {
    java.util.Set<Integer> stops = new java.util.LinkedHashSet<>(config.eosTokenIds());
    if (tokenizer != null) {
      for (String special : new String[] {IM_END, END_OF_TEXT}) {
        int id = tokenizer.tokenId(special);
        if (id >= 0 && id < config.vocabSize()) {
          stops.add(id);
        }
      }
    }
    return stops;
  }

  public static String generationPrompt() {
    return IM_START + "assistant\n";
  }
}
