package dev.memgen.cli;

import java.awt.BasicStroke;
import java.awt.Color;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.jfree.chart.ChartFactory;
import org.jfree.chart.ChartUtils;
import org.jfree.chart.JFreeChart;
import org.jfree.chart.plot.PlotOrientation;
import org.jfree.chart.plot.XYPlot;
import org.jfree.chart.renderer.xy.XYLineAndShapeRenderer;
import org.jfree.data.category.DefaultCategoryDataset;
import org.jfree.data.statistics.HistogramDataset;
import org.jfree.data.xy.XYSeries;
import org.jfree.data.xy.XYSeriesCollection;

/**
 * The demo's {@code report.html} and its PNG charts (JFreeChart, drawn headless): accuracy by version per domain,
 * MemGen against the parametric baseline (what each keeps of the old domain and gains on the new), the invocation
 * rate by version per domain (where the trigger learns to recall), and how long a trajectory takes to be served.
 */
final class DemoReport {
  /**
   * One evaluated variant: accuracy (%) and the trigger's invocation rate (inference insertions per consultation) per
   * domain; no rates for a variant without memory.
   */
  record Row(String variant, long version, Map<String, Double> accuracy, Map<String, Double> invocation) {}

  /** Everything the report shows. {@code versions}: base (version 0) first, then every published version in order. */
  record Data(String title, List<String> domains, Row base, List<Row> versions, Row parametric, int evalItems,
      List<Double> trajectoryToServingS, Map<String, String> facts) {}

  static final List<String> CHARTS = List.of("accuracy_by_version.png", "memgen_vs_parametric.png",
      "invocation_rate.png", "trajectory_to_serving.png");

  private DemoReport() {}

  /** Writes the charts and {@code report.html} into {@code dir}; returns the report's path. */
  static Path write(Path dir, Data d) throws IOException {
    System.setProperty("java.awt.headless", "true");
    Files.createDirectories(dir);
    save(dir.resolve(CHARTS.get(0)), accuracyByVersion(d));
    save(dir.resolve(CHARTS.get(1)), versusParametric(d));
    save(dir.resolve(CHARTS.get(2)), invocationRate(d));
    save(dir.resolve(CHARTS.get(3)), latency(d));
    Path html = dir.resolve("report.html");
    Files.writeString(html, html(d), StandardCharsets.UTF_8);
    return html;
  }

  private static void save(Path file, JFreeChart chart) throws IOException {
    chart.setBackgroundPaint(Color.WHITE);
    org.jfree.chart.plot.Plot plot = chart.getPlot();
    plot.setBackgroundPaint(Color.WHITE);
    if (plot instanceof XYPlot xy) {
      xy.setRangeGridlinePaint(Color.LIGHT_GRAY);
      xy.setDomainGridlinePaint(Color.LIGHT_GRAY);
    } else if (plot instanceof org.jfree.chart.plot.CategoryPlot c) {
      c.setRangeGridlinePaint(Color.LIGHT_GRAY);
    }
    ChartUtils.saveChartAsPNG(file.toFile(), chart, 720, 420);
  }

  private static JFreeChart accuracyByVersion(Data d) {
    XYSeriesCollection series = new XYSeriesCollection();
    for (String domain : d.domains()) {
      XYSeries s = new XYSeries("MemGen, domain " + domain);
      s.add(0, d.base().accuracy().get(domain));
      for (Row r : d.versions()) {
        s.add(r.version(), r.accuracy().get(domain));
      }
      series.addSeries(s);
    }
    for (String domain : d.domains()) {
      XYSeries p = new XYSeries("parametric baseline, domain " + domain);
      double last = d.versions().isEmpty() ? 1 : d.versions().get(d.versions().size() - 1).version();
      p.add(0, d.base().accuracy().get(domain));
      p.add(last, d.parametric().accuracy().get(domain));
      series.addSeries(p);
    }
    JFreeChart chart = ChartFactory.createXYLineChart("Greedy accuracy by adapter version (" + d.evalItems()
        + " held-out items per domain; version 0 = the frozen base)", "adapter version", "accuracy (%)", series,
        PlotOrientation.VERTICAL, true, false, false);
    XYPlot plot = chart.getXYPlot();
    XYLineAndShapeRenderer renderer = new XYLineAndShapeRenderer(true, true);
    int n = d.domains().size();
    Color[] palette = {new Color(0xD6, 0x27, 0x28), new Color(0x1F, 0x77, 0xB4), new Color(0x2C, 0xA0, 0x2C), new Color(0x94, 0x67, 0xBD)};
    for (int i = 0; i < n; i++) { // a domain has one colour: solid for MemGen, dashed for the parametric baseline
      renderer.setSeriesPaint(i, palette[i % palette.length]);
      renderer.setSeriesPaint(n + i, palette[i % palette.length]);
      renderer.setSeriesStroke(n + i, new BasicStroke(1.5f, BasicStroke.CAP_BUTT, BasicStroke.JOIN_MITER, 10f, new float[] {6f, 4f}, 0f));
    }
    plot.setRenderer(renderer);
    plot.getRangeAxis().setRange(0, 100);
    plot.getDomainAxis().setStandardTickUnits(org.jfree.chart.axis.NumberAxis.createIntegerTickUnits());
    return chart;
  }

  private static JFreeChart versusParametric(Data d) {
    DefaultCategoryDataset data = new DefaultCategoryDataset();
    Row last = d.versions().isEmpty() ? d.base() : d.versions().get(d.versions().size() - 1);
    for (String domain : d.domains()) {
      data.addValue(d.base().accuracy().get(domain), "frozen base", "domain " + domain);
      data.addValue(last.accuracy().get(domain), "MemGen (v" + last.version() + ")", "domain " + domain);
      data.addValue(d.parametric().accuracy().get(domain), "parametric baseline (every weight)", "domain " + domain);
    }
    JFreeChart chart = ChartFactory.createBarChart("MemGen vs the parametric baseline, same traffic and rewards",
        "", "accuracy (%)", data, PlotOrientation.VERTICAL, true, false, false);
    chart.getCategoryPlot().getRangeAxis().setRange(0, 100);
    return chart;
  }

  private static JFreeChart invocationRate(Data d) {
    DefaultCategoryDataset data = new DefaultCategoryDataset();
    for (Row r : d.versions()) {
      for (String domain : d.domains()) {
        data.addValue(r.invocation().getOrDefault(domain, 0.0), "domain " + domain, "v" + r.version());
      }
    }
    JFreeChart chart = ChartFactory.createBarChart("Trigger invocation rate by version and domain (inference insertions "
        + "per consultation)", "adapter version", "rate", data, PlotOrientation.VERTICAL, true, false, false);
    chart.getCategoryPlot().getRangeAxis().setRange(0, 1.05);
    return chart;
  }

  private static JFreeChart latency(Data d) {
    HistogramDataset data = new HistogramDataset();
    double[] values = d.trajectoryToServingS().stream().mapToDouble(Double::doubleValue).toArray();
    if (values.length > 0) {
      data.addSeries("trajectories", values, Math.max(5, Math.min(30, values.length / 4)));
    }
    return ChartFactory.createHistogram("Trajectory -> serving: from a trajectory's record to the first moment a "
        + "version trained on it serves", "seconds", "trajectories", data, PlotOrientation.VERTICAL, false, false, false);
  }

  private static String html(Data d) {
    StringBuilder b = new StringBuilder();
    b.append("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>").append(esc(d.title()))
        .append("</title>\n<style>body{font-family:sans-serif;max-width:960px;margin:2em auto;color:#222}")
        .append("table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #bbb;padding:4px 10px;text-align:right}")
        .append("th:first-child,td:first-child{text-align:left}img{max-width:100%;display:block;margin:1em 0}</style>")
        .append("</head><body>\n<h1>").append(esc(d.title())).append("</h1>\n");
    b.append("<table id=\"results\"><tr><th>variant</th>");
    for (String domain : d.domains()) {
      b.append("<th>").append(esc(domain)).append(" (%)</th>");
    }
    for (String domain : d.domains()) {
      b.append("<th>invocation rate ").append(esc(domain)).append("</th>");
    }
    b.append("</tr>\n");
    List<Row> rows = new ArrayList<>();
    rows.add(d.base());
    rows.addAll(d.versions());
    rows.add(d.parametric());
    for (Row r : rows) {
      b.append("<tr><td>").append(esc(r.variant())).append("</td>");
      for (String domain : d.domains()) {
        b.append(String.format("<td>%.1f</td>", r.accuracy().get(domain)));
      }
      for (String domain : d.domains()) {
        Double rate = r.invocation().get(domain);
        b.append(rate == null ? "<td>-</td>" : String.format("<td>%.2f</td>", rate));
      }
      b.append("</tr>\n");
    }
    b.append("</table>\n<p>Greedy accuracy on ").append(d.evalItems())
        .append(" held-out items per domain (never in the traffic).</p>\n<table id=\"facts\">");
    Map<String, String> facts = new LinkedHashMap<>(d.facts());
    facts.forEach((k, v) -> b.append("<tr><td>").append(esc(k)).append("</td><td>").append(esc(v)).append("</td></tr>\n"));
    b.append("</table>\n");
    for (String chart : CHARTS) {
      b.append("<img src=\"").append(chart).append("\" alt=\"").append(chart.replace(".png", "").replace('_', ' '))
          .append("\">\n");
    }
    b.append("</body></html>\n");
    return b.toString();
  }

  private static String esc(String s) {
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("\"", "&quot;");
  }
}
