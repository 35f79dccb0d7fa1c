package dev.memgen.deploy;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.dataformat.yaml.YAMLMapper;
import dev.memgen.cli.LoopBench;
import dev.memgen.model.checkpoint.DType;
import dev.memgen.model.checkpoint.TinyCheckpoint;
import dev.memgen.rpc.TinyMemory;
import java.io.InputStream;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.MessageDigest;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HexFormat;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeSet;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * {@code ./memgen images}: the four services' images are built here without a Docker daemon or a registry (Jib on a
 * Debian + OpenJDK 17 base that deploy/images/base.sh makes with debootstrap), are well-formed OCI image tarballs
 * whose ports are the ones the Kubernetes manifests use, and run in a real container runtime: the weaver's and the
 * reasoner's images are loaded into Podman and started as containers (the model mounted in), and the reasoner answers
 * an OpenAI chat request with memory woven by the weaver's container over gRPC. Needs root, debootstrap, podman and
 * runc (.ci/run installs them); skipped elsewhere.
 */
class ContainerImagesTest {
  private static final Path ROOT = Commands.ROOT;
  private static final ObjectMapper JSON = new ObjectMapper();
  private static final Map<String, String> MANIFEST_OF = Map.of("reasoner-service", "reasoner.yaml",
      "trigger-service", "trigger.yaml", "weaver-service", "weaver.yaml", "trainer-service", "trainer.yaml");

  @TempDir Path tmp;

  @Test
  void theServicesImagesAreOciTarballsThatRunAsContainers() throws Exception {
    assumeTrue("root".equals(System.getProperty("user.name")), "debootstrap and podman run as root here");
    for (String tool : List.of("debootstrap", "podman", "runc", "tar")) {
      assumeTrue(onPath(tool), tool + " is not installed");
    }
    Path out = tmp.resolve("images");
    JsonNode summary = Commands.summary(List.of("images", "--out", out.toString()));
    assertEquals(4, summary.get("images").size(), summary.toString());

    Map<String, Image> images = new java.util.HashMap<>();
    for (JsonNode built : summary.get("images")) {
      String service = built.get("service").asText();
      Path dir = tmp.resolve("oci-" + service);
      Image image = Image.read(Path.of(built.get("file").asText()), dir);
      assertEquals("memgen/" + service + ":" + version(service), image.name(), "the reference name in index.json");
      assertEquals(built.get("digest").asText(), image.manifestDigest(), "the printed digest is the manifest's");
      JsonNode config = image.config().get("config");
      assertEquals("185", config.get("User").asText(), service + " runs as uid 185, not root");
      assertEquals(List.of("java", "-Dai.djl.offline=true", "-jar", "/opt/memgen/quarkus-run.jar"),
          strings(config.get("Entrypoint")), service);
      Set<String> exposed = new TreeSet<>();
      config.get("ExposedPorts").fieldNames().forEachRemaining(exposed::add);
      assertEquals(containerPorts(service), exposed,
          service + ": the image exposes the ports its Kubernetes manifest declares");
      List<String> env = strings(config.get("Env"));
      assertTrue(env.contains("MEMGEN_SERVICE=" + service), env.toString());
      if (service.equals("trainer-service")) {
        assertTrue(env.containsAll(List.of("MKL_CBWR=AUTO", "MKL_DYNAMIC=FALSE")), "the trainer's reproducible MKL: " + env);
      }
      images.put(service, image);
    }

    Path data = tmp.resolve("data");
    TinyCheckpoint.write(data.resolve("model"), TinyCheckpoint.tiny("qwen2"), DType.F32, 1, 7);
    TinyMemory.write(data.resolve("model"), data.resolve("memory"), TinyMemory.everyCharacter());
    int ports = LoopBench.freePortBlock(4);
    Path storage = tmp.resolve("podman");
    try (Container weaver = Container.start(storage, images.get("weaver-service"), data,
            tmp.resolve("weaver.log"),
            "MEMGEN_MODEL_DIR=/data/model", "MEMGEN_MEMORY_DIR=/data/memory",
            "QUARKUS_GRPC_SERVER_PORT=" + ports, "QUARKUS_HTTP_PORT=" + (ports + 1));
         Container reasoner = Container.start(storage, images.get("reasoner-service"), data, tmp.resolve("reasoner.log"),
            "MEMGEN_MODEL_DIR=/data/model", "MEMGEN_WEAVER_TARGET=127.0.0.1:" + ports,
            "QUARKUS_GRPC_SERVER_PORT=" + (ports + 2), "QUARKUS_HTTP_PORT=" + (ports + 3))) {
      String http = "http://127.0.0.1:" + (ports + 3);
      String ready = weaver.awaitReady("http://127.0.0.1:" + (ports + 1)) + reasoner.awaitReady(http);
      assertTrue(ready.contains("SERVING"), "the reasoner reaches the weaver's container: " + ready);
      HttpClient client = HttpClient.newHttpClient();
      String models = client.send(HttpRequest.newBuilder(URI.create(http + "/v1/models")).build(),
          HttpResponse.BodyHandlers.ofString()).body();
      List<String> ids = JSON.readTree(models).get("data").findValuesAsText("id");
      assertEquals(List.of("memgen", "memgen:default"), ids, "the base, and the weaver's memory as an adapter: " + models);
      HttpResponse<String> answer = client.send(HttpRequest.newBuilder(URI.create(http + "/v1/chat/completions"))
          .header("content-type", "application/json").timeout(Duration.ofSeconds(120))
          .POST(HttpRequest.BodyPublishers.ofString("{\"model\":\"memgen:default\",\"max_tokens\":12,\"temperature\":0,"
              + "\"messages\":[{\"role\":\"user\",\"content\":\"Hello there\"}]}"))
          .build(), HttpResponse.BodyHandlers.ofString());
      assertEquals(200, answer.statusCode(), answer.body());
      JsonNode body = JSON.readTree(answer.body());
      assertEquals(12, body.get("usage").get("completion_tokens").asInt(), answer.body());
      assertTrue(body.get("memgen").get("insertions").asInt() > 0 && body.get("memgen").get("latent_rows").asInt() > 0,
          "the weaver's container wove latents into the reasoner's decode: " + answer.body());
    }
  }

  /**
   * An OCI image tarball, read from its unpacked copy in {@code dir}: its reference name, manifest digest and config,
   * every blob checked against its digest.
   */
  record Image(Path tarball, String name, String manifestDigest, JsonNode config) {
    static Image read(Path tarball, Path dir) throws Exception {
      Files.createDirectories(dir);
      run(List.of("tar", "-xf", tarball.toString(), "-C", dir.toString()));
      assertEquals("1.0.0", JSON.readTree(dir.resolve("oci-layout").toFile()).get("imageLayoutVersion").asText());
      JsonNode index = JSON.readTree(dir.resolve("index.json").toFile());
      assertEquals(1, index.get("manifests").size(), index.toString());
      JsonNode entry = index.get("manifests").get(0);
      String manifestDigest = entry.get("digest").asText();
      JsonNode manifest = JSON.readTree(blob(dir, manifestDigest, entry.get("size").asLong()).toFile());
      assertEquals("application/vnd.oci.image.manifest.v1+json", manifest.get("mediaType").asText());
      JsonNode configRef = manifest.get("config");
      JsonNode config = JSON.readTree(blob(dir, configRef.get("digest").asText(), configRef.get("size").asLong()).toFile());
      assertEquals(manifest.get("layers").size(), config.get("rootfs").get("diff_ids").size(), "a diff id per layer");
      for (JsonNode layer : manifest.get("layers")) {
        assertEquals("application/vnd.oci.image.layer.v1.tar+gzip", layer.get("mediaType").asText());
        blob(dir, layer.get("digest").asText(), layer.get("size").asLong());
      }
      String name = entry.get("annotations").get("org.opencontainers.image.ref.name").asText();
      return new Image(tarball, name, manifestDigest, config);
    }

    /** The blob's file, after checking that its size and sha256 are the ones it is referred to by. */
    private static Path blob(Path dir, String digest, long size) throws Exception {
      assertTrue(digest.startsWith("sha256:"), digest);
      Path file = dir.resolve("blobs/sha256").resolve(digest.substring("sha256:".length()));
      assertEquals(size, Files.size(file), "size of " + digest);
      MessageDigest sha = MessageDigest.getInstance("SHA-256");
      try (InputStream in = Files.newInputStream(file)) {
        byte[] buffer = new byte[1 << 16];
        for (int n; (n = in.read(buffer)) > 0; ) {
          sha.update(buffer, 0, n);
        }
      }
      assertEquals(digest, "sha256:" + HexFormat.of().formatHex(sha.digest()), "content of " + file);
      return file;
    }
  }

  /**
   * An image run by Podman (Debian's podman with runc), from a store of the test's own in {@code storage}: loaded from
   * its tarball, started with the host's network, {@code data} mounted at /data and {@code env} added to the image's
   * environment. runc and cgroupfs because this machine's cgroups are v1 and crun refuses them; the limits explicit
   * because the defaults Podman asks for exceed what this sandbox may set. Closing it stops the container (SIGTERM,
   * forwarded by podman run) and removes it.
   */
  static final class Container implements AutoCloseable {
    private final Process process;
    private final Path log;
    private final List<String> podman;
    private final String name;

    private Container(Process process, Path log, List<String> podman, String name) {
      this.process = process;
      this.log = log;
      this.podman = podman;
      this.name = name;
    }

    static List<String> podman(Path storage) {
      return List.of("podman", "--root", storage.resolve("root").toString(), "--runroot", storage.resolve("run").toString(),
          "--storage-driver", "vfs", "--runtime", "runc", "--cgroup-manager", "cgroupfs");
    }

    static Container start(Path storage, Image image, Path data, Path log, String... env) throws Exception {
      List<String> podman = podman(storage);
      List<String> load = new ArrayList<>(podman);
      load.addAll(List.of("load", "-i", image.tarball().toString()));
      run(load);
      String name = "memgen-test-" + java.util.UUID.randomUUID().toString().substring(0, 8);
      List<String> cmd = new ArrayList<>(podman);
      cmd.addAll(List.of("run", "--rm", "--name", name, "--network", "host", "--ulimit", "nofile=10000:10000",
          "--ulimit", "nproc=4096:4096", "-v", data + ":/data"));
      for (String e : env) {
        cmd.addAll(List.of("-e", e));
      }
      cmd.add("localhost/" + image.name());
      Process p = new ProcessBuilder(cmd).redirectErrorStream(true).redirectOutput(log.toFile()).start();
      return new Container(p, log, podman, name);
    }

    /** Waits for /q/health/ready to say UP and returns its body; fails with the container's log if it does not. */
    String awaitReady(String http) throws Exception {
      HttpClient client = HttpClient.newHttpClient();
      long deadline = System.nanoTime() + Duration.ofSeconds(120).toNanos();
      String last = "";
      while (System.nanoTime() < deadline) {
        assertTrue(process.isAlive(), () -> "the container exited: " + tail());
        try {
          HttpResponse<String> r = client.send(HttpRequest.newBuilder(URI.create(http + "/q/health/ready"))
              .timeout(Duration.ofSeconds(5)).build(), HttpResponse.BodyHandlers.ofString());
          last = r.body();
          if (r.statusCode() == 200) {
            return last;
          }
        } catch (java.io.IOException notYet) {
          // not listening yet
        }
        Thread.sleep(500); // polled: the container's service offers nothing to wait on but its readiness endpoint
      }
      throw new AssertionError("not ready in 120 s: " + last + "\n" + tail());
    }

    private String tail() {
      try {
        List<String> lines = Files.readAllLines(log);
        return String.join("\n", lines.subList(Math.max(0, lines.size() - 30), lines.size()));
      } catch (java.io.IOException e) {
        return "(no log: " + e + ")";
      }
    }

    @Override
    public void close() throws Exception {
      process.destroy(); // podman run forwards SIGTERM to the entrypoint
      if (!process.waitFor(30, java.util.concurrent.TimeUnit.SECONDS)) {
        List<String> kill = new ArrayList<>(podman);
        kill.addAll(List.of("rm", "-f", name));
        new ProcessBuilder(kill).redirectErrorStream(true).redirectOutput(ProcessBuilder.Redirect.DISCARD).start().waitFor();
        process.destroyForcibly();
        process.waitFor();
      }
    }
  }

  private static Set<String> containerPorts(String service) throws Exception {
    Set<String> ports = new TreeSet<>();
    JsonNode deployment = new YAMLMapper().readTree(ROOT.resolve("deploy/k8s/base").resolve(MANIFEST_OF.get(service)).toFile());
    for (JsonNode container : deployment.at("/spec/template/spec/containers")) {
      for (JsonNode port : container.get("ports")) {
        ports.add(port.get("containerPort").asInt() + "/tcp");
      }
    }
    return ports;
  }

  private static String version(String service) throws Exception {
    try (var jars = Files.list(ROOT.resolve(service).resolve("target/quarkus-app/app"))) {
      String jar = jars.findFirst().orElseThrow().getFileName().toString();
      return jar.substring(("memgen-" + service + "-").length(), jar.length() - ".jar".length());
    }
  }

  private static List<String> strings(JsonNode array) {
    List<String> out = new ArrayList<>();
    array.forEach(n -> out.add(n.asText()));
    return out;
  }

  private static boolean onPath(String tool) {
    for (String dir : System.getenv().getOrDefault("PATH", "").split(":")) {
      if (Files.isExecutable(Path.of(dir, tool))) {
        return true;
      }
    }
    return Files.isExecutable(Path.of("/usr/sbin", tool)) || Files.isExecutable(Path.of("/sbin", tool));
  }

  private static void run(List<String> cmd) throws Exception {
    Process p = new ProcessBuilder(cmd).redirectErrorStream(true).redirectOutput(ProcessBuilder.Redirect.DISCARD).start();
    assertEquals(0, p.waitFor(), "exit code of " + String.join(" ", cmd));
  }
}
