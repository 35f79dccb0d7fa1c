package dev.memgen.cli;

import dev.memgen.model.checkpoint.CheckpointException;
import dev.memgen.model.train.TrainingDivergedException;
import picocli.CommandLine;
import picocli.CommandLine.Command;

/** {@code ./memgen}: results on stdout, progress and timings on stderr; summaries end with one JSON line. */
@Command(
    name = "memgen",
    mixinStandardHelpOptions = true,
    version = "memgen 0.1.0",
    description = "Generative latent memory (MemGen) for LLM agents, on the JVM.",
    subcommands = {
      DemoCommand.class,
      InitMemoryCommand.class,
      ForwardCommand.class,
      GenerateCommand.class,
      MakeTinyCommand.class,
      ServeCommand.class,
      TasksCommand.class,
      EvalCommand.class,
      PretrainCommand.class,
      TrainCommand.class,
      ExperimentCommand.class,
      LogCommand.class,
      BenchCommand.class,
    })
public final class Main implements Runnable {
  @CommandLine.Spec CommandLine.Model.CommandSpec spec;

  @Override
  public void run() {
    spec.commandLine().usage(System.err);
  }

  public static void main(String[] args) {
    System.exit(run(args));
  }

  /** Runs a command line and returns its exit code (tests call this instead of main). */
  public static int run(String... args) {
    CommandLine cli = new CommandLine(new Main());
    cli.setExecutionExceptionHandler((e, commandLine, parseResult) -> {
      if (e instanceof CheckpointException || e instanceof IllegalArgumentException) {
        commandLine.getErr().println("memgen: " + e.getMessage());
        return 2;
      }
      if (e instanceof TrainingDivergedException) {
        commandLine.getErr().println("memgen: " + e.getMessage());
        return 1;
      }
      throw e;
    });
    return cli.execute(args);
  }
}
