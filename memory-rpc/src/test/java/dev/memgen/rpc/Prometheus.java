package dev.memgen.rpc;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.io.IOException;
import java.net.ServerSocket;
import java.net.URI;
import java.net.URL;
import java.net.URLEncoder;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.Set;
import java.util.concurrent.TimeUnit;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * Prometheus itself, from Debian's {@code prometheus} package ({@code .ci/run} installs it): {@code promtool check
 * metrics} on an exposition, and a real server scraping an endpoint and answering queries about what it stored.
 */
public final class Prometheus implements AutoCloseable {
  private static final HttpClient HTTP = HttpClient.newHttpClient();
  private static final ObjectMapper JSON = new ObjectMapper();

  private final Process server;
  private final int port;
  private final Path dir;

  private Prometheus(Process server, int port, Path dir) {
    this.server = server;
    this.port = port;
    this.dir = dir;
  }

  /**
   * promtool's complaints about an exposition (empty: valid), less one: "{@code X_total no help text}" (or another
   * suffix) where family X has its HELP. Micrometer's Prometheus client (client_java 1.x) writes a counter's HELP and
   * TYPE under the family name and its sample as {@code X_total}, as OpenMetrics does; Prometheus's scraper reads it
   * (checked by {@link #scraping}), Debian 12's promtool 2.42 looks for help under the sample's name.
   */
  public static List<String> lint(String exposition) throws Exception {
    Path file = Files.createTempFile("memgen-metrics", ".prom");
    try {
      Files.writeString(file, exposition, StandardCharsets.UTF_8);
      Process p;
      try {
        p = new ProcessBuilder("promtool", "check", "metrics").redirectInput(file.toFile()).redirectErrorStream(true).start();
      } catch (IOException e) {
        throw new AssertionError("no promtool on this machine: .ci/run installs Debian's prometheus package", e);
      }
      List<String> lines = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8).lines()
          .filter(l -> !l.isBlank()).toList();
      if (!p.waitFor(60, TimeUnit.SECONDS)) {
        p.destroyForcibly();
        throw new AssertionError("promtool did not finish");
      }
      Set<String> withHelp = new HashSet<>();
      Matcher h = Pattern.compile("^# HELP (\\S+) ", Pattern.MULTILINE).matcher(exposition);
      while (h.find()) {
        withHelp.add(h.group(1));
      }
      List<String> out = new ArrayList<>();
      for (String l : lines) {
        Matcher m = Pattern.compile("^(\\S+) no help text$").matcher(l);
        if (m.matches() && withHelp.stream().anyMatch(f -> m.group(1).startsWith(f + "_"))) {
          continue;
        }
        out.add(l);
      }
      if (p.exitValue() != 0 && lines.isEmpty()) {
        out.add("exit " + p.exitValue());
      }
      return out;
    } finally {
      Files.deleteIfExists(file);
    }
  }

  /** The exposition's line a promtool message names ("... in line N: ..."), for a failure message. */
  public static String at(String text, List<String> messages) {
    for (String m : messages) {
      Matcher l = Pattern.compile("line (\\d+)").matcher(m);
      if (l.find()) {
        int n = Integer.parseInt(l.group(1));
        List<String> lines = text.lines().toList();
        return n <= lines.size() ? " (line " + n + ": " + lines.get(n - 1) + ")" : "";
      }
    }
    return "";
  }

  /** A Prometheus server scraping {@code metrics} every half second, into a storage directory of its own. */
  public static Prometheus scraping(URL metrics) throws Exception {
    Path dir = Files.createTempDirectory("memgen-prometheus");
    int port;
    try (ServerSocket s = new ServerSocket(0)) {
      port = s.getLocalPort();
    }
    Files.writeString(dir.resolve("prometheus.yml"), String.join("\n",
        "global:", "  scrape_interval: 500ms", "  scrape_timeout: 400ms",
        "scrape_configs:", "  - job_name: memgen", "    metrics_path: " + metrics.getPath(),
        "    static_configs:", "      - targets: ['" + metrics.getHost() + ":" + metrics.getPort() + "']", ""));
    Process p;
    try {
      p = new ProcessBuilder("prometheus", "--config.file=" + dir.resolve("prometheus.yml"),
          "--storage.tsdb.path=" + dir.resolve("data"), "--web.listen-address=127.0.0.1:" + port)
          .redirectErrorStream(true).redirectOutput(dir.resolve("prometheus.log").toFile()).start();
    } catch (IOException e) {
      throw new AssertionError("no prometheus on this machine: .ci/run installs Debian's prometheus package", e);
    }
    return new Prometheus(p, port, dir);
  }

  /** The value of an instant query once it has one (a scrape or two after start), within 30 s. */
  public double await(String query) throws Exception {
    long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(30);
    String last = "";
    while (System.nanoTime() < deadline) {
      if (!server.isAlive()) {
        throw new AssertionError("prometheus exited: " + Files.readString(dir.resolve("prometheus.log")));
      }
      try {
        HttpResponse<String> r = HTTP.send(HttpRequest.newBuilder(URI.create("http://127.0.0.1:" + port
            + "/api/v1/query?query=" + URLEncoder.encode(query, StandardCharsets.UTF_8))).build(),
            HttpResponse.BodyHandlers.ofString());
        last = r.body();
        JsonNode result = JSON.readTree(r.body()).at("/data/result");
        if (r.statusCode() == 200 && result.size() > 0) {
          return result.get(0).get("value").get(1).asDouble();
        }
      } catch (IOException e) {
        last = e.toString(); // not listening yet
      }
      Thread.sleep(200);
    }
    throw new AssertionError("prometheus has no value for " + query + " (last answer: " + last + "; targets: "
        + targets() + ")");
  }

  private String targets() {
    try {
      return HTTP.send(HttpRequest.newBuilder(URI.create("http://127.0.0.1:" + port + "/api/v1/targets")).build(),
          HttpResponse.BodyHandlers.ofString()).body();
    } catch (Exception e) {
      return e.toString();
    }
  }

  @Override
  public void close() throws Exception {
    server.destroy();
    if (!server.waitFor(10, TimeUnit.SECONDS)) {
      server.destroyForcibly();
    }
    try (var files = Files.walk(dir)) {
      files.sorted(java.util.Comparator.reverseOrder()).forEach(f -> f.toFile().delete());
    }
  }
}
