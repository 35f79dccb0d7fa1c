package dev.memgen.cli;

import picocli.CommandLine.Command;

/** The memory's training stages. */
@Command(name = "train", mixinStandardHelpOptions = true,
    description = "Train the memory on a frozen base: weaver SFT, weaver GRPO, trigger RL.",
    subcommands = {TrainSftCommand.class, TrainRlCommand.Grpo.class, TrainRlCommand.Rft.class, TrainRlCommand.Trigger.class})
final class TrainCommand {}
