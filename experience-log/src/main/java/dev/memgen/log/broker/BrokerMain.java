package dev.memgen.log.broker;

import java.io.IOException;

/**
 * The child JVM's entry point: starts a thread that exits the JVM when its stdin closes (the parent that launched it
 * died, however it died), then runs Kafka's own main. Uses only the JDK and reflection, because the child's classpath
 * is the broker's jars plus this class, not the rest of MemGen.
 */
public final class BrokerMain {
  private BrokerMain() {}

  public static void main(String[] args) throws Exception {
    Thread watchdog = new Thread(() -> {
      try {
        while (System.in.read() >= 0) {
          // the parent never writes; reading blocks until the pipe closes
        }
      } catch (IOException ignored) {
        // a broken pipe means the same thing
      }
      System.err.println("memgen: the parent process is gone; stopping the broker");
      Runtime.getRuntime().halt(0);
    }, "parent-watchdog");
    watchdog.setDaemon(true);
    watchdog.start();
    Class.forName("kafka.Kafka").getMethod("main", String[].class).invoke(null, (Object) args);
  }
}
