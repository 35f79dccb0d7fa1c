package dev.memgen.reasoner;

import dev.memgen.model.generate.Generator;
import dev.memgen.model.generate.SamplingParams;
import dev.memgen.model.text.ChatTemplate;
import dev.memgen.model.text.TextTokenizer;
import dev.memgen.proto.v1.ChatMessage;
import dev.memgen.proto.v1.GenerateRequest;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import java.security.SecureRandom;
import java.util.ArrayList;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Set;
import java.util.UUID;

/**
 * Turns a {@link GenerateRequest} into a {@link Generator.Request}, or into a gRPC status naming the field at
 * fault: INVALID_ARGUMENT for malformed input, FAILED_PRECONDITION for a text or chat prompt when the checkpoint
 * has no tokenizer, RESOURCE_EXHAUSTED for a prompt that fills the context. Everything is checked here, before
 * anything reaches the native engine.
 */
public final class GenerateRequestMapper {
  private static final SecureRandom SEEDS = new SecureRandom();

  private final int vocabSize;
  private final int contextLength;
  private final TextTokenizer tokenizer; // null: token-id prompts only
  private final Set<Integer> baseStopTokens;
  private final int defaultMaxNewTokens;

  /** A request ready to decode, with what the service needs to report on it. */
  public record Plan(Generator.Request request, String sessionId, boolean memoryRequested) {}

  public GenerateRequestMapper(int vocabSize, int contextLength, TextTokenizer tokenizer, Set<Integer> baseStopTokens,
      int defaultMaxNewTokens) {
    this.vocabSize = vocabSize;
    this.contextLength = contextLength;
    this.tokenizer = tokenizer;
    this.baseStopTokens = Set.copyOf(baseStopTokens);
    this.defaultMaxNewTokens = defaultMaxNewTokens;
  }

  /** @throws StatusRuntimeException with the status the reasoner.proto contract gives for the fault */
  public Plan map(GenerateRequest r) {
    int[] prompt = prompt(r);
    if (prompt.length >= contextLength) {
      throw status(Status.RESOURCE_EXHAUSTED, "prompt: " + prompt.length + " tokens leave no room in the context of "
          + contextLength + " positions");
    }
    if (r.getMaxNewTokens() < 0) {
      throw invalid("max_new_tokens must be >= 0 (0 = server default " + defaultMaxNewTokens + "), got "
          + r.getMaxNewTokens());
    }
    int maxNew = r.getMaxNewTokens() == 0 ? defaultMaxNewTokens : r.getMaxNewTokens();
    // The context limit ends a generation like max_new_tokens does (FinishReason LENGTH).
    maxNew = Math.min(maxNew, contextLength - prompt.length);

    Set<Integer> stops = new LinkedHashSet<>(baseStopTokens);
    for (int i = 0; i < r.getStopTokenIdsCount(); i++) {
      int id = r.getStopTokenIds(i);
      if (id < 0 || id >= vocabSize) {
        throw invalid("stop_token_ids[" + i + "]: token id " + id + " is outside the vocabulary [0, " + vocabSize + ")");
      }
      stops.add(id);
    }

    SamplingParams sampling = sampling(r);
    String session = r.getSessionId().isEmpty() ? UUID.randomUUID().toString() : r.getSessionId();
    boolean memory = !r.hasMemoryEnabled() || r.getMemoryEnabled();
    return new Plan(new Generator.Request(prompt, maxNew, sampling, Set.copyOf(stops)), session, memory);
  }

  private int[] prompt(GenerateRequest r) {
    switch (r.getPromptCase()) {
      case TEXT -> {
        // reasoner.proto: text is tokenized as is, no chat template (clients wanting ChatML send `chat`).
        if (r.getText().isEmpty()) {
          throw invalid("prompt.text is empty");
        }
        return encode("prompt.text", r.getText());
      }
      case TOKEN_IDS -> {
        List<Integer> ids = r.getTokenIds().getIdsList();
        if (ids.isEmpty()) {
          throw invalid("prompt.token_ids.ids is empty");
        }
        int[] out = new int[ids.size()];
        for (int i = 0; i < out.length; i++) {
          int id = ids.get(i);
          if (id < 0 || id >= vocabSize) {
            throw invalid("prompt.token_ids.ids[" + i + "]: token id " + id + " is outside the vocabulary [0, "
                + vocabSize + ")");
          }
          out[i] = id;
        }
        return out;
      }
      case CHAT -> {
        List<ChatMessage> messages = r.getChat().getMessagesList();
        if (messages.isEmpty()) {
          throw invalid("prompt.chat.messages is empty");
        }
        List<ChatTemplate.Message> turns = new ArrayList<>();
        for (int i = 0; i < messages.size(); i++) {
          if (messages.get(i).getRole().isEmpty()) {
            throw invalid("prompt.chat.messages[" + i + "].role is empty");
          }
          turns.add(new ChatTemplate.Message(messages.get(i).getRole(), messages.get(i).getContent()));
        }
        return encode("prompt.chat", ChatTemplate.render(turns, true));
      }
      default -> throw invalid("prompt: exactly one of text, token_ids or chat must be set");
    }
  }

  private int[] encode(String field, String text) {
    if (tokenizer == null) {
      throw status(Status.FAILED_PRECONDITION, field + ": the checkpoint has no tokenizer.json, so only "
          + "prompt.token_ids prompts can be served");
    }
    int[] ids = tokenizer.encode(text);
    if (ids.length == 0) {
      throw invalid(field + " encodes to no tokens");
    }
    for (int i = 0; i < ids.length; i++) {
      if (ids[i] < 0 || ids[i] >= vocabSize) { // a tokenizer.json larger than the model's embedding table
        throw status(Status.FAILED_PRECONDITION, field + ": the tokenizer produced id " + ids[i]
            + ", outside the model's vocabulary [0, " + vocabSize + ")");
      }
    }
    return ids;
  }

  private static SamplingParams sampling(GenerateRequest r) {
    if (!r.hasSampling()) {
      return SamplingParams.GREEDY;
    }
    dev.memgen.proto.v1.SamplingParams s = r.getSampling();
    double temperature = s.getTemperature();
    if (!(temperature >= 0) || Double.isInfinite(temperature)) {
      throw invalid("sampling.temperature must be a finite number >= 0 (0 = greedy), got " + s.getTemperature());
    }
    if (s.getTopK() < 0) {
      throw invalid("sampling.top_k must be >= 0 (0 = no limit), got " + s.getTopK());
    }
    double topP = s.getTopP() == 0f ? 1.0 : s.getTopP();
    if (!(topP > 0 && topP <= 1)) {
      throw invalid("sampling.top_p must be in (0, 1] (0 = unset = 1), got " + s.getTopP());
    }
    long seed = s.hasSeed() ? s.getSeed() : SEEDS.nextLong();
    try {
      return new SamplingParams(temperature, s.getTopK(), topP, seed);
    } catch (IllegalArgumentException e) {
      throw invalid("sampling: " + e.getMessage());
    }
  }

  static StatusRuntimeException invalid(String message) {
    return status(Status.INVALID_ARGUMENT, message);
  }

  private static StatusRuntimeException status(Status status, String message) {
    return status.withDescription(message).asRuntimeException();
  }
}
