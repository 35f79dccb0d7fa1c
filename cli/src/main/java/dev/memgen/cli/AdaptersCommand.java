package dev.memgen.cli;

import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.memgen.log.AdapterLog;
import dev.memgen.log.ExperienceLog;
import dev.memgen.log.Topics;
import dev.memgen.log.store.AdapterStore;
import dev.memgen.proto.v1.AdapterComponent;
import dev.memgen.proto.v1.AdapterPublished;
import dev.memgen.trainer.HeldOut;
import dev.memgen.trainer.VersionRebuild;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.time.temporal.ChronoUnit;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import java.util.concurrent.Callable;
import java.util.stream.Collectors;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;
import picocli.CommandLine.Parameters;

/**
 * The adapter store and the adapters topic from the command line: which versions exist and which is current,
 * rolling an adapter back to an earlier version (an announcement services follow like any other), and rebuilding a
 * version from its parent and the log to audit it.
 */
@Command(name = "adapters", mixinStandardHelpOptions = true,
    description = "Adapter versions: list the store (and what is current), roll back, rebuild one to audit it.",
    subcommands = {AdaptersCommand.ListVersions.class, AdaptersCommand.Rollback.class, AdaptersCommand.Rebuild.class})
final class AdaptersCommand {
  /** How long to wait for the broker before giving up with a message naming it. */
  static final Duration BROKER_TIMEOUT = Duration.ofSeconds(30);

  private AdaptersCommand() {}

  static AdapterStore store(Path dir) throws IOException {
    if (!Files.isDirectory(dir.resolve("adapters"))) {
      throw new IllegalArgumentException("--store " + dir + " is not an adapter store (no adapters/ directory in it)");
    }
    return AdapterStore.open(dir);
  }

  /** The current announcement per key ({@code name/weaver}, {@code name/trigger}) on the adapters topic. */
  static Map<String, AdapterPublished> current(String bootstrap) {
    try {
      return AdapterLog.current(bootstrap, BROKER_TIMEOUT);
    } catch (org.apache.kafka.common.errors.TimeoutException | IllegalStateException e) {
      throw new IllegalArgumentException("--bootstrap " + bootstrap + ": cannot read " + Topics.ADAPTERS + " within "
          + BROKER_TIMEOUT.toSeconds() + " s (" + e.getMessage() + ")", e);
    }
  }

  static AdapterComponent component(String name) {
    return switch (name) {
      case "weaver" -> AdapterComponent.WEAVER;
      case "trigger" -> AdapterComponent.TRIGGER;
      default -> throw new IllegalArgumentException("--component '" + name + "': must be weaver or trigger");
    };
  }

  @Command(name = "list", mixinStandardHelpOptions = true,
      description = "Every version in the adapter store (name, version, parent, base, metrics, offsets, created); with "
          + "--bootstrap, which one is current per the adapters topic. Last line: JSON.")
  static final class ListVersions implements Callable<Integer> {
    @Option(names = "--store", required = true, description = "the adapter store directory") Path storeDir;

    @Option(names = "--bootstrap", description = "Kafka bootstrap servers: mark the current versions") String bootstrap;

    @Option(names = "--name", description = "only this adapter") String name;

    @Override
    public Integer call() throws Exception {
      AdapterStore store = store(storeDir);
      List<String> names = name == null ? store.names() : List.of(name);
      Map<String, AdapterPublished> current = bootstrap == null ? Map.of() : current(bootstrap);
      ObjectNode out = Json.object();
      out.put("store", storeDir.toString());
      ArrayNode rows = out.putArray("versions");
      System.out.printf("%-16s %7s %7s %-12s %-20s %-8s %s%n", "NAME", "VERSION", "PARENT", "BASE", "CREATED",
          "CURRENT", "METRICS / OFFSETS");
      for (String n : names) {
        List<AdapterStore.Version> versions = store.versions(n);
        if (versions.isEmpty() && name != null) {
          throw new IllegalArgumentException("--name " + n + ": the store " + storeDir + " has no versions of it");
        }
        for (AdapterStore.Version v : versions) {
          List<String> currentFor = new ArrayList<>();
          for (AdapterComponent c : List.of(AdapterComponent.WEAVER, AdapterComponent.TRIGGER)) {
            AdapterPublished a = current.get(AdapterLog.key(n, c));
            if (a != null && a.getVersion() == v.version()) {
              currentFor.add(c.name().toLowerCase());
            }
          }
          System.out.printf("%-16s %7d %7d %-12s %-20s %-8s %s | %s%n", n, v.version(), v.parent(),
              prefix(v.baseFingerprint()), v.created().truncatedTo(ChronoUnit.SECONDS),
              currentFor.isEmpty() ? "-" : String.join(",", currentFor), text(v.metrics()), text(v.offsets())
                  + (v.counts().isEmpty() ? "" : " | trajectories " + text(v.counts())));
          ObjectNode row = rows.addObject();
          row.put("name", n);
          row.put("version", v.version());
          row.put("parent", v.parent());
          row.put("base_fingerprint", v.baseFingerprint());
          row.put("created", v.created().toString());
          ObjectNode metrics = row.putObject("metrics");
          new TreeMap<>(v.metrics()).forEach(metrics::put);
          ObjectNode offsets = row.putObject("offsets");
          new TreeMap<>(v.offsets()).forEach(offsets::put);
          ObjectNode trajectories = row.putObject("trajectories"); // its ledger's outcomes, by id
          new TreeMap<>(v.counts()).forEach(trajectories::put);
          ArrayNode cur = row.putArray("current");
          currentFor.forEach(cur::add);
        }
      }
      if (bootstrap != null) {
        ObjectNode cur = out.putObject("current");
        for (AdapterPublished a : current.values()) {
          if (name != null && !a.getAdapterName().equals(name)) {
            continue;
          }
          String key = AdapterLog.key(a.getAdapterName(), a.getComponent());
          cur.put(key, a.getVersion());
          if (store.versions(a.getAdapterName()).stream().noneMatch(v -> v.version() == a.getVersion())) {
            System.err.printf("warning: %s v%d is current on %s but not in the store %s%n", key, a.getVersion(),
                Topics.ADAPTERS, storeDir);
          }
        }
      }
      System.out.println(Json.line(out));
      return 0;
    }

    static String prefix(String fingerprint) {
      String f = fingerprint.startsWith("sha256:") ? fingerprint.substring("sha256:".length()) : fingerprint;
      return f.length() <= 12 ? f : f.substring(0, 12);
    }

    static String text(Map<String, ?> m) {
      return m.isEmpty() ? "-" : new TreeMap<>(m).entrySet().stream().map(e -> e.getKey() + "=" + e.getValue())
          .collect(Collectors.joining(" "));
    }
  }

  @Command(name = "rollback", mixinStandardHelpOptions = true,
      description = "Make an earlier version of an adapter current again: checks it is intact in the store, then "
          + "announces it on the adapters topic (services that follow it swap to it for new sessions). Last line: JSON.")
  static final class Rollback implements Callable<Integer> {
    @Parameters(index = "0", description = "adapter name") String name;

    @Parameters(index = "1", description = "the version to make current") long version;

    @Option(names = "--store", required = true, description = "the adapter store directory") Path storeDir;

    @Option(names = "--bootstrap", required = true, description = "Kafka bootstrap servers") String bootstrap;

    @Option(names = "--reason", defaultValue = "requested by an operator",
        description = "why, recorded as 'rollback: REASON' (default: ${DEFAULT-VALUE})") String reason;

    @Option(names = "--component", defaultValue = "weaver", description = "weaver or trigger (default ${DEFAULT-VALUE})")
    String componentName;

    @Override
    public Integer call() throws Exception {
      AdapterComponent component = component(componentName);
      AdapterStore store = store(storeDir);
      String key = AdapterLog.key(name, component);
      AdapterLog.Rollback r;
      try (ExperienceLog log = new ExperienceLog(bootstrap)) {
        r = AdapterLog.rollback(store, log, name, component, version, reason, BROKER_TIMEOUT);
      }
      AdapterPublished a = r.announced();
      long offset = r.offset();
      System.err.printf("rolled %s back from v%d to v%d (%s@%d)%n", key, a.getRolledBackFrom(), version, Topics.ADAPTERS,
          offset);
      ObjectNode o = Json.object();
      o.put("adapter", name);
      o.put("component", componentName);
      o.put("version", version);
      o.put("rolled_back_from", a.getRolledBackFrom());
      o.put("sha256", a.getSha256());
      o.put("uri", a.getUri());
      o.put("reason", a.getReason());
      o.put("offset", offset);
      System.out.println(Json.line(o));
      return 0;
    }
  }

  @Command(name = "rebuild", mixinStandardHelpOptions = true,
      description = "Train a version again from its parent, the trajectories its ledger names (read back from the log) "
          + "and the recipe its record names, then compare: tensors (bit-identical, or the largest difference and why) "
          + "and held-out accuracy, stored against rebuilt. Last line: JSON.")
  static final class Rebuild implements Callable<Integer> {
    @Parameters(index = "0", description = "adapter name") String name;

    @Parameters(index = "1", description = "the version to rebuild (>= 2: version 1 is the initial memory)") long version;

    @Option(names = "--store", required = true, description = "the adapter store directory") Path storeDir;

    @Option(names = "--bootstrap", required = true, description = "Kafka bootstrap servers (the log it was trained from)")
    String bootstrap;

    @Option(names = "--model", required = true, description = "the base checkpoint it was trained on") Path model;

    @Option(names = "--eval-set", defaultValue = "arithmetic:100",
        description = "held-out problems both are scored on, as memgen.trainer.eval-set (default ${DEFAULT-VALUE})")
    String evalSet;

    @Option(names = "--eval-max-new-tokens", defaultValue = "48", description = "(default ${DEFAULT-VALUE})")
    int evalMaxNewTokens;

    @Option(names = "--work", description = "where the parent, the stored and the rebuilt memory are written "
        + "(default .memgen/rebuild/NAME-vVERSION)") Path work;

    @Override
    public Integer call() throws Exception {
      AdapterStore store = store(storeDir);
      Path dir = work != null ? work : Path.of(".memgen", "rebuild", name + "-v" + version);
      System.err.printf("rebuilding %s v%d from its parent and the log at %s ...%n", name, version, bootstrap);
      VersionRebuild.Result r = VersionRebuild.run(store, name, version, bootstrap,
          model, dir, HeldOut.parse(evalSet), evalMaxNewTokens);
      double worst = r.maxAbsDiff().values().stream().mapToDouble(Double::doubleValue).max().orElse(0);
      System.out.printf("%s v%d (parent v%d): %d trajectories, %d SFT examples (%d corrections, %d rewarded rollouts)%n", name,
          version, r.parent(), r.trajectories(), r.sftExamples(), r.corrections(), r.rolloutExamples());
      System.out.printf("tensors: %s%n", r.bitIdentical() ? "bit-identical"
          : String.format("differ, largest |stored - rebuilt| %.3g (%s)", worst, r.why()));
      System.out.printf("held-out accuracy on %d problems: stored %.1f%%, rebuilt %.1f%%%n", r.heldOut(), r.storedAccuracy(),
          r.rebuiltAccuracy());
      ObjectNode o = Json.object();
      o.put("adapter", name);
      o.put("version", version);
      o.put("parent", r.parent());
      o.put("trajectories", r.trajectories());
      o.put("sft_examples", r.sftExamples());
      o.put("rollout_examples", r.rolloutExamples());
      o.put("bit_identical", r.bitIdentical());
      o.put("max_abs_diff", worst);
      o.put("why", r.why());
      o.put("stored_accuracy", r.storedAccuracy());
      o.put("rebuilt_accuracy", r.rebuiltAccuracy());
      o.put("held_out", r.heldOut());
      o.put("rebuilt", r.rebuilt().toString());
      System.out.println(Json.line(o));
      return 0;
    }
  }
}
