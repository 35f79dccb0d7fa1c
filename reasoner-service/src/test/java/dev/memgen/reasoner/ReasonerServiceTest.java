package dev.memgen.reasoner;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.memgen.model.Decoder;
import dev.memgen.model.generate.Generator;
import dev.memgen.model.generate.SamplingParams;
import dev.memgen.model.text.ByteLevelVocabulary;
import dev.memgen.model.text.ChatTemplate;
import dev.memgen.model.text.TextTokenizer;
import dev.memgen.proto.v1.ChatMessage;
import dev.memgen.proto.v1.ChatMessages;
import dev.memgen.proto.v1.FinishReason;
import dev.memgen.proto.v1.Finished;
import dev.memgen.proto.v1.GenerateEvent;
import dev.memgen.proto.v1.GenerateRequest;
import dev.memgen.proto.v1.ReasonerGrpc;
import dev.memgen.proto.v1.SkipReason;
import dev.memgen.proto.v1.TokenIds;
import dev.memgen.rpc.TinyModelResource;
import io.grpc.Context;
import io.grpc.ManagedChannel;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import io.quarkus.test.common.WithTestResource;
import io.quarkus.test.junit.QuarkusTest;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Iterator;
import java.util.List;
import java.util.Set;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.stream.IntStream;
import org.eclipse.microprofile.config.inject.ConfigProperty;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

/**
 * The reasoner over real gRPC on loopback, against a tiny random checkpoint. Expected tokens come from the model
 * library called directly ({@code new Generator(Decoder.load(dir))}), in this same JVM and classloader as the app
 * (a {@code @QuarkusTest} class is loaded by the Quarkus classloader, so DJL's native libraries load once).
 */
@QuarkusTest
@WithTestResource(TinyModelResource.class)
class ReasonerServiceTest {
  private static final int[] PROMPT = {72, 101, 108, 108, 111, 44, 32, 119};
  /** What the server stops on for this checkpoint: config eos (<|im_end|>), <|im_end|>, <|endoftext|>. */
  private static final Set<Integer> BASE_STOPS =
      Set.of(ByteLevelVocabulary.IM_END_ID, ByteLevelVocabulary.END_OF_TEXT_ID);

  @ConfigProperty(name = "memgen.model.dir")
  String modelDir;

  private ManagedChannel channel;
  private ReasonerGrpc.ReasonerBlockingStub reasoner;

  @BeforeEach
  void connect() {
    channel = GrpcTestChannel.open();
    reasoner = ReasonerGrpc.newBlockingStub(channel);
  }

  @AfterEach
  void disconnect() throws InterruptedException {
    GrpcTestChannel.close(channel);
  }

  /** What one Generate call streamed. */
  record Streamed(int[] tokens, List<Integer> perDelta, String text, Finished finished) {}

  private Streamed generate(GenerateRequest request) {
    List<Integer> tokens = new ArrayList<>();
    List<Integer> perDelta = new ArrayList<>();
    StringBuilder text = new StringBuilder();
    Finished finished = null;
    Iterator<GenerateEvent> events = reasoner.generate(request);
    while (events.hasNext()) {
      GenerateEvent e = events.next();
      assertTrue(finished == null, "Finished must be the last event");
      switch (e.getEventCase()) {
        case TOKEN -> {
          tokens.addAll(e.getToken().getTokenIdsList());
          perDelta.add(e.getToken().getTokenIdsCount());
          text.append(e.getToken().getText());
        }
        case FINISHED -> finished = e.getFinished();
        default -> throw new AssertionError("unexpected event " + e);
      }
    }
    assertTrue(finished != null, "the stream must end with Finished");
    return new Streamed(tokens.stream().mapToInt(Integer::intValue).toArray(), perDelta, text.toString(), finished);
  }

  private static GenerateRequest ids(int maxNew, int... ids) {
    TokenIds.Builder t = TokenIds.newBuilder();
    for (int id : ids) {
      t.addIds(id);
    }
    return GenerateRequest.newBuilder().setTokenIds(t).setMaxNewTokens(maxNew).build();
  }

  /** The model library's own answer for a request (fresh decoder, same checkpoint). */
  private Generator.Result direct(int[] prompt, int maxNew, SamplingParams sampling, Set<Integer> stops) {
    try (Decoder decoder = Decoder.load(Path.of(modelDir))) {
      return new Generator(decoder).generate(List.of(new Generator.Request(prompt, maxNew, sampling, stops)),
          (row, token, hidden) -> {}).get(0);
    }
  }

  @Test
  void tokenIdsStreamTheSameTokensAsTheGeneratorCalledDirectly() {
    Generator.Result expected = direct(PROMPT, 12, SamplingParams.GREEDY, BASE_STOPS);
    Streamed got = generate(ids(12, PROMPT));

    assertArrayEquals(expected.tokens(), got.tokens());
    assertTrue(got.perDelta().stream().allMatch(n -> n == 1), "one TokenDelta per token");
    Finished f = got.finished();
    assertEquals(PROMPT.length, f.getPromptTokens());
    assertEquals(expected.tokens().length, f.getCompletionTokens());
    assertEquals(expected.reason() == Generator.FinishReason.LENGTH ? FinishReason.LENGTH : FinishReason.STOP_TOKEN,
        f.getReason());
    assertTrue(f.getLatencyMs() >= 0);
    assertFalse(f.getSessionId().isEmpty(), "the server makes up a session id when the client gives none");
    assertEquals(0, f.getLatentRows());
  }

  @Test
  void aRequestStopTokenEndsTheStreamWithStopToken() {
    int[] free = direct(PROMPT, 12, SamplingParams.GREEDY, BASE_STOPS).tokens();
    assertTrue(free.length >= 3, "the tiny model should not stop within 3 tokens for this prompt");
    int stop = free[2];
    int cut = IntStream.range(0, free.length).filter(i -> free[i] == stop).findFirst().getAsInt();

    Streamed got = generate(ids(12, PROMPT).toBuilder().addStopTokenIds(stop).build());

    assertArrayEquals(Arrays.copyOf(free, cut + 1), got.tokens(), "stops at (and includes) the stop id");
    assertEquals(FinishReason.STOP_TOKEN, got.finished().getReason());
    assertEquals(cut + 1, got.finished().getCompletionTokens());
  }

  @Test
  void maxNewTokensEndsTheStreamWithLength() {
    Generator.Result expected = direct(PROMPT, 3, SamplingParams.GREEDY, BASE_STOPS);
    Streamed got = generate(ids(3, PROMPT));
    assertArrayEquals(expected.tokens(), got.tokens());
    if (expected.reason() == Generator.FinishReason.LENGTH) {
      assertEquals(3, got.tokens().length);
      assertEquals(FinishReason.LENGTH, got.finished().getReason());
    }
  }

  @Test
  void seededSamplingMatchesTheGeneratorAndReplays() {
    GenerateRequest request = ids(10, PROMPT).toBuilder()
        .setSampling(dev.memgen.proto.v1.SamplingParams.newBuilder()
            .setTemperature(0.9f).setTopK(40).setTopP(0.95f).setSeed(1234))
        .build();
    // The proto carries floats: the server samples with 0.9f and 0.95f widened to double, not 0.9 and 0.95.
    Generator.Result expected = direct(PROMPT, 10, new SamplingParams(0.9f, 40, 0.95f, 1234), BASE_STOPS);
    Streamed a = generate(request);
    Streamed b = generate(request);
    assertArrayEquals(expected.tokens(), a.tokens());
    assertArrayEquals(a.tokens(), b.tokens(), "same seed, same tokens");
  }

  @Test
  void cancellingACallLeavesTheServiceUp() {
    Context.CancellableContext call = Context.current().withCancellation();
    try {
      call.run(() -> assertTrue(reasoner.generate(ids(3000, PROMPT)).next().hasToken()));
    } finally {
      call.cancel(null); // the server's listener sees the cancellation and stops decoding
    }
    assertArrayEquals(direct(PROMPT, 4, SamplingParams.GREEDY, BASE_STOPS).tokens(), generate(ids(4, PROMPT)).tokens());
  }

  @Test
  void textPromptIsTokenizedAsIsAndTheTextPiecesConcatenateToTheCompletion() {
    String prompt = "Grüße, 世界."; // multi-byte characters: the byte-level vocabulary splits them
    try (TextTokenizer tokenizer = TextTokenizer.load(Path.of(modelDir))) {
      int[] promptIds = tokenizer.encode(prompt);
      Generator.Result expected = direct(promptIds, 16, SamplingParams.GREEDY, BASE_STOPS);

      Streamed got = generate(GenerateRequest.newBuilder().setText(prompt).setMaxNewTokens(16).build());

      assertEquals(promptIds.length, got.finished().getPromptTokens());
      assertArrayEquals(expected.tokens(), got.tokens());
      assertEquals(tokenizer.decode(expected.tokens(), true), got.text());
    }
  }

  @Test
  void chatPromptIsRenderedAsChatMl() {
    try (TextTokenizer tokenizer = TextTokenizer.load(Path.of(modelDir))) {
      int[] promptIds = tokenizer.encode(ChatTemplate.render(
          List.of(new ChatTemplate.Message("system", "Be brief."), new ChatTemplate.Message("user", "2+2?")), true));
      Generator.Result expected = direct(promptIds, 8, SamplingParams.GREEDY, BASE_STOPS);

      Streamed got = generate(GenerateRequest.newBuilder()
          .setChat(ChatMessages.newBuilder()
              .addMessages(ChatMessage.newBuilder().setRole("system").setContent("Be brief."))
              .addMessages(ChatMessage.newBuilder().setRole("user").setContent("2+2?")))
          .setMaxNewTokens(8).build());

      assertEquals(promptIds.length, got.finished().getPromptTokens());
      assertArrayEquals(expected.tokens(), got.tokens());
    }
  }

  @Test
  void memoryRequestsAreServedWithoutMemoryAndSaySo() {
    Finished asked = generate(ids(2, PROMPT)).finished(); // memory_enabled unset = on
    assertEquals(1, asked.getMemorySkippedCount());
    assertEquals(SkipReason.WEAVER_UNAVAILABLE, asked.getMemorySkipped(0).getReason());
    assertEquals(1, asked.getMemorySkipped(0).getCount());

    Finished off = generate(ids(2, PROMPT).toBuilder().setMemoryEnabled(false).setSessionId("s-42").build()).finished();
    assertEquals(SkipReason.MEMORY_DISABLED, off.getMemorySkipped(0).getReason());
    assertEquals("s-42", off.getSessionId());
  }

  @Test
  void concurrentCallsEachGetTheirOwnTokens() throws Exception {
    int[][] prompts = {PROMPT, {1, 2, 3}, {200, 100, 50, 25, 12}};
    ExecutorService pool = Executors.newFixedThreadPool(prompts.length);
    try {
      List<Future<Streamed>> futures = new ArrayList<>();
      for (int[] p : prompts) {
        futures.add(pool.submit(() -> generate(ids(10, p))));
      }
      for (int i = 0; i < prompts.length; i++) {
        assertArrayEquals(direct(prompts[i], 10, SamplingParams.GREEDY, BASE_STOPS).tokens(), futures.get(i).get().tokens(),
            "prompt " + i);
      }
    } finally {
      pool.shutdownNow();
    }
  }

  private void assertRejected(Status.Code code, String field, GenerateRequest request) {
    StatusRuntimeException e = assertThrows(StatusRuntimeException.class, () -> generate(request), field);
    assertEquals(code, e.getStatus().getCode(), field + ": " + e.getStatus());
    String description = String.valueOf(e.getStatus().getDescription());
    assertTrue(description.contains(field), "the message names " + field + ": " + description);
  }

  @Test
  void badInputGetsItsStatusAndTheServiceStaysUp() {
    GenerateRequest good = ids(4, PROMPT);
    dev.memgen.proto.v1.SamplingParams.Builder sampling = dev.memgen.proto.v1.SamplingParams.newBuilder();
    Status.Code invalid = Status.Code.INVALID_ARGUMENT;

    assertRejected(invalid, "prompt", GenerateRequest.newBuilder().setMaxNewTokens(4).build());
    assertRejected(invalid, "prompt.text", GenerateRequest.newBuilder().setText("").build());
    assertRejected(invalid, "prompt.token_ids", ids(4));
    assertRejected(invalid, "prompt.chat", GenerateRequest.newBuilder().setChat(ChatMessages.getDefaultInstance()).build());
    assertRejected(invalid, "prompt.token_ids.ids[1]", ids(4, 5, 320, 7));
    assertRejected(invalid, "prompt.token_ids.ids[0]", ids(4, -1));
    assertRejected(invalid, "max_new_tokens", ids(-1, PROMPT));
    assertRejected(invalid, "sampling.top_p", good.toBuilder().setSampling(sampling.clone().setTemperature(1).setTopP(1.5f)).build());
    assertRejected(invalid, "sampling.top_p", good.toBuilder().setSampling(sampling.clone().setTopP(-0.1f)).build());
    assertRejected(invalid, "sampling.temperature", good.toBuilder().setSampling(sampling.clone().setTemperature(-1)).build());
    assertRejected(invalid, "sampling.temperature", good.toBuilder().setSampling(sampling.clone().setTemperature(Float.NaN)).build());
    assertRejected(invalid, "sampling.top_k", good.toBuilder().setSampling(sampling.clone().setTopK(-3)).build());
    assertRejected(invalid, "stop_token_ids[0]", good.toBuilder().addStopTokenIds(99999).build());
    assertRejected(Status.Code.RESOURCE_EXHAUSTED, "prompt", ids(4, new int[4096]));

    Streamed after = generate(good);
    assertArrayEquals(direct(PROMPT, 4, SamplingParams.GREEDY, BASE_STOPS).tokens(), after.tokens());
    assertNotEquals(FinishReason.FINISH_REASON_UNSPECIFIED, after.finished().getReason());
  }
}
