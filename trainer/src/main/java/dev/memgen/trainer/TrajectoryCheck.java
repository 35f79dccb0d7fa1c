package dev.memgen.trainer;

import dev.memgen.model.ModelConfig;
import dev.memgen.model.memory.MemoryManifest;
import dev.memgen.model.text.DelimiterTable;
import dev.memgen.proto.v1.FinishReason;
import dev.memgen.proto.v1.InsertionPoint;
import dev.memgen.proto.v1.TriggerDecision;
import dev.memgen.proto.v1.Trajectory;
import java.util.List;

/**
 * What makes a consumed trajectory unfit for the trainer, checked before anything reads its tokens: a record that
 * fails here is dead-lettered with the reason, naming the field, so it can never stall training (DJL's native side
 * must not see a token id outside the vocabulary, and a sequence longer than the context is not a sequence this model
 * ever produced).
 *
 * <p>Every record is checked for what makes it a trajectory at all (schema version, id, a prompt). A trajectory of
 * this trainer's adapter is checked against the base and memory it trains: the base fingerprint, token ids inside the
 * vocabulary, a length that fits the model's context with the latent rows training inserts (and the
 * operator's {@code memgen.trainer.max-trajectory-tokens}), finite probabilities and sampling settings, insertion and decision
 * points inside the completion. Trajectories of other adapters are another trainer's to judge.
 */
record TrajectoryCheck(String adapterName, String fingerprint, int vocabSize, int maxPositions, MemoryManifest memory,
    DelimiterTable delimiters, int maxTokens) {

  /**
   * @param maxTrajectoryTokens the operator's limit on prompt + completion tokens; 0: only the model's context
   */
  static TrajectoryCheck of(String adapterName, String fingerprint, ModelConfig base, MemoryManifest memory,
      DelimiterTable delimiters, int maxTrajectoryTokens) {
    return new TrajectoryCheck(adapterName, fingerprint, base.vocabSize(), base.maxPositions(), memory, delimiters,
        maxTrajectoryTokens);
  }

  /** Null when {@code t} may be used, else what is wrong with it. */
  String problem(Trajectory t) {
    if (t.getSchemaVersion() != 1) {
      return "schema_version " + t.getSchemaVersion() + " (this trainer reads 1)";
    }
    if (t.getTrajectoryId().isEmpty()) {
      return "trajectory_id is empty";
    }
    if (t.getPromptTokenIdsCount() == 0) {
      return "prompt_token_ids is empty";
    }
    if (!t.getAdapterName().equals(adapterName)) {
      return null;
    }
    if (!t.getBaseFingerprint().equals(fingerprint)) {
      return "base_fingerprint '" + t.getBaseFingerprint() + "' is not the base adapter '" + adapterName + "' is trained on ("
          + fingerprint + ")";
    }
    String ids = outsideVocabulary("prompt_token_ids", t.getPromptTokenIdsList());
    if (ids == null) {
      ids = outsideVocabulary("completion_token_ids", t.getCompletionTokenIdsList());
    }
    if (ids != null) {
      return ids;
    }
    int tokens = t.getPromptTokenIdsCount() + t.getCompletionTokenIdsCount();
    int latentRows = latentRows(t);
    if (tokens + latentRows > maxPositions) {
      return "prompt (" + t.getPromptTokenIdsCount() + ") + completion (" + t.getCompletionTokenIdsCount() + ") tokens + "
          + latentRows + " latent rows = " + (tokens + latentRows) + " positions exceed the model's context of " + maxPositions
          + " (max_position_embeddings)";
    }
    if (maxTokens > 0 && tokens > maxTokens) {
      return "prompt (" + t.getPromptTokenIdsCount() + ") + completion (" + t.getCompletionTokenIdsCount() + ") = " + tokens
          + " tokens exceed memgen.trainer.max-trajectory-tokens = " + maxTokens;
    }
    int completion = t.getCompletionTokenIdsCount();
    for (int i = 0; i < t.getInsertionsCount(); i++) {
      InsertionPoint p = t.getInsertions(i);
      String at = "insertions[" + i + "]";
      if (p.getK() < 1) {
        return at + ".k = " + p.getK() + ": a block has at least one row";
      }
      if (p.getPosition() < 0 || p.getTokenIndex() < 0 || p.getTokenIndex() > completion) {
        return at + ": position " + p.getPosition() + ", token_index " + p.getTokenIndex() + " is not inside a completion of "
            + completion + " tokens";
      }
      if (p.hasTriggerProbability() && !probability(p.getTriggerProbability())) {
        return at + ".trigger_probability = " + p.getTriggerProbability() + " is not a probability";
      }
    }
    for (int i = 0; i < t.getTriggerDecisionsCount(); i++) {
      TriggerDecision d = t.getTriggerDecisions(i);
      if (!probability(d.getProbability())) {
        return "trigger_decisions[" + i + "].probability = " + d.getProbability() + " is not a probability";
      }
      if (d.getPosition() < 0 || d.getTokenIndex() < 1 || d.getTokenIndex() > completion) {
        return "trigger_decisions[" + i + "]: position " + d.getPosition() + ", token_index " + d.getTokenIndex()
            + " is not inside a completion of " + completion + " tokens";
      }
    }
    float temperature = t.getSampling().getTemperature();
    float topP = t.getSampling().getTopP();
    if (!Float.isFinite(temperature) || temperature < 0) {
      return "sampling.temperature = " + temperature + " is not a finite value >= 0";
    }
    if (!Float.isFinite(topP) || topP < 0 || topP > 1) {
      return "sampling.top_p = " + topP + " is not in [0, 1]";
    }
    if (t.getSampling().getTopK() < 0) {
      return "sampling.top_k = " + t.getSampling().getTopK() + " is negative";
    }
    if (t.getLatencyMs() < 0) {
      return "latency_ms = " + t.getLatencyMs() + " is negative";
    }
    return null;
  }

  /**
   * Null when the trainer can learn from this valid trajectory of its adapter, else why not (it is skipped, not
   * dead-lettered: nothing is wrong with it).
   */
  static String unusable(Trajectory t) {
    if (!t.getMemoryEnabled()) {
      return "memory was disabled";
    }
    if (t.getFinishReason() != FinishReason.STOP_TOKEN && t.getFinishReason() != FinishReason.LENGTH) {
      return "finished with " + t.getFinishReason(); // a cancelled or failed generation is not an answer
    }
    if (t.getCompletionTokenIdsCount() == 0) {
      return "nothing was generated";
    }
    return null;
  }

  /**
   * The memory rows training inserts into {@code t} (the rule of {@code TeacherForcing.inferenceSlots}: prompt rows,
   * and inference rows after each of the first max_inference_aug delimiters of the answer but its last token).
   */
  private int latentRows(Trajectory t) {
    int slots = 0;
    for (int i = 0; i < t.getCompletionTokenIdsCount() - 1 && slots < memory.maxInferenceAug(); i++) {
      if (delimiters.isDelimiter(t.getCompletionTokenIds(i))) {
        slots++;
      }
    }
    return memory.promptK() + slots * memory.inferenceK();
  }

  private String outsideVocabulary(String field, List<Integer> ids) {
    for (int i = 0; i < ids.size(); i++) {
      int id = ids.get(i);
      if (id < 0 || id >= vocabSize) {
        return field + "[" + i + "] = " + id + " is outside the vocabulary [0, " + vocabSize + ")";
      }
    }
    return null;
  }

  private static boolean probability(float p) {
    return Float.isFinite(p) && p >= 0 && p <= 1;
  }
}
