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

  public static String generationPrompt() {
    return IM_START + "assistant\n";
  }
}
