package dev.memgen.model.data;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.memgen.model.text.ChatTemplate;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class QaDatasetTest {
  @TempDir Path tmp;

  @Test
  void badLinesAreNamedAndSkippedOrFatal() throws IOException {
    Path f = tmp.resolve("d.jsonl");
    Files.write(f, List.of(
        "{\"prompt\": \"Q:1+2=?\", \"answer\": \"1+2=3.\\\\boxed{3}\"}",
        "",
        "{\"prompt\": \"Q%:9+9=?\", \"answer\": \"9+9=18.\", \"boxed\": \"8\"}",
        "not json",
        "[1, 2]",
        "{\"answer\": \"\\\\boxed{1}\"}",
        "{\"prompt\": \"p\", \"answer\": \"no box\"}"));
    QaDataset.Loaded loaded = QaDataset.read(f, QaDataset.OnBadRecord.SKIP);
    assertEquals(List.of(new QaDataset.Example(user("Q:1+2=?"), "1+2=3.\\boxed{3}", "3", 1),
        new QaDataset.Example(user("Q%:9+9=?"), "9+9=18.", "8", 3)), loaded.examples());
    assertEquals(List.of(4, 5, 6, 7), loaded.skipped().stream().map(QaDataset.BadRecord::line).toList());
    assertTrue(loaded.skipped().get(0).reason().startsWith("not JSON"), loaded.skipped().toString());
    assertTrue(loaded.skipped().get(2).reason().contains("prompt"), loaded.skipped().toString());
    assertTrue(loaded.skipped().get(3).reason().contains("no expected result"), loaded.skipped().toString());

    IllegalArgumentException fail = assertThrows(IllegalArgumentException.class, () -> QaDataset.read(f, QaDataset.OnBadRecord.FAIL));
    assertTrue(fail.getMessage().startsWith(f + ":4: not JSON"), fail.getMessage());

    Path none = tmp.resolve("none.jsonl");
    Files.write(none, List.of("{}", "x"));
    IllegalArgumentException empty = assertThrows(IllegalArgumentException.class, () -> QaDataset.read(none, QaDataset.OnBadRecord.SKIP));
    assertTrue(empty.getMessage().contains("no usable example (2 bad lines; first: line 1"), empty.getMessage());
    assertThrows(IllegalArgumentException.class, () -> QaDataset.read(tmp.resolve("missing.jsonl"), QaDataset.OnBadRecord.SKIP));
  }

  static List<ChatTemplate.Message> user(String content) {
    return List.of(new ChatTemplate.Message("user", content));
  }

  /** Chat records: the conversation before the last (assistant) message is the prompt; training needs no result. */
  @Test
  void chatRecordsAndOptionalResults() throws IOException {
    Path f = tmp.resolve("chat.jsonl");
    Files.write(f, List.of(
        "{\"messages\": [{\"role\": \"system\", \"content\": \"be brief\"}, {\"role\": \"user\", \"content\": \"hi\"}, "
            + "{\"role\": \"assistant\", \"content\": \"hello\"}]}",
        "{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}, {\"role\": \"user\", \"content\": \"x\"}]}",
        "{\"messages\": [{\"role\": \"user\"}, {\"role\": \"assistant\", \"content\": \"x\"}]}",
        "{\"prompt\": \"p\", \"answer\": \"plain\"}"));
    QaDataset.Loaded training = QaDataset.read(f, QaDataset.OnBadRecord.SKIP, QaDataset.Expected.OPTIONAL);
    assertEquals(2, training.examples().size());
    QaDataset.Example chat = training.examples().get(0);
    assertEquals("<|im_start|>system\nbe brief<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n", chat.chatPrompt());
    assertEquals("hello", chat.answer());
    assertEquals(null, chat.expected());
    assertEquals(List.of(2, 3), training.skipped().stream().map(QaDataset.BadRecord::line).toList());
    assertTrue(training.skipped().get(0).reason().contains("last message"), training.skipped().toString());
    assertTrue(training.skipped().get(1).reason().contains("messages[0]"), training.skipped().toString());
    // Evaluation needs a result: none of these has one.
    assertThrows(IllegalArgumentException.class, () -> QaDataset.read(f, QaDataset.OnBadRecord.SKIP));
  }
}
