package dev.memgen.reasoner.openai;

import com.fasterxml.jackson.databind.JsonNode;
import dev.memgen.model.text.ChatTemplate;
import dev.memgen.proto.v1.GenerateRequest;
import dev.memgen.proto.v1.SamplingParams;
import java.util.ArrayList;
import java.util.List;
import java.util.Optional;

/**
 * An OpenAI chat or text completion request, checked field by field and turned into the reasoner's own
 * {@link GenerateRequest}, so that both APIs share one mapping and one set of limits. A field that is wrong is named
 * in the {@link OpenAiError} (the {@code param} OpenAI clients show).
 */
record OpenAiRequest(String model, GenerateRequest generate, Optional<Integer> maxTokens, List<String> stop,
    boolean stream, boolean includeUsage) {
  private static final int MAX_STOPS = 4;

  /** {@code POST /v1/chat/completions}. */
  static OpenAiRequest chat(JsonNode body) {
    JsonNode messages = body.get("messages");
    if (messages == null || !messages.isArray() || messages.isEmpty()) {
      throw OpenAiError.invalid("messages", "messages must be a non-empty array of {role, content}");
    }
    List<ChatTemplate.Message> turns = new ArrayList<>();
    for (int i = 0; i < messages.size(); i++) {
      turns.add(message(messages.get(i), "messages[" + i + "]"));
    }
    return common(body, GenerateRequest.newBuilder().setText(ChatTemplate.render(turns, true)), false);
  }

  /** {@code POST /v1/completions}: the prompt as is, no chat template. */
  static OpenAiRequest completion(JsonNode body) {
    JsonNode prompt = body.get("prompt");
    if (prompt != null && prompt.isArray() && prompt.size() == 1 && prompt.get(0).isTextual()) {
      prompt = prompt.get(0);
    }
    if (prompt == null || !prompt.isTextual() || prompt.asText().isEmpty()) {
      throw OpenAiError.invalid("prompt", "prompt must be a non-empty string (one prompt per request)");
    }
    if (body.hasNonNull("suffix")) {
      throw OpenAiError.invalid("suffix", "suffix (insertion) is not supported");
    }
    return common(body, GenerateRequest.newBuilder().setText(prompt.asText()), true);
  }

  private static OpenAiRequest common(JsonNode body, GenerateRequest.Builder g, boolean completion) {
    JsonNode model = body.get("model");
    if (model == null || !model.isTextual() || model.asText().isEmpty()) {
      throw OpenAiError.invalid("model", "model is required (GET /v1/models lists them)");
    }
    JsonNode n = body.get("n");
    if (n != null && !n.isNull() && !(n.isIntegralNumber() && n.asInt() == 1)) {
      throw OpenAiError.invalid("n", "only n = 1 is supported");
    }
    Optional<Integer> maxTokens = integer(body, "max_completion_tokens").or(() -> integer(body, "max_tokens"));
    String maxField = body.hasNonNull("max_completion_tokens") ? "max_completion_tokens" : "max_tokens";
    if (maxTokens.isPresent() && maxTokens.get() < 1) {
      throw OpenAiError.invalid(maxField, maxField + " must be >= 1, got " + maxTokens.get());
    }
    if (completion && maxTokens.isEmpty()) {
      maxTokens = Optional.of(16); // the completions API's default
    }
    maxTokens.ifPresent(g::setMaxNewTokens);
    double temperature = number(body, "temperature", 1.0);
    if (!(temperature >= 0 && temperature <= 2)) {
      throw OpenAiError.invalid("temperature", "temperature must be between 0 and 2, got " + temperature);
    }
    double topP = number(body, "top_p", 1.0);
    if (!(topP > 0 && topP <= 1)) {
      throw OpenAiError.invalid("top_p", "top_p must be in (0, 1], got " + topP);
    }
    SamplingParams.Builder sampling = SamplingParams.newBuilder().setTemperature((float) temperature).setTopP((float) topP);
    JsonNode seed = body.get("seed");
    if (seed != null && !seed.isNull()) {
      if (!seed.isIntegralNumber() || !seed.canConvertToLong()) {
        throw OpenAiError.invalid("seed", "seed must be an integer");
      }
      sampling.setSeed(seed.asLong());
    }
    g.setSampling(sampling);
    List<String> stop = stops(body.get("stop"));
    boolean stream = bool(body, "stream", false);
    JsonNode options = body.get("stream_options");
    boolean includeUsage = options != null && options.isObject() && bool(options, "include_usage", false);
    JsonNode ext = body.get("memgen"); // the MemGen extension: {"memory": bool, "session_id": "..."}
    if (ext != null && !ext.isNull()) {
      if (!ext.isObject()) {
        throw OpenAiError.invalid("memgen", "memgen must be an object {memory, session_id}");
      }
      if (ext.has("memory")) {
        g.setMemoryEnabled(bool(ext, "memory", true));
      }
      JsonNode session = ext.get("session_id");
      if (session != null && !session.isNull()) {
        if (!session.isTextual() || session.asText().length() > 128) {
          throw OpenAiError.invalid("memgen.session_id", "memgen.session_id must be a string of at most 128 characters");
        }
        g.setSessionId(session.asText());
      }
    }
    return new OpenAiRequest(model.asText(), g.build(), maxTokens, stop, stream, includeUsage);
  }

  /**
   * One chat message in ChatML. Tool calls and tool results follow Qwen2.5's template: an assistant's calls as
   * {@code <tool_call>} blocks, a tool's result as a user turn in {@code <tool_response>}.
   */
  private static ChatTemplate.Message message(JsonNode m, String field) {
    if (m == null || !m.isObject()) {
      throw OpenAiError.invalid(field, field + " must be an object {role, content}");
    }
    JsonNode roleNode = m.get("role");
    String role = roleNode == null || !roleNode.isTextual() ? "" : roleNode.asText();
    String content = content(m.get("content"), field + ".content");
    return switch (role) {
      case "system", "developer" -> new ChatTemplate.Message("system", content);
      case "user" -> new ChatTemplate.Message("user", content);
      case "assistant" -> {
        StringBuilder text = new StringBuilder(content);
        JsonNode calls = m.get("tool_calls");
        if (calls != null && calls.isArray()) {
          for (int i = 0; i < calls.size(); i++) {
            JsonNode fn = calls.get(i).path("function");
            if (!fn.path("name").isTextual()) {
              throw OpenAiError.invalid(field + ".tool_calls[" + i + "].function.name", "a tool call needs function.name");
            }
            text.append(text.length() == 0 ? "" : "\n").append("<tool_call>\n{\"name\": ")
                .append(fn.get("name").toString()).append(", \"arguments\": ").append(fn.path("arguments").asText("{}"))
                .append("}\n</tool_call>");
          }
        }
        yield new ChatTemplate.Message("assistant", text.toString());
      }
      case "tool" -> new ChatTemplate.Message("user", "<tool_response>\n" + content + "\n</tool_response>");
      default -> throw OpenAiError.invalid(field + ".role", field + ".role must be system, developer, user, assistant or tool"
          + (role.isEmpty() ? "" : ", got '" + role + "'"));
    };
  }

  /** A string, null (an assistant turn of tool calls only), or an array of text parts. */
  private static String content(JsonNode c, String field) {
    if (c == null || c.isNull()) {
      return "";
    }
    if (c.isTextual()) {
      return c.asText();
    }
    if (c.isArray()) {
      StringBuilder out = new StringBuilder();
      for (int i = 0; i < c.size(); i++) {
        JsonNode part = c.get(i);
        if (!"text".equals(part.path("type").asText()) || !part.path("text").isTextual()) {
          throw OpenAiError.invalid(field + "[" + i + "]", "only text content parts {type: text, text} are supported");
        }
        out.append(part.get("text").asText());
      }
      return out.toString();
    }
    throw OpenAiError.invalid(field, field + " must be a string or an array of text parts");
  }

  private static List<String> stops(JsonNode stop) {
    if (stop == null || stop.isNull()) {
      return List.of();
    }
    List<String> out = new ArrayList<>();
    if (stop.isTextual()) {
      out.add(stop.asText());
    } else if (stop.isArray() && stop.size() <= MAX_STOPS) {
      for (JsonNode s : stop) {
        if (!s.isTextual()) {
          throw OpenAiError.invalid("stop", "stop must be a string or an array of up to 4 strings");
        }
        out.add(s.asText());
      }
    } else {
      throw OpenAiError.invalid("stop", "stop must be a string or an array of up to 4 strings");
    }
    if (out.stream().anyMatch(String::isEmpty)) {
      throw OpenAiError.invalid("stop", "stop strings must not be empty");
    }
    return List.copyOf(out);
  }

  private static Optional<Integer> integer(JsonNode body, String field) {
    JsonNode v = body.get(field);
    if (v == null || v.isNull()) {
      return Optional.empty();
    }
    if (!v.isIntegralNumber() || !v.canConvertToInt()) {
      throw OpenAiError.invalid(field, field + " must be an integer, got " + v);
    }
    return Optional.of(v.asInt());
  }

  private static double number(JsonNode body, String field, double otherwise) {
    JsonNode v = body.get(field);
    if (v == null || v.isNull()) {
      return otherwise;
    }
    if (!v.isNumber()) {
      throw OpenAiError.invalid(field, field + " must be a number, got " + v);
    }
    return v.asDouble();
  }

  private static boolean bool(JsonNode body, String field, boolean otherwise) {
    JsonNode v = body.get(field);
    if (v == null || v.isNull()) {
      return otherwise;
    }
    if (!v.isBoolean()) {
      throw OpenAiError.invalid(field, field + " must be true or false, got " + v);
    }
    return v.asBoolean();
  }
}
