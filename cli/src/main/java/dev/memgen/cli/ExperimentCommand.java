package dev.memgen.cli;

import picocli.CommandLine.Command;

/** Experiments that reproduce the paper's claims at small scale. */
@Command(name = "experiment", mixinStandardHelpOptions = true,
    description = "Reproduce MemGen's claims at small scale.", subcommands = {ContinualExperiment.class})
final class ExperimentCommand {}
