package dev.memgen.trainer;

import static dev.memgen.trainer.TrainerFixture.await;
import static dev.memgen.trainer.TrainerFixture.broker;
import static dev.memgen.trainer.TrainerFixture.feedback;
import static dev.memgen.trainer.TrainerFixture.model;
import static org.junit.jupiter.api.Assertions.assertEquals;

import dev.memgen.log.ExperienceLog;
import dev.memgen.log.Topics;
import dev.memgen.log.store.AdapterStore;
import dev.memgen.model.text.TextTokenizer;
import dev.memgen.proto.v1.Trajectory;
import io.opentelemetry.api.common.AttributeKey;
import io.opentelemetry.sdk.testing.exporter.InMemorySpanExporter;
import io.opentelemetry.sdk.trace.SdkTracerProvider;
import io.opentelemetry.sdk.trace.data.LinkData;
import io.opentelemetry.sdk.trace.data.SpanData;
import io.opentelemetry.sdk.trace.export.SimpleSpanProcessor;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.Properties;
import java.util.concurrent.ThreadLocalRandom;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * A window's span links the requests its trajectories came from: trajectories carrying a W3C {@code traceparent}
 * header (as the reasoner writes it) are trained into v2, and the trainer's {@code memgen.trainer.window} span names
 * v2 and links exactly those request spans (by trace and span id, each with its trajectory id); one without a header
 * is trained without a link.
 */
class TrainerTracingTest {
  @TempDir Path tmp;

  @Test
  void theWindowSpanLinksTheRequestsItsTrajectoriesCameFrom() throws Exception {
    String name = TrainerFixture.name("traced");
    ContinualTrainer.Settings s = TrainerFixture.settings(tmp, name, 4, 100, Optional.empty());
    Map<String, String> spanOf = new HashMap<>(); // trajectory id -> "traceId/spanId" of its request
    try (ExperienceLog log = new ExperienceLog(broker.bootstrapServers()); TextTokenizer tok = TextTokenizer.load(model);
        var producer = ExperienceLog.reliableProducer(broker.bootstrapServers(), new Properties())) {
      List<Trajectory> ts = TrainerFixture.trajectories(tok, name, 4, 31, true);
      for (int i = 0; i < ts.size(); i++) {
        Trajectory t = ts.get(i);
        ProducerRecord<String, byte[]> r = new ProducerRecord<>(Topics.TRAJECTORIES, name, t.toByteArray());
        if (i < 3) {
          String trace = hex(16);
          String span = hex(8);
          r.headers().add("traceparent", ("00-" + trace + "-" + span + "-01").getBytes(StandardCharsets.UTF_8));
          spanOf.put(t.getTrajectoryId(), trace + "/" + span);
        }
        producer.send(r).get();
        feedback(log, t.getTrajectoryId(), 1.0);
      }
    }
    InMemorySpanExporter exporter = InMemorySpanExporter.create();
    List<SpanData> finished;
    try (SdkTracerProvider provider = SdkTracerProvider.builder().addSpanProcessor(SimpleSpanProcessor.create(exporter))
        .build()) {
      AdapterStore store = AdapterStore.open(s.storeDir());
      try (TrainerFixture.Running t = new TrainerFixture.Running(new ContinualTrainer(s).traced(provider.get("test")))) {
        await(() -> TrainerFixture.versions(store, name) == 2, "v2 trained from the window");
        await(() -> !exporter.getFinishedSpanItems().isEmpty(), "the window's span ended");
      }
      finished = exporter.getFinishedSpanItems(); // before the provider's shutdown clears the exporter
    }
    List<SpanData> windows = finished.stream().filter(d -> d.getName().equals("memgen.trainer.window")).toList();
    assertEquals(1, windows.size(), finished.toString());
    SpanData w = windows.get(0);
    assertEquals(name, w.getAttributes().get(AttributeKey.stringKey("memgen.adapter")));
    assertEquals(2L, w.getAttributes().get(AttributeKey.longKey("memgen.window.published_version")));
    assertEquals(1L, w.getAttributes().get(AttributeKey.longKey("memgen.window.parent_version")));
    assertEquals(4L, w.getAttributes().get(AttributeKey.longKey("memgen.window.trajectories")));
    Map<String, String> linked = new HashMap<>();
    for (LinkData l : w.getLinks()) {
      linked.put(l.getAttributes().get(AttributeKey.stringKey("memgen.trajectory_id")),
          l.getSpanContext().getTraceId() + "/" + l.getSpanContext().getSpanId());
    }
    assertEquals(spanOf, linked, "one link per trajectory with a traceparent, to its request's span");
  }

  private static String hex(int bytes) {
    StringBuilder b = new StringBuilder();
    for (int i = 0; i < bytes; i++) {
      b.append(String.format("%02x", ThreadLocalRandom.current().nextInt(1, 256)));
    }
    return b.toString();
  }
}
