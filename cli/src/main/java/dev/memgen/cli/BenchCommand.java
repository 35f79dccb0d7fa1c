package dev.memgen.cli;

import picocli.CommandLine;
import picocli.CommandLine.Command;

/** Benchmarks: commands that measure, never tests that assert timings. */
@Command(name = "bench", mixinStandardHelpOptions = true, description = "Benchmarks (results on stdout, JSON last line).",
    subcommands = {BenchDecodeCommand.class, BenchMemgenCommand.class, BenchTrainCommand.class, BenchLoopCommand.class,
        BenchLoadCommand.class, BenchSoakCommand.class})
final class BenchCommand implements Runnable {
  @CommandLine.Spec CommandLine.Model.CommandSpec spec;

  @Override
  public void run() {
    spec.commandLine().usage(System.err);
  }
}
