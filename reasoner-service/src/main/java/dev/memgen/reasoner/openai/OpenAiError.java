package dev.memgen.reasoner.openai;

import com.fasterxml.jackson.databind.node.JsonNodeFactory;
import com.fasterxml.jackson.databind.node.ObjectNode;

/** A refused request, sent as OpenAI does: {@code {"error": {"message", "type", "param", "code"}}} with a 4xx status. */
final class OpenAiError extends RuntimeException {
  final int status;
  final String type;
  final String param;
  final String code;

  OpenAiError(int status, String type, String param, String code, String message) {
    super(message, null, false, false);
    this.status = status;
    this.type = type;
    this.param = param;
    this.code = code;
  }

  static OpenAiError invalid(String param, String message) {
    return new OpenAiError(400, "invalid_request_error", param, null, message);
  }

  ObjectNode body() {
    ObjectNode error = JsonNodeFactory.instance.objectNode();
    error.put("message", getMessage());
    error.put("type", type);
    error.put("param", param);
    error.put("code", code);
    ObjectNode out = JsonNodeFactory.instance.objectNode();
    out.set("error", error);
    return out;
  }
}
