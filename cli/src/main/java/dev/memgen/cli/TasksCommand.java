package dev.memgen.cli;

import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.memgen.model.data.ArithmeticTasks;
import java.io.BufferedWriter;
import java.io.OutputStreamWriter;
import java.io.Writer;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

/** Writes the synthetic task suite as JSONL: one {@code {"prompt", "answer", "domain", "boxed"}} object per line. */
@Command(name = "tasks", mixinStandardHelpOptions = true,
    description = "Generate seeded arithmetic problems with chain-of-thought answers: domain A (add/subtract) or B "
        + "(the same, announced by 'Q%:', boxed mod 10). JSONL to --out, or to stdout.")
final class TasksCommand implements Callable<Integer> {
  @Option(names = "--domain", required = true, description = "A, B or C (A with " + ArithmeticTasks.LONG_CHAIN_OPERATIONS + " operations)") ArithmeticTasks.Domain domain;

  @Option(names = "--n", defaultValue = "1000", description = "how many problems (default ${DEFAULT-VALUE})") int n;

  @Option(names = "--max-operations", defaultValue = "3", description = "1 to this many operations each (default ${DEFAULT-VALUE})")
  int maxOperations;

  @Option(names = "--seed", defaultValue = "0", description = "the same seed gives the same problems (default ${DEFAULT-VALUE})")
  long seed;

  @Option(names = "--out", description = "JSONL file to write (default: stdout)") Path out;

  @Override
  public Integer call() throws Exception {
    List<ArithmeticTasks.Example> examples = ArithmeticTasks.generate(domain, n, maxOperations, seed);
    try (Writer w = out == null
        ? new BufferedWriter(new OutputStreamWriter(System.out, StandardCharsets.UTF_8))
        : Files.newBufferedWriter(out, StandardCharsets.UTF_8)) {
      for (ArithmeticTasks.Example e : examples) {
        ObjectNode line = Json.object();
        line.put("prompt", e.prompt());
        line.put("answer", e.answer());
        line.put("domain", e.domain().name());
        line.put("boxed", e.boxed());
        w.write(Json.line(line));
        w.write('\n');
      }
    }
    if (out != null) {
      ObjectNode summary = Json.object();
      summary.put("file", out.toString());
      summary.put("domain", domain.name());
      summary.put("examples", examples.size());
      summary.put("seed", seed);
      System.out.println(Json.line(summary));
    }
    return 0;
  }
}
