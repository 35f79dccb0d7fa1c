package dev.memgen.deploy;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import com.fasterxml.jackson.dataformat.yaml.YAMLFactory;
import com.fasterxml.jackson.dataformat.yaml.YAMLMapper;
import dev.memgen.log.Topics;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.Set;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;

/**
 * The Kubernetes manifests (deploy/k8s), rendered offline by kustomize ({@code kubectl kustomize}, which
 * {@code .ci/run} installs from Debian's kubernetes-client when missing) and checked against the services they run:
 * every container's ports are its service's configured ports, every MEMGEN_* variable is a setting that service reads,
 * probes point at the health endpoints on a declared port, selectors, claims, config maps and autoscaler targets
 * resolve, the Kafka topics are the ones the code uses with its settings, and only the GPU overlay puts the reasoner
 * on GPU nodes. A manifest with a wrong value is refused with a message naming the document, field and value.
 */
class KubernetesManifestsTest {
  private static final Path ROOT = Path.of(System.getProperty("memgen.root", "..")).toAbsolutePath().normalize();
  private static final ObjectMapper YAML = new YAMLMapper();
  /** Settings read from the environment, not from application.properties. */
  private static final Set<String> ENVIRONMENT_SETTINGS = Set.of("MEMGEN_DEVICE", "MEMGEN_KAFKA_CONFIG");

  static List<JsonNode> render(String overlay) throws IOException, InterruptedException {
    Process p;
    try {
      p = new ProcessBuilder("kubectl", "kustomize", ROOT.resolve("deploy/k8s/overlays").resolve(overlay).toString())
          .redirectError(ProcessBuilder.Redirect.DISCARD).start();
    } catch (IOException e) {
      throw new AssertionError("no kubectl on this machine: .ci/run installs Debian's kubernetes-client", e);
    }
    String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
    assertTrue(p.waitFor(60, TimeUnit.SECONDS) && p.exitValue() == 0, "kubectl kustomize " + overlay + " failed");
    List<JsonNode> docs = new ArrayList<>();
    try (var parser = new YAMLFactory().createParser(out)) {
      for (var it = YAML.readValues(parser, JsonNode.class); it.hasNext(); ) {
        JsonNode d = it.next();
        if (d != null && !d.isEmpty()) {
          docs.add(d);
        }
      }
    }
    return docs;
  }

  @Test
  void theCpuOverlayRendersAndChecksOut() throws Exception {
    List<JsonNode> docs = render("cpu");
    assertEquals(List.of(), problems(docs));
    assertEquals(Set.of("Deployment/memgen-reasoner", "Deployment/memgen-weaver"), targetsOf(docs, "HorizontalPodAutoscaler"));
    assertEquals(Set.of("Deployment/memgen-reasoner", "Deployment/memgen-weaver", "Deployment/memgen-trigger"),
        targetsOf(docs, "PodDisruptionBudget"));
    for (JsonNode d : docs) {
      assertEquals("memgen", d.at("/metadata/namespace").asText("memgen"), name(d));
      assertTrue(d.at("/spec/template/spec/nodeSelector").isMissingNode(), "no GPU nodes on the CPU overlay: " + name(d));
    }
  }

  @Test
  void theGpuOverlayPutsTheReasonerOnAGpu() throws Exception {
    List<JsonNode> docs = render("gpu");
    assertEquals(List.of(), problems(docs));
    JsonNode reasoner = find(docs, "Deployment", "memgen-reasoner");
    JsonNode pod = reasoner.at("/spec/template/spec");
    assertEquals("true", pod.at("/nodeSelector/nvidia.com~1gpu.present").asText());
    assertEquals("nvidia.com/gpu", pod.at("/tolerations/0/key").asText());
    JsonNode c = pod.at("/containers/0");
    assertEquals("1", c.at("/resources/limits/nvidia.com~1gpu").asText());
    assertEquals("gpu", env(c).get("MEMGEN_DEVICE"));
    assertTrue(c.at("/image").asText().endsWith("-cuda"), c.at("/image").asText());
    assertTrue(find(docs, "Deployment", "memgen-weaver").at("/spec/template/spec/nodeSelector").isMissingNode());
  }

  @Test
  void aWrongValueIsNamed() throws Exception {
    List<JsonNode> docs = render("cpu");
    ObjectNode port = (ObjectNode) find(docs, "Deployment", "memgen-weaver").at("/spec/template/spec/containers/0/ports/0");
    port.put("containerPort", 9999);
    ObjectNode env = (ObjectNode) find(docs, "Deployment", "memgen-trigger").at("/spec/template/spec/containers/0/env/0");
    env.put("name", "MEMGEN_MEMROY_DIR");
    ((ObjectNode) find(docs, "HorizontalPodAutoscaler", "memgen-reasoner").at("/spec/scaleTargetRef")).put("name", "nope");
    assertEquals(List.of(
        "Deployment/memgen-weaver container weaver: port grpc is 9999, but weaver-service listens on 9002 "
            + "(quarkus.grpc.server.port)",
        "Deployment/memgen-trigger container trigger: MEMGEN_MEMROY_DIR is not a setting of trigger-service (none of "
            + "its application.properties settings, set or commented, is memgen.memroy.dir or a spelling of it)",
        "HorizontalPodAutoscaler/memgen-reasoner: scales Deployment/nope, which is not in the manifests"),
        problems(docs).stream().filter(p -> !p.contains("probe")).toList());
  }

  @Test
  void theComposeFileSetsOnlyRealSettingsOnTheServicesPorts() throws Exception {
    JsonNode compose = YAML.readTree(ROOT.resolve("deploy/compose/compose.yaml").toFile());
    List<String> out = new ArrayList<>();
    for (String name : List.of("reasoner", "weaver", "trigger", "trainer")) {
      String service = name + "-service";
      JsonNode c = compose.at("/services/" + name);
      if (!c.path("image").asText().startsWith("memgen/" + service + ":")) {
        out.add(name + ": image " + c.path("image").asText());
      }
      c.path("environment").fieldNames().forEachRemaining(var -> {
        try {
          if (var.startsWith("MEMGEN_") && !settingNames(service).contains(var)) {
            out.add(name + ": " + var + " is not a setting of " + service);
          }
        } catch (IOException e) {
          throw new java.io.UncheckedIOException(e);
        }
      });
      Properties settings = settings(service);
      Set<String> ports = new HashSet<>();
      c.path("ports").forEach(p -> ports.add(p.asText()));
      for (String property : List.of("quarkus.grpc.server.port", "quarkus.http.port")) {
        String port = settings.getProperty(property);
        if (!ports.contains(port + ":" + port)) {
          out.add(name + ": does not publish " + property + " " + port);
        }
      }
    }
    assertEquals(List.of(), out);
  }

  /** Everything wrong with a rendered set of documents, each naming document, field and value. */
  static List<String> problems(List<JsonNode> docs) throws IOException {
    List<String> out = new ArrayList<>();
    Set<String> names = new HashSet<>();
    for (JsonNode d : docs) {
      if (!names.add(name(d))) {
        out.add(name(d) + ": defined twice");
      }
    }
    Map<String, JsonNode> deployments = new HashMap<>();
    docs.stream().filter(d -> d.path("kind").asText().equals("Deployment")).forEach(d -> deployments.put(d.at("/metadata/name").asText(), d));
    for (JsonNode d : deployments.values()) {
      String service = d.at("/metadata/name").asText().replace("memgen-", "") + "-service";
      Properties settings = settings(service);
      JsonNode pod = d.at("/spec/template");
      if (!labels(pod.at("/metadata/labels")).entrySet().containsAll(labels(d.at("/spec/selector/matchLabels")).entrySet())) {
        out.add(name(d) + ": spec.selector does not match the pod template's labels");
      }
      JsonNode security = pod.at("/spec/securityContext");
      if (!security.path("runAsNonRoot").asBoolean() || security.path("runAsUser").asInt() != 185
          || security.path("fsGroup").asInt() != 185) {
        out.add(name(d) + ": the pod must run as the images' user, uid 185, non-root, with fsGroup 185 so that its"
            + " volumes are writable (./memgen images); has " + security);
      }
      Set<String> volumes = new HashSet<>();
      for (JsonNode v : pod.at("/spec/volumes")) {
        volumes.add(v.path("name").asText());
        String claim = v.at("/persistentVolumeClaim/claimName").asText("");
        if (!claim.isEmpty() && !names.contains("PersistentVolumeClaim/" + claim)) {
          out.add(name(d) + " volume " + v.path("name").asText() + ": claim " + claim + " is not in the manifests");
        }
      }
      for (JsonNode c : pod.at("/spec/containers")) {
        String where = name(d) + " container " + c.path("name").asText();
        Map<String, Integer> ports = new HashMap<>();
        c.path("ports").forEach(p -> ports.put(p.path("name").asText(), p.path("containerPort").asInt()));
        expectPort(out, where, "grpc", ports, service, settings, "quarkus.grpc.server.port");
        expectPort(out, where, "http", ports, service, settings, "quarkus.http.port");
        if (!c.path("image").asText().matches("memgen/" + service + ":[\\w.-]+")) {
          out.add(where + ": image " + c.path("image").asText() + " is not memgen/" + service + ":TAG");
        }
        for (String kind : List.of("cpu", "memory")) {
          if (c.at("/resources/requests/" + kind).isMissingNode()) {
            out.add(where + ": no resources.requests." + kind);
          }
        }
        for (String[] probe : new String[][] {{"startupProbe", "/q/health/started"}, {"readinessProbe", "/q/health/ready"},
            {"livenessProbe", "/q/health/live"}}) {
          JsonNode get = c.at("/" + probe[0] + "/httpGet");
          if (!get.path("path").asText().equals(probe[1]) || !ports.containsKey(get.path("port").asText())) {
            out.add(where + ": " + probe[0] + " must GET " + probe[1] + " on a declared port, has " + get);
          }
        }
        for (JsonNode m : c.path("volumeMounts")) {
          if (!volumes.contains(m.path("name").asText())) {
            out.add(where + ": mounts " + m.path("name").asText() + ", which is not a volume of the pod");
          }
        }
        Map<String, String> env = env(c);
        for (JsonNode from : c.path("envFrom")) {
          JsonNode cm = find(docs, "ConfigMap", from.at("/configMapRef/name").asText());
          if (cm == null) {
            out.add(where + ": envFrom config map " + from.at("/configMapRef/name").asText() + " is not in the manifests");
          } else {
            cm.path("data").fields().forEachRemaining(e -> env.putIfAbsent(e.getKey(), e.getValue().asText()));
          }
        }
        for (String var : env.keySet()) {
          if (var.startsWith("MEMGEN_") && !ENVIRONMENT_SETTINGS.contains(var) && !settingNames(service).contains(var)) {
            out.add(where + ": " + var + " is not a setting of " + service + " (none of its application.properties "
                + "settings, set or commented, is " + var.toLowerCase().replace('_', '.') + " or a spelling of it)");
          }
        }
      }
    }
    for (JsonNode s : kind(docs, "Service")) {
      JsonNode target = deployments.values().stream().filter(d -> labels(d.at("/spec/template/metadata/labels")).entrySet()
          .containsAll(labels(s.at("/spec/selector")).entrySet())).findFirst().orElse(null);
      if (target == null) {
        out.add(name(s) + ": selects no Deployment's pods");
        continue;
      }
      Set<String> portNames = new HashSet<>();
      target.at("/spec/template/spec/containers/0/ports").forEach(p -> portNames.add(p.path("name").asText()));
      s.at("/spec/ports").forEach(p -> {
        if (!portNames.contains(p.path("targetPort").asText())) {
          out.add(name(s) + ": targetPort " + p.path("targetPort").asText() + " is not a port of " + name(target));
        }
      });
    }
    for (String k : List.of("HorizontalPodAutoscaler")) {
      for (JsonNode h : kind(docs, k)) {
        String ref = h.at("/spec/scaleTargetRef/kind").asText() + "/" + h.at("/spec/scaleTargetRef/name").asText();
        if (!names.contains(ref)) {
          out.add(name(h) + ": scales " + ref + ", which is not in the manifests");
        }
      }
    }
    for (JsonNode p : kind(docs, "PodDisruptionBudget")) {
      if (deployments.values().stream().noneMatch(d -> labels(d.at("/spec/template/metadata/labels")).entrySet()
          .containsAll(labels(p.at("/spec/selector/matchLabels")).entrySet()))) {
        out.add(name(p) + ": selects no Deployment's pods");
      }
    }
    // Kafka: the topics the code uses, with its settings; the bootstrap the services get is the cluster's plain listener
    for (String topic : List.of(Topics.TRAJECTORIES, Topics.FEEDBACK, Topics.ADAPTERS)) {
      JsonNode t = find(docs, "KafkaTopic", topic);
      if (t == null || find(docs, "KafkaTopic", Topics.deadLetter(topic)) == null) {
        out.add("KafkaTopic/" + topic + ": missing, or its dead-letter topic is");
        continue;
      }
      Topics.settings(topic).forEach((key, value) -> {
        if (!t.at("/spec/config/" + key).asText().equals(value)) {
          out.add(name(t) + ": config " + key + " is '" + t.at("/spec/config/" + key).asText() + "', the code uses " + value);
        }
      });
    }
    if (find(docs, "KafkaTopic", Topics.ADAPTERS) != null && find(docs, "KafkaTopic", Topics.ADAPTERS).at("/spec/partitions").asInt() != 1) {
      out.add("KafkaTopic/" + Topics.ADAPTERS + ": one partition (a total order of versions)");
    }
    for (JsonNode k : kind(docs, "Kafka")) {
      String bootstrap = k.at("/metadata/name").asText() + "-kafka-bootstrap:";
      JsonNode plain = null;
      for (JsonNode l : k.at("/spec/kafka/listeners")) {
        if (!l.path("tls").asBoolean()) {
          plain = l;
        }
      }
      String expected = bootstrap + (plain == null ? "?" : plain.path("port").asText());
      JsonNode config = find(docs, "ConfigMap", "memgen-config");
      if (config == null || !config.at("/data/MEMGEN_LOG_BOOTSTRAP").asText().equals(expected)) {
        out.add("ConfigMap/memgen-config: MEMGEN_LOG_BOOTSTRAP must be " + expected);
      }
    }
    return out;
  }

  private static void expectPort(List<String> out, String where, String port, Map<String, Integer> ports, String service,
      Properties settings, String property) {
    int configured = Integer.parseInt(settings.getProperty(property, "-1"));
    if (!ports.containsKey(port) || ports.get(port) != configured) {
      out.add(where + ": port " + port + " is " + ports.get(port) + ", but " + service + " listens on " + configured
          + " (" + property + ")");
    }
  }

  private static Properties settings(String service) throws IOException {
    Properties p = new Properties();
    try (var in = Files.newBufferedReader(ROOT.resolve(service).resolve("src/main/resources/application.properties"))) {
      p.load(in);
    }
    return p;
  }

  /**
   * The environment-variable form (MicroProfile Config's: upper case, every other character '_') of every setting a
   * service's application.properties sets or documents in a comment ("#memgen.x.y=...").
   */
  private static Set<String> settingNames(String service) throws IOException {
    Set<String> out = new HashSet<>();
    for (String line : Files.readAllLines(ROOT.resolve(service).resolve("src/main/resources/application.properties"))) {
      java.util.regex.Matcher m = java.util.regex.Pattern.compile("^#?\\s*(memgen\\.[\\w.-]+)=").matcher(line);
      if (m.find()) {
        out.add(m.group(1).toUpperCase().replaceAll("[^A-Z0-9]", "_"));
      }
    }
    return out;
  }

  private static Map<String, String> labels(JsonNode n) {
    Map<String, String> m = new HashMap<>();
    n.fields().forEachRemaining(e -> m.put(e.getKey(), e.getValue().asText()));
    return m;
  }

  static Map<String, String> env(JsonNode container) {
    Map<String, String> m = new HashMap<>();
    container.path("env").forEach(e -> m.put(e.path("name").asText(), e.path("value").asText()));
    return m;
  }

  private static List<JsonNode> kind(List<JsonNode> docs, String kind) {
    return docs.stream().filter(d -> d.path("kind").asText().equals(kind)).toList();
  }

  static JsonNode find(List<JsonNode> docs, String kind, String name) {
    return docs.stream().filter(d -> d.path("kind").asText().equals(kind) && d.at("/metadata/name").asText().equals(name))
        .findFirst().orElse(null);
  }

  private static Set<String> targetsOf(List<JsonNode> docs, String kind) {
    Set<String> out = new HashSet<>();
    for (JsonNode d : kind(docs, kind)) {
      if (kind.equals("HorizontalPodAutoscaler")) {
        out.add(d.at("/spec/scaleTargetRef/kind").asText() + "/" + d.at("/spec/scaleTargetRef/name").asText());
      } else {
        docs.stream().filter(x -> x.path("kind").asText().equals("Deployment") && labels(x.at("/spec/template/metadata/labels"))
            .entrySet().containsAll(labels(d.at("/spec/selector/matchLabels")).entrySet()))
            .forEach(x -> out.add(name(x)));
      }
    }
    return out;
  }

  private static String name(JsonNode d) {
    return d.path("kind").asText() + "/" + d.at("/metadata/name").asText();
  }
}
