package dev.memgen.cli;

import java.io.PrintStream;

/** A one-line progress bar on stderr (redrawn in place on a terminal, one line per update otherwise). */
final class Progress implements AutoCloseable {
  private final PrintStream err = System.err;
  private final String label;
  private final int total;
  private final boolean terminal = System.console() != null;
  private int done;

  Progress(String label, int total) {
    this.label = label;
    this.total = total;
    draw("");
  }

  void step(String detail) {
    done++;
    draw(detail);
  }

  private void draw(String detail) {
    int width = 24;
    int filled = total == 0 ? width : done * width / total;
    String bar = "#".repeat(filled) + ".".repeat(width - filled);
    String line = String.format("%s [%s] %d/%d %s", label, bar, done, total, detail);
    if (terminal) {
      err.print("\r" + line + "\033[K");
    } else if (done > 0 && (done == total || done * 10 / total != (done - 1) * 10 / total)) {
      err.println(line); // not a terminal (a log, CI): every tenth, not every step
    }
  }

  @Override
  public void close() {
    if (terminal) {
      err.println();
    }
  }
}
