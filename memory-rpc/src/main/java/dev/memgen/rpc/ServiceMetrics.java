package dev.memgen.rpc;

import io.micrometer.core.instrument.FunctionCounter;
import io.micrometer.core.instrument.FunctionTimer;
import io.micrometer.core.instrument.Gauge;
import io.micrometer.core.instrument.Meter;
import io.micrometer.core.instrument.MeterRegistry;
import io.micrometer.core.instrument.Tag;
import io.micrometer.core.instrument.Tags;
import io.micrometer.core.instrument.config.MeterFilter;
import io.micrometer.core.instrument.config.MeterFilterReply;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.function.Supplier;

/**
 * Metrics the services share (every service's Quarkus layer binds its own with these), in Micrometer terms; Quarkus
 * exposes them in Prometheus's format at {@code /q/metrics}.
 */
public final class ServiceMetrics {
  private ServiceMetrics() {}

  /**
   * Keeps every meter within what Prometheus's own linter ({@code promtool check metrics}) accepts, for the meters of
   * the libraries too: a HELP line may escape only a backslash and a line feed, and Micrometer's JVM metrics describe
   * {@code system_cpu_usage} as {@code The "recent cpu usage" ...} (written {@code \"}, which the text format refuses);
   * label names are snake_case (Quarkus's gRPC metrics tag {@code statusCode}); every metric has help (a meter
   * without a description gets its name in words); no unit abbreviations or misleading suffixes ({@code
   * process.cpu.time} in ns is left out, {@code system.cpu.count} is {@code system_cpus}).
   */
  public static MeterFilter prometheusLint() {
    return new MeterFilter() {
      @Override
      public MeterFilterReply accept(Meter.Id id) {
        // A counter in nanoseconds ("ns" is an abbreviated unit to the linter); process_cpu_usage says the same.
        return id.getName().equals("process.cpu.time") ? MeterFilterReply.DENY : MeterFilterReply.NEUTRAL;
      }

      @Override
      public Meter.Id map(Meter.Id id) {
        if (id.getName().equals("system.cpu.count")) { // a gauge may not end in _count
          id = id.withName("system.cpus");
        }
        String d = id.getDescription();
        String help = d == null || d.isBlank() ? id.getName().replace('.', ' ') : d.replace('"', '\'');
        List<Tag> tags = new ArrayList<>();
        boolean renamed = false;
        for (Tag t : id.getTagsAsIterable()) {
          String key = snakeCase(t.getKey());
          renamed |= !key.equals(t.getKey());
          tags.add(Tag.of(key, t.getValue()));
        }
        return help.equals(d) && !renamed ? id : new Meter.Id(id.getName(), Tags.of(tags), id.getBaseUnit(), help, id.getType());
      }
    };
  }

  /** {@code statusCode} -> {@code status_code}. */
  static String snakeCase(String key) {
    StringBuilder b = new StringBuilder(key.length() + 4);
    for (int i = 0; i < key.length(); i++) {
      char c = key.charAt(i);
      if (Character.isUpperCase(c)) {
        if (i > 0) {
          b.append('_');
        }
        b.append(Character.toLowerCase(c));
      } else {
        b.append(c);
      }
    }
    return b.toString();
  }

  /**
   * A memory service's batched passes of one kind ({@code weave} or {@code decide}): how many, how many Weaves or
   * Decides they carried (items / passes = the mean batch across sessions) and the time they took.
   */
  public static <T> List<Meter> bindPasses(MeterRegistry registry, String service, String kind, T owner,
      java.util.function.Function<T, PendingPasses.Passes> passes, java.util.function.ToIntFunction<T> queued) {
    // The owner (the service itself) is the meters' state: Micrometer holds it weakly, and the service is held anyway.
    return List.of(Gauge.builder("memgen." + service + ".model.queue", owner, o -> queued.applyAsInt(o))
        .description("session messages and passes waiting for the model thread").register(registry),
        FunctionTimer.builder("memgen." + service + ".passes", owner, o -> passes.apply(o).passes(),
            o -> passes.apply(o).nanos(), TimeUnit.NANOSECONDS)
        .tag("kind", kind).description("batched " + kind + " passes over concurrent sessions and their time")
        .register(registry),
        FunctionCounter.builder("memgen." + service + ".requests", owner, o -> passes.apply(o).items())
            .tag("kind", kind).description(kind + " requests answered (requests / passes = mean batch)").register(registry));
  }

  /** Sessions open now and, per named adapter, the version new sessions get and the sessions on each version. */
  public static List<Meter> bindSessions(MeterRegistry registry, String service, Supplier<Integer> open,
      Supplier<List<AdapterHost.Adapter>> adapters, List<String> names) {
    List<Meter> meters = new ArrayList<>();
    // Strong references: Micrometer holds a gauge's state weakly, and these suppliers have no other owner.
    meters.add(Gauge.builder("memgen." + service + ".sessions", open, o -> o.get()).description("sessions open now")
        .strongReference(true).register(registry));
    for (String name : names) {
      meters.add(Gauge.builder("memgen.adapter.version", adapters, a -> a.get().stream()
              .filter(x -> x.name().equals(name) && x.current()).mapToLong(AdapterHost.Adapter::version).max().orElse(0))
          .tag("component", service).tag("adapter", name).description("the adapter version new sessions get")
          .strongReference(true).register(registry));
    }
    return meters;
  }

  /** A follower of the adapters topic: the versions it swapped in and the ones it refused. */
  public static List<Meter> bindFollower(MeterRegistry registry, String component, AdapterFollower follower) {
    return List.of(FunctionCounter.builder("memgen.adapter.swaps", follower, f -> f.status().loaded()).tag("component", component)
        .tag("outcome", "loaded").description("announced versions loaded and swapped in").register(registry),
        FunctionCounter.builder("memgen.adapter.swaps", follower, f -> f.status().refused()).tag("component", component)
        .tag("outcome", "refused").description("announced versions refused (bad hash, another base, unloadable)")
        .register(registry));
  }

  /**
   * Meters a bean registered, removed from the registry when the bean goes: the registry can outlive an application
   * (Quarkus's tests start several in one JVM), and a meter left behind would read a stopped application's state.
   */
  public static final class Registered implements AutoCloseable {
    private final MeterRegistry registry;
    private final List<Meter> meters = new ArrayList<>();

    public Registered(MeterRegistry registry) {
      this.registry = registry;
    }

    public <M extends Meter> M add(M meter) {
      meters.add(meter);
      return meter;
    }

    public void addAll(List<Meter> more) {
      meters.addAll(more);
    }

    @Override
    public void close() {
      meters.forEach(registry::remove);
      meters.clear();
    }
  }
}
