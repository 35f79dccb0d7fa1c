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
import java.util.Optional;
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
   * A memory service ({@code service}: "weaver" or "trigger"): its batched passes (how many, how many Weaves or
   * Decides they carried — requests / passes is the mean batch across sessions — and their time), the messages waiting
   * for its model thread, the sessions open, the version new sessions of its default adapter get, and (with one) what
   * its follower of the adapters topic swapped in or refused.
   */
  public static List<Meter> bindMemoryService(MeterRegistry registry, String service, MemoryService s,
      Optional<AdapterFollower> follower) {
    String kind = s.passKind();
    String adapter = s.defaultAdapterName();
    List<Meter> meters = new ArrayList<>();
    // The service is the meters' state: Micrometer holds it weakly, and the service is held anyway.
    meters.add(Gauge.builder("memgen." + service + ".model.queue", s, MemoryService::modelQueue)
        .description("session messages and passes waiting for the model thread").register(registry));
    meters.add(FunctionTimer.builder("memgen." + service + ".passes", s, o -> o.passes().passes(),
            o -> o.passes().nanos(), TimeUnit.NANOSECONDS)
        .tag("kind", kind).description("batched " + kind + " passes over concurrent sessions and their time")
        .register(registry));
    meters.add(FunctionCounter.builder("memgen." + service + ".requests", s, o -> o.passes().items())
        .tag("kind", kind).description(kind + " requests answered (requests / passes = mean batch)").register(registry));
    meters.add(Gauge.builder("memgen." + service + ".sessions", s, MemoryService::openSessions)
        .description("sessions open now").register(registry));
    meters.add(adapterVersion(registry, service, adapter, s));
    follower.ifPresent(f -> meters.addAll(bindFollower(registry, service, f)));
    return meters;
  }

  /** The version of {@code adapter} new sessions get from {@code host} ({@code component}: weaver or trigger). */
  public static Meter adapterVersion(MeterRegistry registry, String component, String adapter, AdapterHost host) {
    return Gauge.builder("memgen.adapter.version", host, h -> h.adapters().stream()
            .filter(x -> x.name().equals(adapter) && x.current()).mapToLong(AdapterHost.Adapter::version).max().orElse(0))
        .tag("component", component).tag("adapter", adapter).description("the adapter version new sessions get")
        .register(registry);
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
