package dev.memgen.reasoner;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.memgen.model.Decoder;
import dev.memgen.model.Weaver;
import dev.memgen.model.checkpoint.Checkpoint;
import dev.memgen.model.generate.Generator;
import dev.memgen.model.generate.MemGenInterleaver;
import dev.memgen.model.generate.SamplingParams;
import dev.memgen.model.text.ChatTemplate;
import dev.memgen.model.text.DelimiterTable;
import dev.memgen.model.text.TextTokenizer;
import dev.memgen.proto.v1.ChatMessage;
import dev.memgen.proto.v1.ChatMessages;
import dev.memgen.proto.v1.Finished;
import dev.memgen.proto.v1.GenerateEvent;
import dev.memgen.proto.v1.GenerateRequest;
import dev.memgen.proto.v1.LatentKind;
import dev.memgen.proto.v1.MemoryEvent;
import dev.memgen.proto.v1.MemorySkip;
import dev.memgen.proto.v1.ReasonerGrpc;
import dev.memgen.proto.v1.SkipReason;
import dev.memgen.rpc.ReasonerMemory;
import dev.memgen.rpc.TinyModelResource;
import io.grpc.ManagedChannel;
import io.quarkus.test.junit.QuarkusTest;
import io.quarkus.test.junit.QuarkusTestProfile;
import io.quarkus.test.junit.TestProfile;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Iterator;
import java.util.List;
import java.util.Map;
import java.util.Set;
import org.eclipse.microprofile.config.inject.ConfigProperty;
import org.junit.jupiter.api.Test;

/**
 * The reasoner with embedded memory (memgen.memory.dir): over gRPC it generates what the library's MemGen loop
 * generates, streams a MemoryEvent for every insertion in order with the tokens, and accounts for latent rows and
 * skipped points in Finished; memory_enabled=false gives the bare base.
 */
@QuarkusTest
@TestProfile(ReasonerWithMemoryTest.WithMemory.class)
class ReasonerWithMemoryTest {
  public static class WithMemory implements QuarkusTestProfile {
    @Override
    public List<TestResourceEntry> testResources() {
      return List.of(new TestResourceEntry(TinyModelResource.class, Map.of(TinyModelResource.MEMORY, "true")));
    }

    @Override
    public Map<String, String> getConfigOverrides() {
      return Map.of("memgen.trigger.mode", "inactive"); // every delimiter invokes, up to the cap
    }
  }

  @ConfigProperty(name = "memgen.model.dir") String modelDir;
  @ConfigProperty(name = "memgen.memory.dir") String memoryDir;

  static final String QUESTION = "Count: one, two, three. Then four, five.";

  record Streamed(List<Integer> tokens, List<MemoryEvent> events, List<Integer> eventsAfterTokens, Finished finished) {}

  static Streamed generate(GenerateRequest request) throws Exception {
    ManagedChannel channel = GrpcTestChannel.open();
    try {
      List<Integer> tokens = new ArrayList<>();
      List<MemoryEvent> events = new ArrayList<>();
      List<Integer> after = new ArrayList<>();
      Finished finished = null;
      Iterator<GenerateEvent> it = ReasonerGrpc.newBlockingStub(channel).generate(request);
      while (it.hasNext()) {
        GenerateEvent e = it.next();
        switch (e.getEventCase()) {
          case TOKEN -> tokens.addAll(e.getToken().getTokenIdsList());
          case MEMORY -> {
            events.add(e.getMemory());
            after.add(tokens.size());
          }
          case FINISHED -> finished = e.getFinished();
          default -> throw new AssertionError(e.toString());
        }
      }
      return new Streamed(tokens, events, after, finished);
    } finally {
      GrpcTestChannel.close(channel);
    }
  }

  static GenerateRequest chat(int maxNew, boolean memory) {
    return GenerateRequest.newBuilder()
        .setChat(ChatMessages.newBuilder().addMessages(ChatMessage.newBuilder().setRole("user").setContent(QUESTION)))
        .setMaxNewTokens(maxNew).setMemoryEnabled(memory).setWantTrace(true).build();
  }

  @Test
  void generatesWhatTheLibraryLoopGeneratesAndTracesEveryInsertion() throws Exception {
    Streamed s = generate(chat(40, true));
    int[] expected;
    MemGenInterleaver.Trace trace;
    try (Decoder decoder = Decoder.load(Path.of(modelDir)); TextTokenizer tokenizer = TextTokenizer.load(Path.of(modelDir));
        ReasonerMemory memory = ReasonerMemory.embedded(decoder, Checkpoint.open(Path.of(modelDir)).fingerprint(),
            Path.of(memoryDir), names -> DelimiterTable.build(tokenizer, decoder.config().vocabSize(), names))) {
      int[] prompt = tokenizer.encode(ChatTemplate.userPrompt(QUESTION));
      Set<Integer> stops = Set.of(tokenizer.tokenId(ChatTemplate.IM_END), tokenizer.tokenId(ChatTemplate.END_OF_TEXT));
      try (MemGenInterleaver loop = memory.open(List.of("x"), MemGenInterleaver.TriggerMode.INACTIVE, 0.5, 0,
          java.util.OptionalInt.empty())) {
        expected = new Generator(decoder).generate(List.of(new Generator.Request(prompt, 40, SamplingParams.GREEDY, stops)),
            (row, token, hidden) -> {}, loop).get(0).tokens();
        trace = loop.trace(0);
      }
    }
    assertArrayEquals(expected, s.tokens().stream().mapToInt(Integer::intValue).toArray());
    assertEquals(trace.insertions().size(), s.events().size(), s.events().toString());
    assertTrue(s.events().size() >= 2, "prompt latents and at least one inference block: " + s.events());
    for (int i = 0; i < s.events().size(); i++) {
      MemoryEvent e = s.events().get(i);
      MemGenInterleaver.Insertion want = trace.insertions().get(i);
      assertEquals(want.position(), e.getPosition());
      assertEquals(want.k(), e.getK());
      assertEquals(want.kind() == Weaver.Kind.PROMPT ? LatentKind.PROMPT : LatentKind.INFERENCE, e.getKind());
      assertEquals(want.tokenIndex(), e.getTokenIndex());
      assertEquals(want.tokenIndex(), s.eventsAfterTokens().get(i), "streamed right after the token it follows");
      assertEquals(2, e.getWeaverVersion(), "the manifest's version");
      assertTrue(!e.hasTriggerProbability(), "inactive trigger: no probability");
    }
    assertEquals(trace.insertions().stream().mapToInt(MemGenInterleaver.Insertion::k).sum(), s.finished().getLatentRows());
    List<MemorySkip> skips = trace.skips().entrySet().stream().sorted(Map.Entry.comparingByKey())
        .map(k -> MemorySkip.newBuilder().setReason(SkipReason.valueOf(k.getKey().name())).setCount(k.getValue()).build())
        .toList();
    assertEquals(skips, s.finished().getMemorySkippedList());
  }

  @Test
  void concurrentGenerationsWithMemoryEachGetWhatTheyGetAlone() throws Exception {
    List<GenerateRequest> requests = new ArrayList<>();
    for (String q : List.of("one, two.", "Hello there, friend.", "a.b.c", "xyz, xyz, xyz")) {
      requests.add(GenerateRequest.newBuilder()
          .setChat(ChatMessages.newBuilder().addMessages(ChatMessage.newBuilder().setRole("user").setContent(q)))
          .setMaxNewTokens(20).setWantTrace(true).build());
    }
    List<Streamed> alone = new ArrayList<>();
    for (GenerateRequest r : requests) {
      alone.add(generate(r));
    }
    java.util.concurrent.ExecutorService pool = java.util.concurrent.Executors.newFixedThreadPool(requests.size());
    try {
      List<java.util.concurrent.Future<Streamed>> together = new ArrayList<>();
      for (GenerateRequest r : requests) {
        together.add(pool.submit(() -> generate(r)));
      }
      for (int i = 0; i < requests.size(); i++) {
        Streamed t = together.get(i).get(120, java.util.concurrent.TimeUnit.SECONDS);
        assertEquals(alone.get(i).tokens(), t.tokens(), "request " + i);
        assertEquals(alone.get(i).events(), t.events(), "request " + i);
        assertTrue(t.finished().getLatentRows() > 0);
      }
    } finally {
      pool.shutdownNow();
    }
  }

  @Test
  void memoryOffGivesTheBareBase() throws Exception {
    Streamed on = generate(chat(24, true));
    Streamed off = generate(chat(24, false));
    assertEquals(List.of(), off.events());
    assertEquals(0, off.finished().getLatentRows());
    assertEquals(List.of(MemorySkip.newBuilder().setReason(SkipReason.MEMORY_DISABLED).setCount(1).build()),
        off.finished().getMemorySkippedList());
    assertTrue(on.finished().getLatentRows() > 0);
    try (Decoder decoder = Decoder.load(Path.of(modelDir)); TextTokenizer tokenizer = TextTokenizer.load(Path.of(modelDir))) {
      int[] prompt = tokenizer.encode(ChatTemplate.userPrompt(QUESTION));
      Set<Integer> stops = Set.of(tokenizer.tokenId(ChatTemplate.IM_END), tokenizer.tokenId(ChatTemplate.END_OF_TEXT));
      int[] plain = new Generator(decoder).generate(List.of(new Generator.Request(prompt, 24, SamplingParams.GREEDY, stops)))
          .get(0).tokens();
      assertArrayEquals(plain, off.tokens().stream().mapToInt(Integer::intValue).toArray());
    }
  }
}
