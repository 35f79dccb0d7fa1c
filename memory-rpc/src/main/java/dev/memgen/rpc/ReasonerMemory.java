package dev.memgen.rpc;

import dev.memgen.model.Decoder;
import dev.memgen.model.generate.MemGenInterleaver;
import dev.memgen.model.memory.InProcessMemory;
import dev.memgen.model.memory.Memory;
import dev.memgen.model.memory.TriggerLink;
import dev.memgen.model.memory.WeaverLink;
import dev.memgen.model.text.DelimiterTable;
import io.grpc.ManagedChannel;
import io.grpc.ManagedChannelBuilder;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.function.Function;

/**
 * How a reasoner reaches its memory, one interface whatever the transport: embedded (the weaver and trigger run
 * on the reasoner's own copy of the base weights) or remote (weaver-service and trigger-service over gRPC). The
 * generate loop gets the same {@link MemGenInterleaver} either way, and for a fixed seed the same tokens.
 */
public final class ReasonerMemory implements AutoCloseable {
  private final WeaverLink weaver;
  private final TriggerLink trigger; // null: no trigger, every delimiter invokes the weaver (up to the cap)
  private final DelimiterTable delimiters;
  private final int maxInferenceAug;
  private final String description;
  private final AutoCloseable resources;

  private ReasonerMemory(WeaverLink weaver, TriggerLink trigger, DelimiterTable delimiters, int maxInferenceAug,
      String description, AutoCloseable resources) {
    this.weaver = weaver;
    this.trigger = trigger;
    this.delimiters = delimiters;
    this.maxInferenceAug = maxInferenceAug;
    this.description = description;
    this.resources = resources;
  }

  /**
   * The memory in {@code memoryDir}, on {@code base} (one copy of the weights for reasoner, weaver and trigger).
   *
   * @param delimiters builds the base vocabulary's delimiter table from the manifest's delimiter strings
   */
  public static ReasonerMemory embedded(Decoder base, String baseFingerprint, Path memoryDir,
      Function<List<String>, DelimiterTable> delimiters) {
    Memory memory = Memory.load(memoryDir, base, baseFingerprint);
    try {
      InProcessMemory links = new InProcessMemory(base, memory);
      return new ReasonerMemory(links.weaver(), links.trigger(), delimiters.apply(memory.manifest().delimiters()),
          memory.manifest().maxInferenceAug(), "embedded memory " + memoryDir + " (version " + memory.manifest().version() + ")",
          memory);
    } catch (RuntimeException e) {
      memory.close();
      throw e;
    }
  }

  /**
   * A weaver-service at {@code weaverTarget} and, unless null, a trigger-service at {@code triggerTarget}
   * ({@code host:port} or any gRPC target), plaintext.
   */
  public static ReasonerMemory remote(String weaverTarget, String triggerTarget, String baseFingerprint, int hiddenSize,
      String adapterName, Duration deadline, DelimiterTable delimiters, int maxInferenceAug) {
    ManagedChannel weaverChannel = ManagedChannelBuilder.forTarget(weaverTarget).usePlaintext().build();
    ManagedChannel triggerChannel = triggerTarget == null ? null
        : triggerTarget.equals(weaverTarget) ? weaverChannel
        : ManagedChannelBuilder.forTarget(triggerTarget).usePlaintext().build();
    return new ReasonerMemory(
        new RemoteWeaver(weaverChannel, baseFingerprint, hiddenSize, adapterName, deadline),
        triggerChannel == null ? null : new RemoteTrigger(triggerChannel, baseFingerprint, adapterName, deadline),
        delimiters, maxInferenceAug,
        "weaver-service at " + weaverTarget + (triggerTarget == null ? ", no trigger" : ", trigger-service at " + triggerTarget),
        () -> {
          for (ManagedChannel c : triggerChannel == null || triggerChannel == weaverChannel
              ? List.of(weaverChannel) : List.of(weaverChannel, triggerChannel)) {
            c.shutdownNow().awaitTermination(5, TimeUnit.SECONDS);
          }
        });
  }

  /** The memory's default cap on inference insertions per sequence. */
  public int maxInferenceAug() {
    return maxInferenceAug;
  }

  public boolean hasTrigger() {
    return trigger != null;
  }

  /**
   * One session per sequence of a batch, and the rule that drives them. Without a trigger the mode is forced to
   * INACTIVE (every delimiter invokes, up to the cap).
   */
  public MemGenInterleaver open(List<String> sessionIds, MemGenInterleaver.Options options) {
    List<WeaverLink.Session> weavers = new ArrayList<>();
    List<TriggerLink.Session> triggers = new ArrayList<>();
    boolean useTrigger = trigger != null && options.triggerMode() != MemGenInterleaver.TriggerMode.INACTIVE;
    for (String id : sessionIds) {
      weavers.add(weaver.open(id));
      triggers.add(useTrigger ? trigger.open(id) : null);
    }
    MemGenInterleaver.Options effective = useTrigger ? options : new MemGenInterleaver.Options(options.promptLatents(),
        options.maxInferenceAug(), MemGenInterleaver.TriggerMode.INACTIVE, options.threshold(), options.seed());
    return new MemGenInterleaver(weavers, triggers, delimiters, effective);
  }

  @Override
  public String toString() {
    return description;
  }

  @Override
  public void close() {
    try {
      resources.close();
    } catch (Exception e) {
      if (e instanceof InterruptedException) {
        Thread.currentThread().interrupt();
      }
    }
  }
}
