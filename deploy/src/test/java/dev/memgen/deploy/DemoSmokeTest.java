package dev.memgen.deploy;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import java.awt.image.BufferedImage;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.concurrent.TimeUnit;
import javax.imageio.ImageIO;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * {@code memgen demo --smoke}: the main job end to end on a tiny random model (broker; reasoner, memory and trainer in
 * one JVM, and with --distributed the four services as processes; a fleet rewarded by the verifier, weaver and
 * trigger versions trained and swapped in, the final evaluation, the parametric baseline, the report). Its accuracies mean nothing; what must hold is the accounting (every trajectory trained or
 * judged once, none lost), the JSON's fields, and a report with its charts that a real browser renders without errors.
 */
class DemoSmokeTest {
  @TempDir Path tmp;

  /** The default layout: reasoner, memory and trainer in the demo's own JVM (the broker a child JVM). */
  @Test
  void theDemoRunsEndToEndInOneJvmAndItsReportRendersInChromium() throws Exception {
    JsonNode json = demo(tmp.resolve("one-jvm"));
    Path report = Path.of(json.get("report").asText());
    assertFalse(Files.exists(report.resolveSibling("loop").resolve("run").resolve("trigger-service.log")),
        "no service processes in this layout");
    screenshot(report);
  }

  /** --distributed: the four services as processes; trigger-service follows the trainer's trigger versions. */
  @Test
  void theDemoRunsEndToEndAsProcesses() throws Exception {
    JsonNode json = demo(tmp.resolve("processes"), "--distributed");
    // trigger-service followed the announcements: it swapped a trained trigger in.
    String triggerLog = Files.readString(Path.of(json.get("report").asText()).resolveSibling("loop").resolve("run")
        .resolve("trigger-service.log"));
    assertTrue(triggerLog.matches("(?s).*trigger 'default' v[2-9]\\d* \\(memgen\\.adapters@\\d+\\) loaded: swapped in.*"),
        "trigger-service swapped a trained trigger in");
  }

  /** Runs {@code demo --smoke}, checks its JSON and report files, and returns the JSON. */
  private static JsonNode demo(Path cache, String... extra) throws Exception {
    List<String> args = new java.util.ArrayList<>(List.of("demo", "--smoke", "--dir", cache.toString()));
    args.addAll(List.of(extra));
    JsonNode json = Commands.summary(args);
    for (String field : List.of("requests", "adapter_versions", "base_A", "base_new", "memgen_A", "memgen_new",
        "parametric_A", "parametric_new", "trajectories_published", "trajectories_trained", "trajectories_lost",
        "trajectories_duplicated", "report", "base_model", "final_memory")) {
      assertTrue(json.has(field), "the JSON has " + field + ": " + json);
    }
    assertEquals(12, json.get("requests").asInt());
    assertEquals(12, json.get("trajectories_published").asInt(), "one trajectory per request");
    assertEquals(0, json.get("trajectories_lost").asInt());
    assertEquals(0, json.get("trajectories_duplicated").asInt());
    assertEquals(12, json.get("trajectories_trained").asInt() + json.get("trajectories_judged").asInt()
        + json.get("trajectories_pending").asInt(), "every trajectory trained, judged or in the open window: " + json);
    assertTrue(json.get("adapter_versions").asInt() >= 1, "the trainer published a version: " + json);
    assertEquals("threshold", json.get("trigger_mode").asText(), "the trigger decides, in serving and in the evaluation");
    assertTrue(json.get("trigger_versions").asInt() >= 1, "the trainer trained and announced the trigger: " + json);
    assertTrue(Files.isRegularFile(Path.of(json.get("final_memory").asText()).resolve("manifest.json")));

    Path report = Path.of(json.get("report").asText());
    assertTrue(Files.isRegularFile(report));
    String html = Files.readString(report);
    for (String chart : List.of("accuracy_by_version.png", "memgen_vs_parametric.png", "invocation_rate.png",
        "trajectory_to_serving.png")) {
      Path png = report.resolveSibling(chart);
      assertTrue(html.contains("src=\"" + chart + "\""), "the report shows " + chart);
      BufferedImage image = ImageIO.read(png.toFile());
      assertTrue(image != null && image.getWidth() >= 600 && image.getHeight() >= 300, chart + " is a PNG chart");
    }
    return json;
  }

  /** Headless Chromium loads the report: no console or network error, and the screenshot shows text and charts. */
  private void screenshot(Path report) throws Exception {
    String browser = List.of("chromium", "chromium-browser", "google-chrome").stream()
        .filter(b -> Files.isExecutable(Path.of("/usr/bin", b))).findFirst()
        .orElseThrow(() -> new AssertionError("no chromium on this machine: .ci/run installs Debian's chromium"));
    Path shot = tmp.resolve("report.png");
    Process p = new ProcessBuilder("/usr/bin/" + browser, "--headless", "--no-sandbox", "--disable-gpu",
        "--enable-logging=stderr", "--v=0", "--hide-scrollbars", "--window-size=1000,2600",
        "--screenshot=" + shot, report.toUri().toString()).redirectErrorStream(true).start();
    String log = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
    assertTrue(p.waitFor(120, TimeUnit.SECONDS), "chromium finished");
    assertEquals(0, p.exitValue(), log);
    assertFalse(log.contains("Failed to load resource") || log.contains("ERR_FILE_NOT_FOUND") || log.contains("Uncaught"),
        "the report loads without errors:\n" + log);
    BufferedImage image = ImageIO.read(shot.toFile());
    assertTrue(image != null, "chromium wrote a screenshot:\n" + log);
    int saturated = 0; // the charts' series colours; text and a broken-image icon are grey
    int dark = 0;
    for (int y = 0; y < image.getHeight(); y += 3) {
      for (int x = 0; x < image.getWidth(); x += 3) {
        int rgb = image.getRGB(x, y) & 0xffffff;
        int r = (rgb >> 16) & 0xff;
        int g = (rgb >> 8) & 0xff;
        int b = rgb & 0xff;
        if (Math.max(r, Math.max(g, b)) - Math.min(r, Math.min(g, b)) > 80) {
          saturated++;
        }
        if (((rgb >> 16) & 0xff) + ((rgb >> 8) & 0xff) + (rgb & 0xff) < 200) {
          dark++;
        }
      }
    }
    assertTrue(dark > 500, "the screenshot shows text (" + dark + " dark samples)");
    assertTrue(saturated > 300, "the screenshot shows the charts' colours (" + saturated + " coloured samples)");
  }
}
