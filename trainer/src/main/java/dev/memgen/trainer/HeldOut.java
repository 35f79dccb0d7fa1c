package dev.memgen.trainer;

import dev.memgen.model.data.ArithmeticTasks;
import dev.memgen.model.data.QaDataset;
import dev.memgen.model.eval.Evaluator;
import dev.memgen.model.text.ChatTemplate;
import java.io.IOException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

/** The trainer's held-out set from its specification ({@code memgen.trainer.eval-set}). */
public final class HeldOut {
  private HeldOut() {}

  /**
   * The held-out problems: {@code arithmetic:N} is N problems of each of the task suite's domains ({@code
   * arithmetic:N:A,C}: of those domains; A and B with 1-2 operations, what {@code memgen pretrain} trains on; a seed
   * no traffic generator uses), anything else a JSONL file of chat problems with expected answers.
   */
  public static List<Evaluator.Problem> parse(String spec) throws IOException {
    List<Evaluator.Problem> out = new ArrayList<>();
    if (spec.startsWith("arithmetic:")) {
      String[] parts = spec.split(":", -1);
      if (parts.length > 3) {
        throw new IllegalArgumentException("memgen.trainer.eval-set: expected arithmetic:N or arithmetic:N:DOMAINS, got " + spec);
      }
      int n = Integer.parseInt(parts[1]);
      List<ArithmeticTasks.Domain> domains = new ArrayList<>();
      if (parts.length == 3) {
        for (String d : parts[2].split(",")) {
          try {
            domains.add(ArithmeticTasks.Domain.valueOf(d.trim()));
          } catch (IllegalArgumentException e) {
            throw new IllegalArgumentException("memgen.trainer.eval-set: unknown domain '" + d + "' in " + spec + " (known: "
                + java.util.Arrays.toString(ArithmeticTasks.Domain.values()) + ")");
          }
        }
      } else {
        domains.addAll(List.of(ArithmeticTasks.Domain.values()));
      }
      for (ArithmeticTasks.Domain d : domains) {
        for (ArithmeticTasks.Example e : ArithmeticTasks.generate(d, n, 2, 0x5EED_0E7A1L)) {
          out.add(new Evaluator.Problem(ChatTemplate.userPrompt(e.prompt()), e.boxed()));
        }
      }
      return out;
    }
    QaDataset.Loaded loaded = QaDataset.read(Path.of(spec), QaDataset.OnBadRecord.FAIL, QaDataset.Expected.REQUIRED);
    for (QaDataset.Example e : loaded.examples()) {
      out.add(new Evaluator.Problem(e.chatPrompt(), e.expected()));
    }
    return out;
  }}
