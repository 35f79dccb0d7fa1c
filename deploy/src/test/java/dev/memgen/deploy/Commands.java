package dev.memgen.deploy;

import static org.junit.jupiter.api.Assertions.assertEquals;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.memgen.cli.Main;
import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.List;

/** Runs {@code memgen} commands in the test's JVM as the launcher would, from this checkout. */
final class Commands {
  static final Path ROOT = Path.of("").toAbsolutePath().getParent(); // tests run in deploy/

  private Commands() {}

  /**
   * Runs the command with its stdout captured (and echoed), checks that it exits 0, and returns its last line: the
   * summary JSON every command ends with.
   */
  static JsonNode summary(List<String> args) throws Exception {
    System.setProperty("memgen.home", ROOT.toString());
    ByteArrayOutputStream captured = new ByteArrayOutputStream();
    PrintStream stdout = System.out;
    int code;
    System.setOut(new PrintStream(captured, true, StandardCharsets.UTF_8));
    try {
      code = Main.run(args.toArray(String[]::new));
    } finally {
      System.setOut(stdout);
    }
    String out = captured.toString(StandardCharsets.UTF_8);
    System.out.print(out);
    assertEquals(0, code, out);
    List<String> lines = out.strip().lines().toList();
    return new ObjectMapper().readTree(lines.get(lines.size() - 1));
  }
}
