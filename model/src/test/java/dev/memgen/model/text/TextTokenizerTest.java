package dev.memgen.model.text;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

import dev.memgen.model.checkpoint.CheckpointException;
import dev.memgen.model.checkpoint.DType;
import dev.memgen.model.checkpoint.TinyCheckpoint;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** The tokenizer.json that make-tiny writes works through DJL's Hugging Face tokenizer, and nothing truncates. */
class TextTokenizerTest {
  @TempDir static Path dir;

  @BeforeAll
  static void write() throws IOException {
    TinyCheckpoint.write(dir, TinyCheckpoint.tiny("qwen2"), DType.F32, 1, 0);
  }

  @Test
  void bytesAreTokensAndTextRoundTrips() {
    try (TextTokenizer t = TextTokenizer.load(dir)) {
      String text = "Q: 12+7-5=?  naïve → ∑ \n\tend";
      int[] ids = t.encode(text);
      byte[] utf8 = text.getBytes(StandardCharsets.UTF_8);
      assertEquals(utf8.length, ids.length, "one token per byte");
      for (int i = 0; i < utf8.length; i++) {
        assertEquals(utf8[i] & 0xFF, ids[i]);
      }
      assertEquals(text, t.decode(ids, true));
    }
  }

  @Test
  void chatMlMarkersAreSingleSpecialTokens() {
    try (TextTokenizer t = TextTokenizer.load(dir)) {
      assertEquals(ByteLevelVocabulary.IM_START_ID, t.tokenId(ChatTemplate.IM_START));
      assertEquals(ByteLevelVocabulary.IM_END_ID, t.tokenId(ChatTemplate.IM_END));
      assertEquals(ByteLevelVocabulary.END_OF_TEXT_ID, t.tokenId(ChatTemplate.END_OF_TEXT));
      String prompt = ChatTemplate.userPrompt("hi");
      assertEquals("<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n", prompt);
      int[] ids = t.encode(prompt);
      assertArrayEquals(new int[] {257, 'u', 's', 'e', 'r', '\n', 'h', 'i', 258, '\n', 257, 'a', 's', 's', 'i', 's', 't', 'a', 'n', 't', '\n'}, ids);
      assertEquals("user\nhi\nassistant\n", t.decode(ids, true), "special tokens skipped");
      assertEquals(prompt, t.decode(ids, false));
    }
  }

  @Test
  void longInputsAreNotTruncated() {
    try (TextTokenizer t = TextTokenizer.load(dir)) {
      String text = "0123456789".repeat(300);
      assertEquals(3000, t.encode(text).length);
    }
  }

  @Test
  void chatTemplateRendersEveryTurn() {
    String s = ChatTemplate.render(List.of(new ChatTemplate.Message("system", "be brief"),
        new ChatTemplate.Message("user", "2+2?"), new ChatTemplate.Message("assistant", "4")), false);
    assertEquals("<|im_start|>system\nbe brief<|im_end|>\n<|im_start|>user\n2+2?<|im_end|>\n<|im_start|>assistant\n4<|im_end|>\n", s);
  }

  @Test
  void missingTokenizerIsNamed(@TempDir Path empty) throws IOException {
    Files.createDirectories(empty);
    CheckpointException e = assertThrows(CheckpointException.class, () -> TextTokenizer.load(empty));
    assertEquals(empty.resolve("tokenizer.json"), e.file());
  }
}
