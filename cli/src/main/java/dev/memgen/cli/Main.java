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
      AdaptersCommand.class,
      KeysCommand.class,
      ImagesCommand.class,
      TrainerCommand.Admin.class,
      TrainerCommand.Feedback.class,
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

  /**
   * The project checkout this tool runs from ({@code memgen.home}, set by the ./memgen launcher; else found from
   * this jar's place, cli/target/memgen-cli.jar): where deploy/local/services.sh and the built services are.
   */
  static java.nio.file.Path home() {
    String set = System.getProperty("memgen.home");
    if (set != null) {
      return java.nio.file.Path.of(set);
    }
    try {
      java.nio.file.Path at = java.nio.file.Path.of(Main.class.getProtectionDomain().getCodeSource().getLocation().toURI());
      for (java.nio.file.Path p = at; p != null; p = p.getParent()) {
        if (java.nio.file.Files.isRegularFile(p.resolve("deploy/local/services.sh"))) {
          return p;
        }
      }
    } catch (java.net.URISyntaxException | SecurityException e) {
      // fall through
    }
    throw new IllegalArgumentException("cannot find the project checkout (deploy/local/services.sh): set -Dmemgen.home");
  }

  /** Runs a command line and returns its exit code (tests call this instead of main). */
  public static int run(String... args) {
    CommandLine cli = new CommandLine(new Main());
    cli.setExecutionExceptionHandler((e, commandLine, parseResult) -> {
      if (e instanceof CheckpointException || e instanceof IllegalArgumentException) {
        commandLine.getErr().println("memgen: " + e.getMessage());
        return 2;
      }
      if (e instanceof StartupException) {
        commandLine.getErr().println("memgen: " + e.getMessage());
        return 3;
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
