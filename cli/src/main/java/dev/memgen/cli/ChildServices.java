package dev.memgen.cli;

import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStreamReader;
import java.lang.management.ManagementFactory;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;

/**
 * {@code memgen serve weaver|trigger} as child processes (this JVM's binary, classpath and flags), for measuring the
 * microservice layout on one machine. Each child prints its port; its log goes to a temporary file. Closing (or this
 * JVM exiting) kills them.
 */
final class ChildServices implements AutoCloseable {
  private final List<Process> processes = new ArrayList<>();
  private final Thread killer = new Thread(this::kill);

  ChildServices() {
    Runtime.getRuntime().addShutdownHook(killer);
  }

  /** Starts {@code memgen serve <args>} and returns the port it listens on. */
  int serve(String... args) throws IOException, InterruptedException {
    List<String> cmd = new ArrayList<>();
    cmd.add(ProcessHandle.current().info().command().orElse("java"));
    cmd.addAll(ManagementFactory.getRuntimeMXBean().getInputArguments());
    cmd.addAll(List.of("-cp", System.getProperty("java.class.path"), Main.class.getName(), "serve"));
    cmd.addAll(List.of(args));
    Path log = Files.createTempFile("memgen-serve-", ".log");
    log.toFile().deleteOnExit();
    Process p = new ProcessBuilder(cmd).redirectError(log.toFile()).start();
    processes.add(p);
    BufferedReader out = new BufferedReader(new InputStreamReader(p.getInputStream(), StandardCharsets.UTF_8));
    CompletableFuture<String> first = CompletableFuture.supplyAsync(() -> {
      try {
        return out.readLine();
      } catch (IOException e) {
        return null;
      }
    });
    try {
      String line = first.get(120, TimeUnit.SECONDS);
      if (line != null && line.startsWith("listening on ")) {
        return Integer.parseInt(line.substring("listening on ".length()).trim());
      }
    } catch (TimeoutException | java.util.concurrent.ExecutionException e) {
      // reported below
    }
    String tail = String.join("\n", Files.readAllLines(log).stream().skip(Math.max(0, Files.readAllLines(log).size() - 20)).toList());
    throw new IllegalStateException("memgen serve " + String.join(" ", args) + " did not start; its log ends with:\n" + tail);
  }

  private void kill() {
    for (Process p : processes) {
      p.destroyForcibly();
    }
  }

  @Override
  public void close() throws InterruptedException {
    kill();
    for (Process p : processes) {
      p.waitFor(10, TimeUnit.SECONDS);
    }
    Runtime.getRuntime().removeShutdownHook(killer);
  }
}
