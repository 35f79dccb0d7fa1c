package dev.memgen.model.memory;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.JsonNodeFactory;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.memgen.model.LoraAdapter.Target;
import java.util.ArrayList;
import java.util.List;

/** Rank, alpha, target layers and dropout of a LoRA (reference setting: r=16, alpha=32, q_proj and v_proj, 0.1). */
public record LoraConfig(int rank, double alpha, List<Target> targets, double dropout) {
  public static final LoraConfig REFERENCE = new LoraConfig(16, 32, List.of(Target.Q_PROJ, Target.V_PROJ), 0.1);

  public LoraConfig {
    if (rank < 1) {
      throw new IllegalArgumentException("LoRA rank must be >= 1, got " + rank);
    }
    if (!(alpha > 0)) {
      throw new IllegalArgumentException("LoRA alpha must be > 0, got " + alpha);
    }
    if (targets.isEmpty() || targets.stream().distinct().count() != targets.size()) {
      throw new IllegalArgumentException("LoRA targets must be non-empty and distinct, got " + targets);
    }
    if (!(dropout >= 0 && dropout < 1)) {
      throw new IllegalArgumentException("LoRA dropout must be in [0, 1), got " + dropout);
    }
    targets = List.copyOf(targets);
  }

  static LoraConfig parse(JsonNode n, String where) {
    List<Target> targets = new ArrayList<>();
    for (JsonNode t : n.path("targets")) {
      targets.add(Target.of(t.asText()));
    }
    try {
      return new LoraConfig(n.path("r").asInt(0), n.path("alpha").asDouble(0), targets, n.path("dropout").asDouble(0));
    } catch (IllegalArgumentException e) {
      throw new IllegalArgumentException(where + ": " + e.getMessage(), e);
    }
  }

  ObjectNode toJson() {
    ObjectNode n = JsonNodeFactory.instance.objectNode();
    n.put("r", rank);
    n.put("alpha", alpha);
    var t = n.putArray("targets");
    targets.forEach(x -> t.add(x.hfName));
    n.put("dropout", dropout);
    return n;
  }
}
