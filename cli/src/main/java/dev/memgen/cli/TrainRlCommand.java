package dev.memgen.cli;

import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.memgen.model.Decoder;
import dev.memgen.model.checkpoint.Checkpoint;
import dev.memgen.model.data.QaDataset;
import dev.memgen.model.eval.Evaluator;
import dev.memgen.model.memory.MemoryManifest;
import dev.memgen.model.text.DelimiterTable;
import dev.memgen.model.text.TextTokenizer;
import dev.memgen.model.train.AdamW;
import dev.memgen.model.train.RejectionSampling;
import dev.memgen.model.train.Reward;
import dev.memgen.model.train.TriggerRl;
import dev.memgen.model.train.WeaverGrpo;
import dev.memgen.model.train.WeaverSft;
import java.nio.file.Path;
import java.util.List;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

/** The two RL stages: weaver GRPO (trigger inactive) and trigger RL (weaver frozen). */
abstract class TrainRlCommand implements Callable<Integer> {
  @Option(names = "--model", required = true, description = "the frozen base checkpoint (with tokenizer.json)") Path model;

  @Option(names = "--memory", required = true, description = "the memory to start from") Path memory;

  @Option(names = "--data", required = true, description = "JSONL of problems with an expected result (prompt/answer or messages, [boxed])")
  Path data;

  @Option(names = "--out", required = true, description = "directory for the trained memory (and its checkpoint)") Path out;

  @Option(names = "--reward", defaultValue = "boxed-math", description = "boxed-math, qa-exact or qa-contains (default ${DEFAULT-VALUE})")
  String reward;

  @Option(names = "--steps", defaultValue = "100", description = "updates (default ${DEFAULT-VALUE})") int steps;

  @Option(names = "--problems", defaultValue = "8", description = "problems per update (default ${DEFAULT-VALUE})") int problems;

  @Option(names = "--group", defaultValue = "8", description = "samples per problem (default ${DEFAULT-VALUE})") int group;

  @Option(names = "--max-new-tokens", defaultValue = "64", description = "(default ${DEFAULT-VALUE})") int maxNewTokens;

  @Option(names = "--temperature", defaultValue = "1.0", description = "sampling temperature (default ${DEFAULT-VALUE})") double temperature;

  @Option(names = "--checkpoint-every", defaultValue = "20", description = "updates between checkpoints, 0 for none (default ${DEFAULT-VALUE})")
  int checkpointEvery;

  @Option(names = "--seed", defaultValue = "0") long seed;

  @Option(names = "--on-bad-record", defaultValue = "fail", description = "skip or fail (default ${DEFAULT-VALUE})") String onBadRecord;

  /** Runs the stage; returns its summary. */
  abstract ObjectNode train(Decoder base, String fingerprint, TextTokenizer tokenizer, List<Evaluator.Problem> problems,
      Reward reward, DelimiterTable delimiters) throws Exception;

  @Override
  public Integer call() throws Exception {
    Training.useAllCores();
    Reward r = Reward.named(reward);
    QaDataset.Loaded loaded = QaDataset.read(data, QaDataset.OnBadRecord.parse(onBadRecord));
    loaded.skipped().forEach(b -> System.err.println("skipped " + data + ":" + b.line() + ": " + b.reason()));
    List<Evaluator.Problem> list = loaded.examples().stream().map(e -> new Evaluator.Problem(e.chatPrompt(), e.expected())).toList();
    try (Decoder base = Decoder.load(model); TextTokenizer tokenizer = TextTokenizer.load(model)) {
      DelimiterTable delimiters = DelimiterTable.build(tokenizer, base.config().vocabSize(), MemoryManifest.read(memory).delimiters());
      ObjectNode json = train(base, Checkpoint.open(model).fingerprint(), tokenizer, list, r, delimiters);
      json.put("out", out.toString());
      json.put("problems", list.size());
      json.put("skipped", loaded.skipped().size());
      System.out.println(Json.line(json));
    }
    return 0;
  }

  @Command(name = "grpo", mixinStandardHelpOptions = true,
      description = "Weaver GRPO: sampled groups, group-normalised advantages, PPO-clip, optional KL to the starting weaver. "
          + "Resumes from OUT/checkpoint. Last line: JSON.")
  static final class Grpo extends TrainRlCommand {
    @Option(names = "--lr", defaultValue = "1e-5", description = "(default ${DEFAULT-VALUE}, the reference's)") double lr;

    @Option(names = "--clip", defaultValue = "0.2", description = "PPO clip epsilon (default ${DEFAULT-VALUE})") double clip;

    @Option(names = "--kl", defaultValue = "0", description = "KL coefficient (default ${DEFAULT-VALUE}, as the reference)") double kl;

    @Option(names = "--updates-per-batch", defaultValue = "1", description = "(default ${DEFAULT-VALUE})") int updates;

    @Option(names = "--micro-batch", defaultValue = "16", description = "sequences per forward/backward (default ${DEFAULT-VALUE})")
    int microBatch;

    @Override
    ObjectNode train(Decoder base, String fingerprint, TextTokenizer tokenizer, List<Evaluator.Problem> list, Reward r,
        DelimiterTable delimiters) throws Exception {
      WeaverGrpo.Result result;
      try (Progress p = new Progress("weaver grpo", steps)) {
        result = WeaverGrpo.train(base, fingerprint, tokenizer, memory, out, list, r, delimiters,
            new WeaverGrpo.Settings(steps, problems, group, lr, 0, clip, kl, updates, microBatch, maxNewTokens, temperature,
                AdamW.Settings.DEFAULT, checkpointEvery, seed),
            (step, total, reward, loss, informative) ->
                p.step(String.format("reward %.3f objective %.4f groups with signal %.0f%%", reward, -loss, 100 * informative)));
      }
      ObjectNode json = Json.object();
      json.put("version", result.manifest().version());
      json.put("steps", result.steps());
      json.put("final_mean_reward", result.lastMeanReward());
      json.put("seconds", result.seconds());
      return json;
    }
  }

  @Command(name = "rft", mixinStandardHelpOptions = true,
      description = "Weaver rejection-sampling fine-tuning (expert iteration): each round samples --group answers per "
          + "problem with the current memory, keeps the distinct ones the reward accepts, and trains the weaver on them "
          + "by SFT (--steps updates). Learns from the reward alone: the expected results only score. Last line: JSON.")
  static final class Rft extends TrainRlCommand {
    @Option(names = "--rounds", defaultValue = "2", description = "sample-then-train rounds (default ${DEFAULT-VALUE})") int rounds;

    @Option(names = "--lr", defaultValue = "3e-3", description = "SFT learning rate (default ${DEFAULT-VALUE})") double lr;

    @Option(names = "--batch", defaultValue = "16", description = "SFT examples per update (default ${DEFAULT-VALUE})") int batch;

    @Option(names = "--max-per-problem", defaultValue = "2", description = "distinct accepted answers kept per problem "
        + "(default ${DEFAULT-VALUE})") int maxPerProblem;

    @Option(names = "--base-samples", defaultValue = "0", description = "also sample this many answers per problem from "
        + "the frozen base alone (memory off), kept when rewarded (default ${DEFAULT-VALUE})") int baseSamples;

    @Override
    ObjectNode train(Decoder base, String fingerprint, TextTokenizer tokenizer, List<Evaluator.Problem> list, Reward r,
        DelimiterTable delimiters) throws Exception {
      if (rounds < 1) {
        throw new IllegalArgumentException("need --rounds >= 1");
      }
      long t0 = System.nanoTime();
      Path current = memory;
      com.fasterxml.jackson.databind.node.ArrayNode perRound = Json.MAPPER.createArrayNode();
      for (int round = 0; round < rounds; round++) {
        RejectionSampling.Result found;
        try (dev.memgen.model.memory.Memory m = dev.memgen.model.memory.Memory.load(current, base, fingerprint)) {
          found = RejectionSampling.sample(base, tokenizer, m, delimiters, list, r, new RejectionSampling.Settings(group,
              baseSamples, temperature, maxNewTokens, 1.0, maxPerProblem, seed * 1_000_003L + round));
        }
        System.err.printf("round %d: %.1f%% of %d rollouts rewarded, %d/%d problems solved, %d SFT targets%n", round + 1,
            100 * found.rolloutAccuracy(), list.size() * found.samples(), found.solved(), list.size(), found.all().size());
        ObjectNode o = Json.object();
        o.put("rollout_accuracy", found.rolloutAccuracy());
        o.put("solved", found.solved());
        o.put("targets", found.all().size());
        perRound.add(o);
        if (found.all().isEmpty()) {
          System.err.println("nothing accepted: the reward never fires on these problems; stopping");
          break;
        }
        Path next = round == rounds - 1 ? out : out.resolveSibling(out.getFileName() + ".round" + (round + 1));
        try (Training.Bar bar = new Training.Bar("rft round " + (round + 1), steps)) {
          WeaverSft.train(base, fingerprint, current, next, found.all(), delimiters,
              new WeaverSft.Settings(steps, batch, 1, lr, Math.min(50, steps / 10), 0.1, AdamW.Settings.DEFAULT, checkpointEvery, seed + round),
              bar);
        }
        current = next;
      }
      ObjectNode json = Json.object();
      json.set("rounds", perRound);
      json.put("seconds", (System.nanoTime() - t0) / 1e9);
      return json;
    }
  }

  @Command(name = "trigger", mixinStandardHelpOptions = true,
      description = "Trigger RL with the weaver frozen, with the reward-adaptive invocation penalty. Resumes from "
          + "OUT/checkpoint. Last line: JSON.")
  static final class Trigger extends TrainRlCommand {
    @Option(names = "--lr", defaultValue = "1e-4", description = "(default ${DEFAULT-VALUE})") double lr;

    @Option(names = "--penalty", defaultValue = "0.1", description = "lambda of the invocation penalty (default ${DEFAULT-VALUE})")
    double penalty;

    @Override
    ObjectNode train(Decoder base, String fingerprint, TextTokenizer tokenizer, List<Evaluator.Problem> list, Reward r,
        DelimiterTable delimiters) throws Exception {
      TriggerRl.Result result;
      try (Progress p = new Progress("trigger rl", steps)) {
        result = TriggerRl.train(base, fingerprint, tokenizer, memory, out, list, r, delimiters,
            new TriggerRl.Settings(steps, problems, group, lr, 0, penalty, maxNewTokens, temperature, AdamW.Settings.DEFAULT,
                checkpointEvery, seed),
            (step, total, reward, rate, reference) ->
                p.step(String.format("reward %.3f invocation rate %.2f (reference %.2f)", reward, rate, reference)));
      }
      ObjectNode json = Json.object();
      json.put("version", result.manifest().version());
      json.put("steps", result.steps());
      json.put("final_mean_reward", result.lastMeanReward());
      json.put("final_invocation_rate", result.lastInvocationRate());
      json.put("seconds", result.seconds());
      return json;
    }
  }
}
