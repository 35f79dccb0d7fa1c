package dev.memgen.model.data;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

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
    assertEquals(List.of(new QaDataset.Example("Q:1+2=?", "1+2=3.\\boxed{3}", "3", 1),
        new QaDataset.Example("Q%:9+9=?", "9+9=18.", "8", 3)), loaded.examples());
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
}
