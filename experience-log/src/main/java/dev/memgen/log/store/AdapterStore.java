package dev.memgen.log.store;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.io.IOException;
import java.io.InputStream;
import java.nio.file.DirectoryStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.security.DigestInputStream;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.time.Instant;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.HexFormat;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.TreeMap;
import java.util.regex.Pattern;
import java.util.stream.Stream;

/**
 * Where trained adapters (memory directories) live: a directory, content-addressed. Every file of a published
 * version is stored once under {@code blobs/sha256/<hex>}; each version is a small JSON record
 * {@code adapters/<name>/<version>.json} naming its files' hashes, its parent version, the base model's fingerprint,
 * its evaluation metrics and the input offsets it was trained on (so a trainer restarted after a crash resumes from
 * the last published version's offsets), and the hash of the version's {@link Ledger} (stored as a blob): what became
 * of every trajectory record it consumed, by id. A record is created whole or not at all and never replaced, so a
 * reader never sees half a version and two writers of one version cannot both succeed; reading a version back
 * verifies every hash and refuses a corrupted file by name.
 */
public final class AdapterStore {
  private static final ObjectMapper JSON = new ObjectMapper();
  private static final Pattern NAME = Pattern.compile("[A-Za-z0-9][A-Za-z0-9._-]{0,127}");

  /**
   * One published version. {@code parent} is 0 for a first version. {@code ledgerSha256} is the hash of its
   * {@link Ledger} ("" for a version published without one), {@code counts} that ledger's {@link Ledger#counts}.
   */
  public record Version(String name, long version, long parent, String baseFingerprint, Map<String, String> files,
      Map<String, Double> metrics, Map<String, Long> offsets, Instant created, String ledgerSha256,
      Map<String, Long> counts) {}

  private final Path root;

  private AdapterStore(Path root) {
    this.root = root;
  }

  public static AdapterStore open(Path root) throws IOException {
    Files.createDirectories(root.resolve("blobs").resolve("sha256"));
    Files.createDirectories(root.resolve("adapters"));
    return new AdapterStore(root);
  }

  public Path root() {
    return root;
  }

  /**
   * Publishes the regular files of {@code dir} as the next version of adapter {@code name} (1 for the first).
   *
   * @param offsets input offsets the adapter was trained on, e.g. {@code "memgen.trajectories-0" -> 1234}
   */
  public Version publish(String name, Path dir, long parent, String baseFingerprint, Map<String, Double> metrics,
      Map<String, Long> offsets) throws IOException {
    return publish(name, dir, parent, baseFingerprint, metrics, offsets, Ledger.EMPTY);
  }

  /**
   * {@link #publish(String, Path, long, String, Map, Map)} with the version's {@link Ledger}, as the next version after
   * the latest stored one.
   */
  public synchronized Version publish(String name, Path dir, long parent, String baseFingerprint, Map<String, Double> metrics,
      Map<String, Long> offsets, Ledger ledger) throws IOException {
    long version = latest(name).map(v -> v.version() + 1).orElse(1L);
    return publishAs(name, version, dir, parent, baseFingerprint, metrics, offsets, ledger);
  }

  /**
   * Publishes {@code dir} as version {@code version} of {@code name}, which must not exist yet: the record is created,
   * never replaced (a hard link to a finished temporary file, which fails if the name is taken), so when two trainers
   * both believe they own an adapter, one of them stores version N and the other gets a {@link VersionConflictException}
   * and nothing of its own is visible; the versions stay a single line of parents. The ledger is stored first,
   * content-addressed like the files (so a loser cannot overwrite the winner's), and the record names its hash: the
   * record is the commit point.
   *
   * @throws VersionConflictException version {@code version} exists already (another trainer published it)
   */
  public synchronized Version publishAs(String name, long version, Path dir, long parent, String baseFingerprint,
      Map<String, Double> metrics, Map<String, Long> offsets, Ledger ledger) throws IOException {
    checkName(name);
    if (version < 1 || parent < 0 || parent >= version) {
      throw new IllegalArgumentException(name + ": version " + version + " with parent " + parent
          + " (a version is >= 1 and its parent older)");
    }
    Path record = recordPath(name, version);
    if (Files.exists(record)) { // taken already: skip storing the blobs (createOnce below is what decides a race)
      throw new VersionConflictException(name, version);
    }
    Map<String, String> files = new TreeMap<>();
    try (DirectoryStream<Path> entries = Files.newDirectoryStream(dir, Files::isRegularFile)) {
      for (Path file : entries) {
        files.put(file.getFileName().toString(), storeBlob(file));
      }
    }
    if (files.isEmpty()) {
      throw new IllegalArgumentException(dir + ": no files to publish");
    }
    Files.createDirectories(record.getParent());
    String ledgerSha256 = "";
    if (!ledger.entries().isEmpty() || ledger.otherAdapters() > 0) {
      Path lines = Files.createTempFile(root.resolve("blobs"), "ledger", ".tmp");
      try {
        Files.write(lines, ledger.toJsonLines());
        ledgerSha256 = storeBlob(lines);
      } finally {
        Files.deleteIfExists(lines);
      }
    }
    Version v = new Version(name, version, parent, baseFingerprint, files, Map.copyOf(metrics), Map.copyOf(offsets), Instant.now(),
        ledgerSha256, ledger.counts());
    createOnce(record, JSON.writerWithDefaultPrettyPrinter().writeValueAsBytes(toJson(v)), name, version);
    return v;
  }

  /** Version {@code version} of {@code name} exists already: another writer published it first. */
  public static final class VersionConflictException extends IOException {
    public VersionConflictException(String name, long version) {
      super("adapter " + name + " v" + version + " was published by another trainer meanwhile (this one no longer owns "
          + "the adapter, or two trainers were started for it)");
    }
  }

  /** Every version of {@code name}, oldest first. */
  public List<Version> versions(String name) throws IOException {
    checkName(name);
    Path dir = root.resolve("adapters").resolve(name);
    List<Version> out = new ArrayList<>();
    if (!Files.isDirectory(dir)) {
      return out;
    }
    try (Stream<Path> files = Files.list(dir)) {
      for (Path f : files.filter(p -> p.getFileName().toString().matches("\\d+\\.json")).toList()) {
        out.add(read(f));
      }
    }
    out.sort(Comparator.comparingLong(Version::version));
    return out;
  }

  public Optional<Version> latest(String name) throws IOException {
    List<Version> all = versions(name);
    return all.isEmpty() ? Optional.empty() : Optional.of(all.get(all.size() - 1));
  }

  public Version get(String name, long version) throws IOException {
    checkName(name);
    Path record = recordPath(name, version);
    if (!Files.isRegularFile(record)) {
      throw new IllegalArgumentException("adapter " + name + " has no version " + version + " in " + root);
    }
    return read(record);
  }

  /**
   * The ledger of version {@code version} of {@code name}, checked against the hash its record names ({@link
   * Ledger#EMPTY} for a version published without one).
   *
   * @throws CorruptedAdapterException the ledger is missing or does not match its hash
   */
  public Ledger ledger(String name, long version) throws IOException {
    Version v = get(name, version);
    if (v.ledgerSha256().isEmpty()) {
      return Ledger.EMPTY;
    }
    Path file = blobPath(v.ledgerSha256());
    if (!Files.isRegularFile(file)) {
      file = legacyLedgerPath(name, version); // stores written before ledgers were content-addressed
    }
    if (!Files.isRegularFile(file)) {
      throw new CorruptedAdapterException(name + " v" + version + ": its ledger " + file + " is missing");
    }
    byte[] bytes = Files.readAllBytes(file);
    String actual = HexFormat.of().formatHex(sha256().digest(bytes));
    if (!actual.equals(v.ledgerSha256())) {
      throw new CorruptedAdapterException(name + " v" + version + ": ledger " + file + " is corrupted (sha256 " + actual
          + ", published as " + v.ledgerSha256() + ")");
    }
    return Ledger.fromJsonLines(bytes, file.toString());
  }

  /** The names of every adapter in the store. */
  public List<String> names() throws IOException {
    try (Stream<Path> dirs = Files.list(root.resolve("adapters"))) {
      return dirs.filter(Files::isDirectory).map(p -> p.getFileName().toString()).sorted().toList();
    }
  }

  /**
   * Writes version {@code version} of {@code name} into {@code into} (a new directory), checking every file's sha256
   * as it copies.
   *
   * @throws CorruptedAdapterException naming the file whose content does not match its hash
   */
  public Path materialize(String name, long version, Path into) throws IOException {
    Version v = get(name, version);
    Files.createDirectories(into);
    for (Map.Entry<String, String> f : v.files().entrySet()) {
      Path blob = blobPath(f.getValue());
      if (!Files.isRegularFile(blob)) {
        throw new CorruptedAdapterException(name + " v" + version + ": file " + f.getKey() + " is missing from the store ("
            + blob + ")");
      }
      Path tmp = into.resolve(f.getKey() + ".tmp");
      String actual = copyHashing(blob, tmp);
      if (!actual.equals(f.getValue())) {
        Files.deleteIfExists(tmp);
        throw new CorruptedAdapterException(name + " v" + version + ": file " + f.getKey() + " is corrupted (sha256 "
            + actual + ", published as " + f.getValue() + ")");
      }
      Files.move(tmp, into.resolve(f.getKey()), StandardCopyOption.REPLACE_EXISTING, StandardCopyOption.ATOMIC_MOVE);
    }
    return into;
  }

  /**
   * The sha256 of version {@code version}'s record, the hash {@code AdapterPublished.sha256} carries: the record names
   * every file's hash, so this one hash pins the whole version.
   */
  public String recordSha256(String name, long version) throws IOException {
    get(name, version);
    return HexFormat.of().formatHex(sha256().digest(Files.readAllBytes(recordPath(name, version))));
  }

  /** The record's path relative to the store's root ({@code AdapterPublished.uri}), e.g. {@code adapters/default/7.json}. */
  public String recordUri(String name, long version) {
    checkName(name);
    return root.relativize(recordPath(name, version)).toString().replace('\\', '/');
  }

  /**
   * {@link #materialize(String, long, Path)} for a version announced with record hash {@code recordSha256}: the record
   * itself is checked first, so a record edited or swapped after publication is refused as well as a corrupted file.
   */
  public Path materialize(String name, long version, String recordSha256, Path into) throws IOException {
    String actual = recordSha256(name, version);
    if (!actual.equals(recordSha256)) {
      throw new CorruptedAdapterException(name + " v" + version + ": record " + recordPath(name, version)
          + " is corrupted (sha256 " + actual + ", published as " + recordSha256 + ")");
    }
    return materialize(name, version, into);
  }

  /** A version whose stored bytes no longer match their hashes. */
  public static final class CorruptedAdapterException extends IOException {
    public CorruptedAdapterException(String message) {
      super(message);
    }
  }

  private String storeBlob(Path file) throws IOException {
    Path tmp = Files.createTempFile(root.resolve("blobs"), "incoming", ".tmp");
    try {
      String hash = copyHashing(file, tmp);
      Path blob = blobPath(hash);
      if (Files.exists(blob)) {
        Files.delete(tmp); // already stored: content addressing keeps one copy
      } else {
        Files.move(tmp, blob, StandardCopyOption.ATOMIC_MOVE);
      }
      return hash;
    } finally {
      Files.deleteIfExists(tmp);
    }
  }

  private static String copyHashing(Path from, Path to) throws IOException {
    MessageDigest sha = sha256();
    try (InputStream in = new DigestInputStream(Files.newInputStream(from), sha)) {
      Files.copy(in, to, StandardCopyOption.REPLACE_EXISTING);
    }
    return HexFormat.of().formatHex(sha.digest());
  }

  private Path blobPath(String hash) {
    if (!hash.matches("[0-9a-f]{64}")) {
      throw new IllegalArgumentException("not a sha256: '" + hash + "'");
    }
    return root.resolve("blobs").resolve("sha256").resolve(hash);
  }

  private Path recordPath(String name, long version) {
    return root.resolve("adapters").resolve(name).resolve(version + ".json");
  }

  private Path legacyLedgerPath(String name, long version) {
    return root.resolve("adapters").resolve(name).resolve(version + ".ledger.jsonl");
  }

  private static void checkName(String name) {
    if (name == null || !NAME.matcher(name).matches()) {
      throw new IllegalArgumentException("adapter name '" + name + "' must be 1-128 letters, digits, '.', '_' or '-', "
          + "starting with a letter or digit");
    }
  }

  /**
   * Writes {@code file} whole or not at all, and only if it does not exist: a link to a finished temporary file is
   * atomic and refuses an existing name (a rename would silently replace it).
   */
  private static void createOnce(Path file, byte[] bytes, String name, long version) throws IOException {
    Path tmp = Files.createTempFile(file.getParent(), "." + file.getFileName(), ".tmp");
    try {
      Files.write(tmp, bytes);
      try {
        Files.createLink(file, tmp);
      } catch (UnsupportedOperationException e) { // a file system without hard links: checked, then moved
        Files.move(tmp, file);
      }
    } catch (java.nio.file.FileAlreadyExistsException e) {
      throw new VersionConflictException(name, version);
    } finally {
      Files.deleteIfExists(tmp);
    }
  }

  private static ObjectNode toJson(Version v) {
    ObjectNode n = JSON.createObjectNode();
    n.put("name", v.name());
    n.put("version", v.version());
    n.put("parent", v.parent());
    n.put("base_fingerprint", v.baseFingerprint());
    ObjectNode files = n.putObject("files");
    v.files().forEach(files::put);
    ObjectNode metrics = n.putObject("metrics");
    new TreeMap<>(v.metrics()).forEach(metrics::put);
    ObjectNode offsets = n.putObject("offsets");
    new TreeMap<>(v.offsets()).forEach(offsets::put);
    n.put("created", v.created().toString());
    if (!v.ledgerSha256().isEmpty()) {
      n.put("ledger_sha256", v.ledgerSha256());
      ObjectNode counts = n.putObject("counts");
      new TreeMap<>(v.counts()).forEach(counts::put);
    }
    return n;
  }

  private static Version read(Path file) throws IOException {
    JsonNode n;
    try {
      n = JSON.readTree(file.toFile());
    } catch (IOException e) {
      throw new IOException(file + ": unreadable version record: " + e.getMessage(), e);
    }
    Map<String, String> files = new LinkedHashMap<>();
    n.path("files").fields().forEachRemaining(e -> files.put(e.getKey(), e.getValue().asText()));
    Map<String, Double> metrics = new LinkedHashMap<>();
    n.path("metrics").fields().forEachRemaining(e -> metrics.put(e.getKey(), e.getValue().asDouble()));
    Map<String, Long> offsets = new LinkedHashMap<>();
    n.path("offsets").fields().forEachRemaining(e -> offsets.put(e.getKey(), e.getValue().asLong()));
    Map<String, Long> counts = new LinkedHashMap<>();
    n.path("counts").fields().forEachRemaining(e -> counts.put(e.getKey(), e.getValue().asLong()));
    return new Version(n.path("name").asText(), n.path("version").asLong(), n.path("parent").asLong(),
        n.path("base_fingerprint").asText(), files, metrics, offsets, Instant.parse(n.path("created").asText()),
        n.path("ledger_sha256").asText(""), counts);
  }

  private static MessageDigest sha256() {
    try {
      return MessageDigest.getInstance("SHA-256");
    } catch (NoSuchAlgorithmException e) {
      throw new IllegalStateException(e);
    }
  }
}
