package dev.memgen.log.broker;

import java.io.IOException;
import java.io.InputStream;
import java.io.UncheckedIOException;
import java.net.InetSocketAddress;
import java.net.ServerSocket;
import java.net.Socket;
import java.net.URISyntaxException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Base64;
import java.util.List;
import java.util.Map;
import java.util.UUID;
import java.util.concurrent.TimeUnit;

/**
 * A real single-node Kafka broker (KRaft: broker and controller in one process) in a child JVM, for the tests, the
 * embedded default and {@code deploy/}. Never a mock: it is Apache Kafka, run from the jars the {@code kafka-broker}
 * module resolved at build time. Its data lives in a directory, so a broker restarted on the same directory (after
 * {@link #stop()}, or a {@link #kill()}) still has every record it acknowledged. The child exits when this JVM does.
 */
public final class KafkaBroker implements AutoCloseable {
  private static final String CLASSPATH_RESOURCE = "memgen/kafka-broker.classpath";
  private static final Duration START_TIMEOUT = Duration.ofSeconds(60);

  private final Path dir;
  private final int port;
  private final int controllerPort;
  private final Secured secured; // the second listener; null: none
  private final int securedPort;
  private Process process;

  /**
   * A second listener, secured as a deployment secures its broker: SASL/PLAIN logins of {@code saslUsers} (user to
   * password; empty: no SASL) and/or TLS with the broker's key and certificate in {@code keyStore} (PKCS#12; null: no
   * TLS). At least one of the two.
   */
  public record Secured(Map<String, String> saslUsers, Path keyStore, String keyStorePassword) {
    public Secured {
      saslUsers = Map.copyOf(saslUsers);
      if (saslUsers.isEmpty() && keyStore == null) {
        throw new IllegalArgumentException("a secured listener needs SASL users, a key store, or both");
      }
    }

    /** Kafka's security protocol for it: SASL_PLAINTEXT, SSL or SASL_SSL. */
    public String protocol() {
      return saslUsers.isEmpty() ? "SSL" : keyStore == null ? "SASL_PLAINTEXT" : "SASL_SSL";
    }
  }

  private KafkaBroker(Path dir, int port, int controllerPort, Secured secured, int securedPort) {
    this.dir = dir;
    this.port = port;
    this.controllerPort = controllerPort;
    this.secured = secured;
    this.securedPort = securedPort;
  }

  /**
   * Starts a broker on {@code dir} (formatted on first use), listening on {@code port} (0: any free port), and
   * returns once it accepts connections.
   */
  public static KafkaBroker start(Path dir, int port) throws IOException {
    return start(dir, port, null);
  }

  /**
   * {@link #start(Path, int)}, plus (unless null) a {@link Secured} listener at {@link #securedBootstrapServers}: a
   * broker as a deployment secures it, for the clients' tests.
   */
  public static KafkaBroker start(Path dir, int port, Secured secured) throws IOException {
    Files.createDirectories(dir);
    KafkaBroker broker = new KafkaBroker(dir.toAbsolutePath(), port == 0 ? freePort() : port, freePort(), secured,
        secured == null ? -1 : freePort());
    broker.launch();
    return broker;
  }

  /** {@code host:port} of the secured listener. */
  public String securedBootstrapServers() {
    if (secured == null) {
      throw new IllegalStateException("this broker was started without a secured listener");
    }
    return "localhost:" + securedPort;
  }

  /** {@code host:port} for clients' {@code bootstrap.servers}. */
  public String bootstrapServers() {
    return "localhost:" + port;
  }

  public Path dir() {
    return dir;
  }

  public boolean isRunning() {
    return process != null && process.isAlive();
  }

  /** Stops the broker cleanly (SIGTERM: it flushes and closes its logs), waiting up to 30 s, then forcibly. */
  public void stop() {
    if (process == null) {
      return;
    }
    process.destroy();
    try {
      if (!process.waitFor(30, TimeUnit.SECONDS)) {
        process.destroyForcibly().waitFor(10, TimeUnit.SECONDS);
      }
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      process.destroyForcibly();
    }
    process = null;
  }

  /** Kills the broker without warning (SIGKILL), as a crash would. */
  public void kill() throws InterruptedException {
    if (process != null) {
      process.destroyForcibly().waitFor(10, TimeUnit.SECONDS);
      process = null;
    }
  }

  /** Starts the broker again on the same directory and ports. */
  public void restart() throws IOException {
    if (isRunning()) {
      throw new IllegalStateException("the broker on " + dir + " is running; stop or kill it first");
    }
    launch();
  }

  @Override
  public void close() {
    stop();
  }

  private String securedListener() {
    return secured == null ? "" : ",SECURED://localhost:" + securedPort;
  }

  /** The secured listener's own settings (Kafka's listener.name.secured.* prefix). */
  private List<String> securedSettings() {
    if (secured == null) {
      return List.of();
    }
    List<String> out = new ArrayList<>();
    if (!secured.saslUsers().isEmpty()) {
      out.add("listener.name.secured.sasl.enabled.mechanisms=PLAIN");
      out.add("listener.name.secured.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule "
          + "required " + secured.saslUsers().entrySet().stream().map(e -> "user_" + e.getKey() + "=\\\"" + e.getValue()
          + "\\\"").collect(java.util.stream.Collectors.joining(" ")) + ";");
    }
    if (secured.keyStore() != null) {
      out.add("listener.name.secured.ssl.keystore.location=" + secured.keyStore().toAbsolutePath());
      out.add("listener.name.secured.ssl.keystore.password=" + secured.keyStorePassword());
      out.add("listener.name.secured.ssl.keystore.type=PKCS12");
    }
    return out;
  }

  private void launch() throws IOException {
    Path properties = dir.resolve("server.properties");
    Files.writeString(properties, String.join("\n",
        "process.roles=broker,controller",
        "node.id=1",
        "controller.quorum.voters=1@localhost:" + controllerPort,
        "listeners=PLAINTEXT://localhost:" + port + ",CONTROLLER://localhost:" + controllerPort + securedListener(),
        "advertised.listeners=PLAINTEXT://localhost:" + port + securedListener(),
        "controller.listener.names=CONTROLLER",
        "inter.broker.listener.name=PLAINTEXT",
        "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT"
            + (secured == null ? "" : ",SECURED:" + secured.protocol()),
        String.join("\n", securedSettings()),
        "log.dirs=" + dir.resolve("data"),
        "num.partitions=1",
        "offsets.topic.replication.factor=1",
        "transaction.state.log.replication.factor=1",
        "transaction.state.log.min.isr=1",
        "share.coordinator.state.topic.replication.factor=1",
        "share.coordinator.state.topic.min.isr=1",
        "group.initial.rebalance.delay.ms=0",
        "auto.create.topics.enable=false",
        ""));
    String classpath = classpath();
    if (!Files.exists(dir.resolve("data").resolve("meta.properties"))) {
      // A url-safe base64 id may start with '-', which the tool's argument parser takes for an option (Kafka's own
      // Uuid.randomUuid() avoids it the same way): draw again until it does not.
      String clusterId;
      do {
        clusterId = Base64.getUrlEncoder().withoutPadding().encodeToString(uuidBytes());
      } while (clusterId.startsWith("-"));
      Process format = new ProcessBuilder(java(), "-cp", classpath, "kafka.tools.StorageTool", "format", "-t", clusterId,
          "-c", properties.toString())
          .redirectErrorStream(true).redirectOutput(dir.resolve("format.log").toFile()).start();
      try {
        if (!format.waitFor(60, TimeUnit.SECONDS) || format.exitValue() != 0) {
          format.destroyForcibly();
          throw new IOException("formatting the Kafka storage in " + dir + " failed; see " + dir.resolve("format.log")
              + ":\n" + Files.readString(dir.resolve("format.log")));
        }
      } catch (InterruptedException e) {
        Thread.currentThread().interrupt();
        throw new IOException("interrupted while formatting " + dir, e);
      }
    }
    List<String> command = new ArrayList<>(List.of(java(), "-Xmx512m", "-cp", classpath, BrokerMain.class.getName(),
        properties.toString()));
    process = new ProcessBuilder(command).redirectErrorStream(true)
        .redirectOutput(ProcessBuilder.Redirect.appendTo(dir.resolve("broker.log").toFile())).start();
    long deadline = System.nanoTime() + START_TIMEOUT.toNanos();
    while (!accepts(port)) {
      if (!process.isAlive()) {
        throw new IOException("the Kafka broker exited with " + process.exitValue() + " while starting; see "
            + dir.resolve("broker.log"));
      }
      if (System.nanoTime() > deadline) {
        stop();
        throw new IOException("the Kafka broker did not open port " + port + " within " + START_TIMEOUT.toSeconds()
            + " s; see " + dir.resolve("broker.log"));
      }
      sleep(100);
    }
  }

  /** The broker's jars (resolved at build time) plus the location of {@link BrokerMain}. */
  static String classpath() throws IOException {
    String jars;
    try (InputStream in = KafkaBroker.class.getClassLoader().getResourceAsStream(CLASSPATH_RESOURCE)) {
      if (in == null) {
        throw new IOException("resource " + CLASSPATH_RESOURCE + " is missing: build the kafka-broker module first");
      }
      jars = new String(in.readAllBytes(), StandardCharsets.UTF_8).trim();
    }
    try {
      Path self = Path.of(BrokerMain.class.getProtectionDomain().getCodeSource().getLocation().toURI());
      return self + java.io.File.pathSeparator + jars;
    } catch (URISyntaxException e) {
      throw new IOException("cannot locate " + BrokerMain.class.getName() + "'s classes", e);
    }
  }

  private static String java() {
    return Path.of(System.getProperty("java.home"), "bin", "java").toString();
  }

  private static byte[] uuidBytes() {
    UUID id = UUID.randomUUID();
    byte[] b = new byte[16];
    for (int i = 0; i < 8; i++) {
      b[i] = (byte) (id.getMostSignificantBits() >>> (56 - 8 * i));
      b[8 + i] = (byte) (id.getLeastSignificantBits() >>> (56 - 8 * i));
    }
    return b;
  }

  static int freePort() {
    try (ServerSocket s = new ServerSocket(0)) {
      return s.getLocalPort();
    } catch (IOException e) {
      throw new UncheckedIOException(e);
    }
  }

  private static boolean accepts(int port) {
    try (Socket s = new Socket()) {
      s.connect(new InetSocketAddress("localhost", port), 200);
      return true;
    } catch (IOException e) {
      return false;
    }
  }

  private static void sleep(long ms) {
    try {
      Thread.sleep(ms);
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      throw new IllegalStateException("interrupted", e);
    }
  }
}
