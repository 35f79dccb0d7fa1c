package dev.memgen.reasoner;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.memgen.proto.v1.ChatMessage;
import dev.memgen.proto.v1.ChatMessages;
import dev.memgen.proto.v1.GenerateEvent;
import dev.memgen.proto.v1.GenerateRequest;
import dev.memgen.proto.v1.ReasonerGrpc;
import dev.memgen.proto.v1.TokenIds;
import dev.memgen.rpc.TinyModelResource;
import io.grpc.ManagedChannel;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import io.quarkus.test.junit.QuarkusTest;
import io.quarkus.test.junit.QuarkusTestProfile;
import io.quarkus.test.junit.TestProfile;
import java.util.ArrayList;
import java.util.Iterator;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;

/**
 * A checkpoint without tokenizer.json: token-id prompts are served (with empty text pieces), text and chat
 * prompts fail with FAILED_PRECONDITION.
 *
 * <p>This is deliberately a test <em>profile</em>: Quarkus starts a second application with its own base
 * classloader in the same JVM as {@link ReasonerServiceTest}, which is the case where DJL's JNI libraries would
 * fail to load twice ("already loaded in another classloader") without the {@code %test} parent-first setting in
 * application.properties. If that setting breaks, this test fails.
 */
@QuarkusTest
@TestProfile(ReasonerWithoutTokenizerTest.NoTokenizer.class)
class ReasonerWithoutTokenizerTest {

  /** A tiny checkpoint with its tokenizer.json deleted. */
  public static class NoTokenizer implements QuarkusTestProfile {
    @Override
    public List<TestResourceEntry> testResources() {
      return List.of(new TestResourceEntry(TinyModelResource.class, Map.of(TinyModelResource.TOKENIZER, "false")));
    }
  }

  @Test
  void textNeedsATokenizerButTokenIdsDoNot() throws Exception {
    ManagedChannel channel = GrpcTestChannel.open();
    try {
      ReasonerGrpc.ReasonerBlockingStub reasoner = ReasonerGrpc.newBlockingStub(channel);
      for (GenerateRequest bad : List.of(
          GenerateRequest.newBuilder().setText("hello").build(),
          GenerateRequest.newBuilder().setChat(ChatMessages.newBuilder()
              .addMessages(ChatMessage.newBuilder().setRole("user").setContent("hi"))).build())) {
        StatusRuntimeException e = assertThrows(StatusRuntimeException.class, () -> reasoner.generate(bad).forEachRemaining(x -> {}));
        assertEquals(Status.Code.FAILED_PRECONDITION, e.getStatus().getCode(), e.getStatus().toString());
        assertTrue(e.getStatus().getDescription().contains("tokenizer.json"), e.getStatus().getDescription());
      }

      List<Integer> tokens = new ArrayList<>();
      Iterator<GenerateEvent> events = reasoner.generate(GenerateRequest.newBuilder()
          .setTokenIds(TokenIds.newBuilder().addIds(1).addIds(2).addIds(3)).setMaxNewTokens(5).build());
      GenerateEvent last = null;
      while (events.hasNext()) {
        last = events.next();
        if (last.hasToken()) {
          tokens.addAll(last.getToken().getTokenIdsList());
          assertEquals("", last.getToken().getText());
        }
      }
      assertTrue(last != null && last.hasFinished());
      assertEquals(tokens.size(), last.getFinished().getCompletionTokens());
      assertEquals(3, last.getFinished().getPromptTokens());
    } finally {
      GrpcTestChannel.close(channel);
    }
  }
}
