package dev.memgen.cli;

import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import com.google.cloud.tools.jib.api.CacheDirectoryCreationException;
import com.google.cloud.tools.jib.api.Containerizer;
import com.google.cloud.tools.jib.api.ImageReference;
import com.google.cloud.tools.jib.api.InvalidImageReferenceException;
import com.google.cloud.tools.jib.api.Jib;
import com.google.cloud.tools.jib.api.JibContainer;
import com.google.cloud.tools.jib.api.JibContainerBuilder;
import com.google.cloud.tools.jib.api.RegistryException;
import com.google.cloud.tools.jib.api.RegistryImage;
import com.google.cloud.tools.jib.api.TarImage;
import com.google.cloud.tools.jib.api.buildplan.AbsoluteUnixPath;
import com.google.cloud.tools.jib.api.buildplan.FileEntriesLayer;
import com.google.cloud.tools.jib.api.buildplan.ImageFormat;
import com.google.cloud.tools.jib.api.buildplan.Port;
import com.google.cloud.tools.jib.frontend.CredentialRetrieverFactory;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.ArrayList;
import java.util.HexFormat;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import java.util.concurrent.Callable;
import java.util.concurrent.ExecutionException;
import java.util.stream.Stream;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

/**
 * {@code ./memgen images}: the four services' container images as OCI tarballs, built with Jib's library — no Docker
 * daemon, no registry. Each image is a service's {@code target/quarkus-app} in Quarkus's fast-jar layers (the
 * third-party libraries, which change rarely, apart from the project's own jars and the application) on a Java 17
 * base: by default Debian bookworm with OpenJDK 17 made by {@code deploy/images/base.sh} (debootstrap) and cached
 * under {@code .memgen/images/}; {@code --base-image} takes any registry image or {@code tar://} file instead.
 * {@code podman load -i}, {@code ctr images import} and {@code kind load image-archive} take them; {@code --format
 * docker} writes {@code docker save}'s layout for {@code docker load}.
 */
@Command(name = "images", mixinStandardHelpOptions = true,
    description = "Build the services' container images as OCI tarballs (Jib; no Docker daemon, no registry).")
final class ImagesCommand implements Callable<Integer> {
  /** Where each image puts the service: the fast-jar tree, run as {@code java -jar /opt/memgen/quarkus-run.jar}. */
  static final AbsoluteUnixPath APP = AbsoluteUnixPath.get("/opt/memgen");

  /** A service: its module, the ports it listens on (its application.properties), what its JVM needs besides. */
  record Service(String module, int grpcPort, int httpPort, Map<String, String> env) {}

  static final List<Service> SERVICES = List.of(
      new Service("reasoner-service", 9000, 8080, Map.of()),
      new Service("trigger-service", 9001, 8081, Map.of()),
      new Service("weaver-service", 9002, 8082, Map.of()),
      // The trainer's float sums independent of memory alignment and of the load, so versions can be rebuilt
      // bit for bit (`./memgen adapters rebuild`), as deploy/local/services.sh runs it.
      // Its work directory in the state directory the base image gives the services' user (not under /opt/memgen).
      new Service("trainer-service", 9003, 8083, Map.of("MKL_CBWR", "AUTO", "MKL_DYNAMIC", "FALSE",
          "MEMGEN_TRAINER_WORK_DIR", "/var/lib/memgen/trainer")));

  @Option(names = "--base-image", paramLabel = "REF",
      description = "the base: a registry image (e.g. eclipse-temurin:17-jre) or tar://FILE; default: Debian bookworm"
          + " + OpenJDK 17 from deploy/images/base.sh, built on first use into .memgen/images/")
  String baseImage;

  @Option(names = "--out", paramLabel = "DIR", description = "where the tarballs go (default: deploy/images/target)")
  Path out;

  @Option(names = "--services", split = ",", paramLabel = "NAME",
      description = "which services (default: all four): reasoner-service, trigger-service, weaver-service, trainer-service")
  List<String> only;

  @Option(names = "--tag", description = "the images' tag (default: the services' version, e.g. 0.1.0-SNAPSHOT)")
  String tag;

  @Option(names = "--format", defaultValue = "oci", description = "oci (an OCI image layout; podman load, ctr images"
      + " import, kind load) or docker (docker save's layout, whose name `docker load` keeps); default ${DEFAULT-VALUE}")
  String format;

  @Override
  public Integer call() throws Exception {
    Path home = Main.home();
    Path dir = out != null ? out : home.resolve("deploy/images/target");
    List<Service> chosen = chosen();
    List<Path> apps = new ArrayList<>();
    for (Service s : chosen) {
      Path app = home.resolve(s.module()).resolve("target/quarkus-app");
      if (!Files.isRegularFile(app.resolve("quarkus-run.jar"))) {
        throw new StartupException(s.module() + " is not built (" + app.resolve("quarkus-run.jar") + " is missing; fix: ./mvnw -B"
            + " package -DskipTests, or ./mvnw -B -q -pl " + s.module() + " -am package -DskipTests)");
      }
      apps.add(app);
    }
    ImageFormat imageFormat = switch (format) {
      case "oci" -> ImageFormat.OCI;
      case "docker" -> ImageFormat.Docker;
      default -> throw new IllegalArgumentException("--format is '" + format + "': expected oci or docker");
    };
    String base = baseImage != null ? baseImage : "tar://" + defaultBase(home);
    if (base.startsWith(Jib.TAR_IMAGE_PREFIX) && !Files.isRegularFile(Path.of(base.substring(Jib.TAR_IMAGE_PREFIX.length())))) {
      throw new IllegalArgumentException("--base-image " + base + ": no such file (fix: a `docker save` or OCI image"
          + " tarball, or leave --base-image out for the Debian + OpenJDK 17 base)");
    }
    Files.createDirectories(dir);
    Path cache = home.resolve(".memgen/images/jib-cache");

    ArrayNode built = Json.MAPPER.createArrayNode();
    long started = System.nanoTime();
    try (Progress progress = new Progress("images", chosen.size())) {
      for (int i = 0; i < chosen.size(); i++) {
        Service s = chosen.get(i);
        Path app = apps.get(i);
        String version = tag != null ? tag : versionOf(app, s.module());
        ImageReference name = ImageReference.of(null, "memgen/" + s.module(), version);
        Path tarball = dir.resolve(s.module() + "." + format + ".tar");
        long t0 = System.nanoTime();
        JibContainer image;
        try {
          image = builder(base, s, app).setFormat(imageFormat)
              .containerize(Containerizer.to(TarImage.at(tarball).named(name))
                  .setBaseImageLayersCache(cache.resolve("base"))
                  .setApplicationLayersCache(cache.resolve(s.module()))
                  .setToolName("memgen images"));
        } catch (ExecutionException | RegistryException | CacheDirectoryCreationException | IOException e) {
          Throwable cause = e;
          while (cause.getCause() != null) {
            cause = cause.getCause();
          }
          throw new StartupException("building " + name + " on " + base + " failed: " + cause
              + " (fix: a base image that is reachable and has java on its PATH, and room in " + dir + ")", e);
        }
        double seconds = (System.nanoTime() - t0) / 1e9;
        progress.step(s.module());
        System.out.printf("%-16s %-40s %8.1f MB  %s  %.1f s%n", s.module(), name, Files.size(tarball) / 1e6,
            image.getDigest().toString().substring(0, 19), seconds);
        ObjectNode entry = built.addObject();
        entry.put("service", s.module());
        entry.put("image", name.toString());
        entry.put("file", tarball.toString());
        entry.put("digest", image.getDigest().toString());
        entry.put("bytes", Files.size(tarball));
        entry.put("seconds", Math.round(seconds * 10) / 10.0);
      }
    }
    ObjectNode summary = Json.object();
    summary.put("base_image", base);
    summary.set("images", built);
    summary.put("seconds", Math.round((System.nanoTime() - started) / 1e8) / 10.0);
    System.out.println(Json.line(summary));
    return 0;
  }

  /**
   * One service's image: the base, then the fast-jar tree in layers from the least to the most often changed (the
   * boot jars, the third-party libraries, the project's own jars, the runner and Quarkus's generated code, the
   * application), as Quarkus's own Jib extension lays it out.
   */
  static JibContainerBuilder builder(String base, Service s, Path app) throws IOException, InvalidImageReferenceException {
    JibContainerBuilder b = base.startsWith(Jib.TAR_IMAGE_PREFIX) ? Jib.from(base) : Jib.from(registry(base));
    List<Path> ownJars = new ArrayList<>();
    List<Path> libraries = new ArrayList<>();
    try (Stream<Path> jars = Files.list(app.resolve("lib/main"))) {
      jars.sorted().forEach(j -> (j.getFileName().toString().startsWith("dev.memgen.") ? ownJars : libraries).add(j));
    }
    b.addFileEntriesLayer(tree("boot-libs", app.resolve("lib/boot"), APP.resolve("lib/boot")));
    b.addFileEntriesLayer(files("libs", libraries, APP.resolve("lib/main")));
    b.addFileEntriesLayer(files("memgen-libs", ownJars, APP.resolve("lib/main")));
    FileEntriesLayer.Builder runner = FileEntriesLayer.builder().setName("quarkus")
        .addEntry(app.resolve("quarkus-run.jar"), APP.resolve("quarkus-run.jar"));
    addTree(runner, app.resolve("quarkus"), APP.resolve("quarkus"));
    b.addFileEntriesLayer(runner.build());
    b.addFileEntriesLayer(tree("app", app.resolve("app"), APP.resolve("app")));

    b.addEnvironmentVariable("MEMGEN_SERVICE", s.module());
    new TreeMap<>(s.env()).forEach(b::addEnvironmentVariable);
    // DJL runs offline (the PyTorch natives come in the image's jars); JVM flags go in JAVA_TOOL_OPTIONS.
    b.setEntrypoint("java", "-Dai.djl.offline=true", "-jar", APP.resolve("quarkus-run.jar").toString());
    b.setWorkingDirectory(APP);
    b.setUser("185");
    b.addExposedPort(Port.tcp(s.grpcPort()));
    b.addExposedPort(Port.tcp(s.httpPort()));
    b.addLabel("org.opencontainers.image.title", "memgen " + s.module());
    return b;
  }

  private static RegistryImage registry(String ref) throws InvalidImageReferenceException {
    ImageReference reference = ImageReference.parse(ref.startsWith(Jib.REGISTRY_IMAGE_PREFIX)
        ? ref.substring(Jib.REGISTRY_IMAGE_PREFIX.length()) : ref);
    CredentialRetrieverFactory credentials = CredentialRetrieverFactory.forImage(reference, e -> {});
    return RegistryImage.named(reference)
        .addCredentialRetriever(credentials.dockerConfig())
        .addCredentialRetriever(credentials.wellKnownCredentialHelpers());
  }

  private static FileEntriesLayer tree(String name, Path source, AbsoluteUnixPath target) throws IOException {
    FileEntriesLayer.Builder layer = FileEntriesLayer.builder().setName(name);
    addTree(layer, source, target);
    return layer.build();
  }

  private static void addTree(FileEntriesLayer.Builder layer, Path source, AbsoluteUnixPath target) throws IOException {
    try (Stream<Path> files = Files.walk(source)) {
      for (Path f : files.sorted().toList()) {
        if (Files.isRegularFile(f)) {
          layer.addEntry(f, target.resolve(source.relativize(f).toString()));
        }
      }
    }
  }

  private static FileEntriesLayer files(String name, List<Path> files, AbsoluteUnixPath target) {
    FileEntriesLayer.Builder layer = FileEntriesLayer.builder().setName(name);
    files.forEach(f -> layer.addEntry(f, target.resolve(f.getFileName().toString())));
    return layer.build();
  }

  /** The version in the application jar's name, {@code app/memgen-SERVICE-VERSION.jar}. */
  static String versionOf(Path app, String module) throws IOException {
    String prefix = "memgen-" + module + "-";
    try (Stream<Path> jars = Files.list(app.resolve("app"))) {
      return jars.map(p -> p.getFileName().toString())
          .filter(n -> n.startsWith(prefix) && n.endsWith(".jar"))
          .map(n -> n.substring(prefix.length(), n.length() - ".jar".length()))
          .findFirst()
          .orElseThrow(() -> new StartupException("no " + prefix + "VERSION.jar in " + app.resolve("app")
              + " (fix: rebuild it with ./mvnw -B -q -pl " + module + " -am package -DskipTests, or pass --tag)"));
    }
  }

  private List<Service> chosen() {
    if (only == null || only.isEmpty()) {
      return SERVICES;
    }
    List<Service> chosen = new ArrayList<>();
    for (String name : only) {
      chosen.add(SERVICES.stream().filter(s -> s.module().equals(name.strip())).findFirst()
          .orElseThrow(() -> new IllegalArgumentException("--services: unknown service '" + name + "' (known: "
              + String.join(", ", SERVICES.stream().map(Service::module).toList()) + ")")));
    }
    return chosen;
  }

  /**
   * The default base, built by deploy/images/base.sh (debootstrap, a minute or two) once per version of that script
   * (its digest is in the file's name) and reused.
   */
  private static Path defaultBase(Path home) throws IOException, InterruptedException {
    Path script = home.resolve("deploy/images/base.sh");
    String digest;
    try {
      digest = HexFormat.of().formatHex(MessageDigest.getInstance("SHA-256").digest(Files.readAllBytes(script)));
    } catch (NoSuchAlgorithmException e) {
      throw new IllegalStateException(e);
    }
    Path base = home.resolve(".memgen/images/debian-bookworm-openjdk17-" + digest.substring(0, 12) + ".tar");
    if (Files.isRegularFile(base)) {
      return base;
    }
    System.err.println("images: building the base image once (" + base + ") with deploy/images/base.sh ...");
    Process p = new ProcessBuilder(script.toString(), base.toString())
        .inheritIO().redirectOutput(ProcessBuilder.Redirect.to(new java.io.File("/dev/stderr"))).start();
    int code = p.waitFor();
    if (code != 0 || !Files.isRegularFile(base)) {
      throw new StartupException("the base image could not be built (deploy/images/base.sh exited " + code
          + ", its message above; fix: what it says, or --base-image REF with a registry or tar:// image)");
    }
    return base;
  }
}
