package dev.memgen.reasoner.openai;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.JsonNodeFactory;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.memgen.engine.core.EngineCore;
import dev.memgen.engine.core.EngineOverloadedException;
import dev.memgen.model.generate.Generator;
import dev.memgen.model.generate.MemGenInterleaver;
import dev.memgen.model.text.TextTokenizer;
import dev.memgen.proto.v1.GenerateRequest;
import dev.memgen.reasoner.GenerateRequestMapper;
import dev.memgen.reasoner.Generations;
import dev.memgen.reasoner.IncrementalText;
import dev.memgen.rpc.ApiKeys;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import io.vertx.core.Context;
import io.vertx.core.Vertx;
import io.vertx.core.buffer.Buffer;
import io.vertx.core.http.HttpServerResponse;
import io.vertx.ext.web.Router;
import io.vertx.ext.web.RoutingContext;
import io.vertx.ext.web.handler.BodyHandler;
import jakarta.enterprise.context.ApplicationScoped;
import jakarta.enterprise.event.Observes;
import java.nio.ByteBuffer;
import java.nio.charset.CharacterCodingException;
import java.nio.charset.CodingErrorAction;
import java.nio.charset.StandardCharsets;
import java.util.List;
import java.util.Map;
import java.util.UUID;
import java.util.concurrent.CancellationException;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.atomic.AtomicInteger;
import org.eclipse.microprofile.config.inject.ConfigProperty;
import org.jboss.logging.Logger;

/**
 * The OpenAI-compatible HTTP API on reasoner-service: {@code POST /v1/chat/completions} and {@code POST
 * /v1/completions} (whole or streamed as server-sent events) and {@code GET /v1/models}. The model name picks the
 * memory: {@code memgen} is the frozen base alone, {@code memgen:<adapter>} the base with that adapter's memory. A
 * {@code memgen} object in the request ({@code memory}, {@code session_id}) and in the response (trajectory id,
 * insertions, weaver and trigger versions) carries what OpenAI has no field for, so a client can send feedback for
 * the exact trajectory. Every request joins the same continuously batched engine as gRPC Generate does.
 *
 * <p>Plain Vert.x routes rather than JAX-RS resources: every failure, malformed JSON and an oversized body included,
 * must come back as an OpenAI error body, and streamed chunks go out as the engine produces them.
 */
@ApplicationScoped
public class OpenAiApi {
  private static final Logger LOG = Logger.getLogger(OpenAiApi.class);
  private static final ObjectMapper JSON = new ObjectMapper();

  private final Generations generations;
  private final String servedName;
  private final int maxBodyBytes;
  private final int maxPromptTokens;
  private final int maxTokensLimit;
  private final int maxPerClient;
  private final Map<String, AtomicInteger> inFlight = new ConcurrentHashMap<>();

  OpenAiApi(Generations generations,
      @ConfigProperty(name = "memgen.openai.model-name", defaultValue = "memgen") String servedName,
      @ConfigProperty(name = "memgen.openai.max-body-bytes", defaultValue = "1048576") int maxBodyBytes,
      @ConfigProperty(name = "memgen.openai.max-prompt-tokens", defaultValue = "0") int maxPromptTokens,
      @ConfigProperty(name = "memgen.openai.max-tokens", defaultValue = "0") int maxTokensLimit,
      @ConfigProperty(name = "memgen.openai.max-concurrent-per-client", defaultValue = "64") int maxPerClient) {
    if (servedName.isBlank() || servedName.contains(":") || maxBodyBytes < 1 || maxPromptTokens < 0 || maxTokensLimit < 0
        || maxPerClient < 1) {
      throw new IllegalStateException("memgen.openai.*: model-name must be non-empty without ':', max-body-bytes and "
          + "max-concurrent-per-client >= 1, max-prompt-tokens and max-tokens >= 0 (0: the model's context)");
    }
    this.generations = generations;
    this.servedName = servedName;
    this.maxBodyBytes = maxBodyBytes;
    this.maxPromptTokens = maxPromptTokens;
    this.maxTokensLimit = maxTokensLimit;
    this.maxPerClient = maxPerClient;
  }

  void routes(@Observes Router router) {
    router.get("/v1/models").handler(ctx -> send(ctx, 200, models(HttpAuth.caller(ctx)))).failureHandler(this::failure);
    for (boolean chat : new boolean[] {true, false}) {
      router.post(chat ? "/v1/chat/completions" : "/v1/completions")
          .handler(BodyHandler.create(false).setBodyLimit(maxBodyBytes))
          .blockingHandler(ctx -> complete(ctx, chat), false)
          .failureHandler(this::failure);
    }
  }

  /** The base alone, and the base with its memory for a caller that may use the memory's adapter. */
  private ObjectNode models(ApiKeys.Caller caller) {
    ArrayNode data = JsonNodeFactory.instance.arrayNode();
    data.add(model(servedName));
    if (generations.memoryConfigured() && (caller == null || caller.mayUse(generations.adapterName()))) {
      data.add(model(servedName + ":" + generations.adapterName()));
    }
    ObjectNode out = JsonNodeFactory.instance.objectNode();
    out.put("object", "list");
    out.set("data", data);
    return out;
  }

  private static ObjectNode model(String id) {
    ObjectNode m = JsonNodeFactory.instance.objectNode();
    m.put("id", id);
    m.put("object", "model");
    m.put("created", 0);
    m.put("owned_by", "memgen");
    return m;
  }

  /** A failure Vert.x raised before our handler ran (the body limit) or that our handler did not catch. */
  private void failure(RoutingContext ctx) {
    if (ctx.failure() instanceof OpenAiError e) {
      send(ctx, e.status, e.body());
    } else if (ctx.statusCode() == 413) {
      send(ctx, 413, new OpenAiError(413, "invalid_request_error", null, "request_too_large", "the request body is "
          + "over memgen.openai.max-body-bytes (" + maxBodyBytes + " bytes)").body());
    } else {
      LOG.error("OpenAI request failed", ctx.failure());
      send(ctx, ctx.statusCode() > 0 ? ctx.statusCode() : 500, new OpenAiError(500, "server_error", null, null,
          "internal error: " + ctx.failure()).body());
    }
  }

  private void complete(RoutingContext ctx, boolean chat) {
    String client = clientKey(ctx);
    AtomicInteger mine = inFlight.computeIfAbsent(client, k -> new AtomicInteger());
    if (mine.incrementAndGet() > maxPerClient) {
      mine.decrementAndGet();
      send(ctx, 429, new OpenAiError(429, "rate_limit_exceeded", null, "rate_limit_exceeded", "this client already has "
          + maxPerClient + " requests in flight (memgen.openai.max-concurrent-per-client)").body());
      return;
    }
    boolean started = false;
    try {
      started = start(ctx, chat, mine);
    } catch (OpenAiError e) {
      send(ctx, e.status, e.body());
    } finally {
      if (!started) {
        mine.decrementAndGet();
      }
    }
  }

  /** Parses, checks and submits; true once the engine has the request (it then answers and releases the slot). */
  private boolean start(RoutingContext ctx, boolean chat, AtomicInteger slot) {
    JsonNode body = parse(ctx.body().buffer());
    OpenAiRequest req = chat ? OpenAiRequest.chat(body) : OpenAiRequest.completion(body);
    GenerateRequest generate = withModel(req, HttpAuth.caller(ctx));
    GenerateRequestMapper.Plan plan;
    try {
      plan = generations.map(generate);
    } catch (StatusRuntimeException e) {
      throw fromStatus(e.getStatus(), chat ? "messages" : "prompt");
    }
    int context = generations.model().config().maxPositions();
    int promptTokens = plan.request().prompt().length;
    int promptLimit = maxPromptTokens > 0 ? Math.min(maxPromptTokens, context - 1) : context - 1;
    if (promptTokens > promptLimit) {
      throw new OpenAiError(400, "invalid_request_error", chat ? "messages" : "prompt", "context_length_exceeded",
          "the prompt is " + promptTokens + " tokens, over the limit of " + promptLimit
              + (maxPromptTokens > 0 ? " (memgen.openai.max-prompt-tokens)" : " (the model's context)"));
    }
    String maxField = body.hasNonNull("max_completion_tokens") ? "max_completion_tokens" : "max_tokens";
    if (req.maxTokens().isPresent()) {
      int asked = req.maxTokens().get();
      if (maxTokensLimit > 0 && asked > maxTokensLimit) {
        throw OpenAiError.invalid(maxField, maxField + " is " + asked + ", over memgen.openai.max-tokens ("
            + maxTokensLimit + ")");
      }
      if (promptTokens + asked > context) {
        throw new OpenAiError(400, "invalid_request_error", maxField, "context_length_exceeded", "this model's "
            + "maximum context length is " + context + " tokens; the request asks for " + (promptTokens + asked)
            + " (" + promptTokens + " in the prompt, " + asked + " in the completion)");
      }
    }
    Completion completion = new Completion(ctx, req, plan, chat, slot);
    EngineCore.Submission submission;
    try {
      submission = generations.start(plan, completion);
    } catch (EngineOverloadedException e) {
      throw new OpenAiError(429, "rate_limit_exceeded", null, "engine_overloaded", e.getMessage());
    } catch (IllegalArgumentException e) {
      throw OpenAiError.invalid(null, e.getMessage());
    }
    ctx.response().closeHandler(v -> submission.cancel()); // a client that leaves frees its row at the next step
    return true;
  }

  /** The model name resolves to memory on or off (or to a 404, or a 403 for a key not allowed the adapter). */
  private GenerateRequest withModel(OpenAiRequest req, ApiKeys.Caller caller) {
    GenerateRequest g = req.generate();
    if (req.model().equals(servedName)) {
      return g.toBuilder().setMemoryEnabled(false).build();
    }
    if (generations.memoryConfigured() && req.model().equals(servedName + ":" + generations.adapterName())) {
      if (caller != null && !caller.mayUse(generations.adapterName())) {
        throw new OpenAiError(403, "invalid_request_error", "model", "model_not_allowed", "the API key '" + caller.name()
            + "' may not use the adapter '" + generations.adapterName() + "' (it may use " + String.join(", ",
            caller.adapters()) + "; '" + servedName + "', the base without memory, is open to every key)");
      }
      return g.hasMemoryEnabled() ? g : g.toBuilder().setMemoryEnabled(true).build();
    }
    throw new OpenAiError(404, "invalid_request_error", "model", "model_not_found", "the model '" + req.model()
        + "' does not exist; this server has " + models(caller).get("data").findValuesAsText("id"));
  }

  private static OpenAiError fromStatus(Status status, String promptField) {
    return switch (status.getCode()) {
      case RESOURCE_EXHAUSTED -> new OpenAiError(400, "invalid_request_error", promptField, "context_length_exceeded",
          status.getDescription());
      case UNAVAILABLE -> new OpenAiError(429, "rate_limit_exceeded", null, "engine_overloaded", status.getDescription());
      default -> OpenAiError.invalid(null, status.getDescription());
    };
  }

  private static JsonNode parse(Buffer body) {
    if (body == null || body.length() == 0) {
      throw OpenAiError.invalid(null, "the request has no body (expected a JSON object)");
    }
    String text;
    try {
      text = StandardCharsets.UTF_8.newDecoder().onMalformedInput(CodingErrorAction.REPORT)
          .onUnmappableCharacter(CodingErrorAction.REPORT).decode(ByteBuffer.wrap(body.getBytes())).toString();
    } catch (CharacterCodingException e) {
      throw OpenAiError.invalid(null, "the request body is not valid UTF-8");
    }
    try {
      JsonNode node = JSON.readTree(text);
      if (node == null || !node.isObject()) {
        throw OpenAiError.invalid(null, "the request body must be a JSON object");
      }
      return node;
    } catch (JsonProcessingException e) {
      throw OpenAiError.invalid(null, "the request body is not valid JSON: " + e.getOriginalMessage());
    }
  }

  /** Requests are counted per API key when one is sent, else per remote host. */
  private static String clientKey(RoutingContext ctx) {
    ApiKeys.Caller caller = HttpAuth.caller(ctx);
    if (caller != null) {
      return "caller:" + caller.name();
    }
    String auth = ctx.request().getHeader("Authorization");
    if (auth != null && !auth.isBlank()) {
      return "key:" + auth;
    }
    return "host:" + (ctx.request().remoteAddress() == null ? "?" : ctx.request().remoteAddress().host());
  }

  private static void send(RoutingContext ctx, int status, JsonNode body) {
    HttpServerResponse r = ctx.response();
    if (r.ended() || r.closed()) {
      return;
    }
    r.setStatusCode(status).putHeader("Content-Type", "application/json").end(body.toString());
  }

  /** One request's answer, built on the engine thread and written on the request's Vert.x context, in order. */
  private final class Completion implements Generations.Listener {
    private final RoutingContext ctx;
    private final Context vertx;
    private final OpenAiRequest req;
    private final GenerateRequestMapper.Plan plan;
    private final boolean chat;
    private final AtomicInteger slot;
    private final IncrementalText text;
    private final StopStrings stops;
    private final StringBuilder whole = new StringBuilder();
    private final String id;
    private final long created = System.currentTimeMillis() / 1000;
    private int produced;
    private boolean headerSent;

    Completion(RoutingContext ctx, OpenAiRequest req, GenerateRequestMapper.Plan plan, boolean chat, AtomicInteger slot) {
      this.ctx = ctx;
      this.vertx = Vertx.currentContext() != null ? Vertx.currentContext() : ctx.vertx().getOrCreateContext();
      this.req = req;
      this.plan = plan;
      this.chat = chat;
      this.slot = slot;
      TextTokenizer tokenizer = generations.model().tokenizer();
      this.text = new IncrementalText(ids -> tokenizer.decode(ids, true)); // text prompts imply a tokenizer
      this.stops = new StopStrings(req.stop());
      this.id = (chat ? "chatcmpl-" : "cmpl-") + UUID.randomUUID();
    }

    @Override
    public boolean onToken(int token, MemGenInterleaver memory) {
      produced++;
      boolean last = plan.request().stopTokens().contains(token) || produced >= plan.request().maxNewTokens();
      String shown = stops.add(text.add(token, last));
      whole.append(shown);
      if (req.stream()) {
        if (!headerSent) {
          headerSent = true;
          write(null, true);
          if (chat) { // the first chunk names the role, as OpenAI's do
            ObjectNode delta = JsonNodeFactory.instance.objectNode().put("role", "assistant").put("content", "");
            write(chunk(delta, null), false);
          }
        }
        if (!shown.isEmpty()) {
          write(chunk(content(shown), null), false);
        }
      }
      return !stops.stopped();
    }

    @Override
    public void onFinished(Generations.Completion c) {
      slot.decrementAndGet();
      String rest = stops.flush();
      whole.append(rest);
      String reason = c.result().reason() == Generator.FinishReason.LENGTH ? "length" : "stop";
      if (!req.stream()) {
        ObjectNode out = head(chat ? "chat.completion" : "text_completion");
        ObjectNode choice = JsonNodeFactory.instance.objectNode().put("index", 0);
        if (chat) {
          choice.set("message", JsonNodeFactory.instance.objectNode().put("role", "assistant").put("content", whole.toString()));
        } else {
          choice.put("text", whole.toString()).putNull("logprobs");
        }
        choice.put("finish_reason", reason);
        out.set("choices", JsonNodeFactory.instance.arrayNode().add(choice));
        out.set("usage", usage(c));
        out.set("memgen", memgen(c));
        vertx.runOnContext(v -> send(ctx, 200, out));
        return;
      }
      if (!headerSent) {
        headerSent = true;
        write(null, true);
      }
      if (!rest.isEmpty()) {
        write(chunk(content(rest), null), false);
      }
      ObjectNode last = chunk(chat ? JsonNodeFactory.instance.objectNode() : null, reason);
      last.set("memgen", memgen(c));
      write(last, false);
      if (req.includeUsage()) {
        ObjectNode u = head(chat ? "chat.completion.chunk" : "text_completion");
        u.set("choices", JsonNodeFactory.instance.arrayNode());
        u.set("usage", usage(c));
        write(u, false);
      }
      vertx.runOnContext(v -> {
        if (!ctx.response().closed()) {
          ctx.response().end("data: [DONE]\n\n");
        }
      });
    }

    @Override
    public void onFailed(Throwable cause) {
      slot.decrementAndGet();
      if (cause instanceof CancellationException) {
        return; // the client left
      }
      LOG.errorf(cause, "OpenAI request failed (session %s)", plan.sessionId());
      OpenAiError e = new OpenAiError(500, "server_error", null, null, "decode failure: " + cause);
      vertx.runOnContext(v -> {
        if (!headerSent) {
          send(ctx, 500, e.body());
        } else if (!ctx.response().closed()) {
          ctx.response().end("data: " + e.body() + "\n\n");
        }
      });
    }

    private ObjectNode content(String piece) {
      return JsonNodeFactory.instance.objectNode().put("content", piece);
    }

    private ObjectNode head(String object) {
      ObjectNode out = JsonNodeFactory.instance.objectNode();
      out.put("id", id);
      out.put("object", object);
      out.put("created", created);
      out.put("model", req.model());
      out.put("system_fingerprint", generations.model().fingerprint().substring(0, 16));
      return out;
    }

    /** A streamed chunk: a chat delta, or (text completions) the text itself. */
    private ObjectNode chunk(ObjectNode delta, String finishReason) {
      ObjectNode out = head(chat ? "chat.completion.chunk" : "text_completion");
      ObjectNode choice = JsonNodeFactory.instance.objectNode().put("index", 0);
      if (chat) {
        choice.set("delta", delta == null ? JsonNodeFactory.instance.objectNode() : delta);
      } else {
        choice.put("text", delta == null ? "" : delta.path("content").asText(""));
        choice.putNull("logprobs");
      }
      if (finishReason == null) {
        choice.putNull("finish_reason");
      } else {
        choice.put("finish_reason", finishReason);
      }
      out.set("choices", JsonNodeFactory.instance.arrayNode().add(choice));
      return out;
    }

    private ObjectNode usage(Generations.Completion c) {
      int prompt = c.plan().request().prompt().length;
      int completion = c.result().tokens().length;
      return JsonNodeFactory.instance.objectNode().put("prompt_tokens", prompt).put("completion_tokens", completion)
          .put("total_tokens", prompt + completion);
    }

    private ObjectNode memgen(Generations.Completion c) {
      ObjectNode m = JsonNodeFactory.instance.objectNode();
      m.put("trajectory_id", c.trajectoryId());
      m.put("session_id", c.plan().sessionId());
      m.put("memory", c.plan().memoryRequested());
      m.put("adapter", c.plan().memoryRequested() ? generations.adapterName() : "");
      MemGenInterleaver.Trace t = c.trace();
      List<MemGenInterleaver.Insertion> ins = t == null ? List.of() : t.insertions();
      m.put("insertions", ins.size());
      m.put("latent_rows", ins.stream().mapToInt(MemGenInterleaver.Insertion::k).sum());
      m.put("weaver_version", ins.stream().mapToLong(MemGenInterleaver.Insertion::weaverVersion).max().orElse(0));
      m.put("trigger_version", t == null ? 0 : t.triggerVersion());
      ObjectNode skips = JsonNodeFactory.instance.objectNode();
      if (t != null) {
        t.skips().forEach((k, v) -> skips.put(k.name().toLowerCase(), v));
      }
      m.set("skips", skips);
      return m;
    }

    /** Writes the SSE header (first) or one {@code data:} event, on the request's context so that order is kept. */
    private void write(ObjectNode event, boolean header) {
      String line = header ? null : "data: " + event + "\n\n";
      vertx.runOnContext(v -> {
        HttpServerResponse r = ctx.response();
        if (r.closed() || r.ended()) {
          return;
        }
        if (header) {
          r.setStatusCode(200).setChunked(true).putHeader("Content-Type", "text/event-stream")
              .putHeader("Cache-Control", "no-cache");
        } else {
          r.write(line);
        }
      });
    }
  }
}
