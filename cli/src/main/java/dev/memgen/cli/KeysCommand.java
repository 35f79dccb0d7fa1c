package dev.memgen.cli;

import dev.memgen.rpc.ApiKeys;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.Arrays;
import java.util.List;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;
import picocli.CommandLine.Parameters;

/**
 * API keys for the services' {@code memgen.auth.keys-file}: {@code add} makes a key, prints it once on stdout and
 * appends only its digest to the file (so the file can be shared as a ConfigMap or Secret without revealing keys);
 * {@code list} shows who may use what.
 */
@Command(name = "keys", mixinStandardHelpOptions = true, description = "API keys: add one (printed once), list them.",
    subcommands = {KeysCommand.Add.class, KeysCommand.ListKeys.class})
final class KeysCommand {
  private KeysCommand() {}

  @Command(name = "add", mixinStandardHelpOptions = true,
      description = "Make a key for NAME, append its digest to --file, print the key (once) on stdout.")
  static final class Add implements Callable<Integer> {
    @Parameters(index = "0", paramLabel = "NAME", description = "who holds the key (letters, digits, . _ -)") String name;

    @Option(names = "--adapters", required = true, description = "adapters the key may use: * or a,b,...") String adapters;

    @Option(names = "--file", required = true, description = "the keys file (memgen.auth.keys-file); created if missing")
    Path file;

    @Override
    public Integer call() throws Exception {
      String key = ApiKeys.newKey();
      String line = ApiKeys.line(name, key, Arrays.stream(adapters.split(",")).map(String::strip).toList());
      if (Files.exists(file)) {
        if (ApiKeys.load(file).names().contains(name)) { // load refuses a file the services would refuse
          throw new IllegalArgumentException("the keys file " + file + " already has a key named '" + name + "'");
        }
      }
      Files.writeString(file, line + "\n", StandardCharsets.UTF_8, StandardOpenOption.CREATE, StandardOpenOption.APPEND);
      System.err.printf("added key '%s' (adapters %s) to %s; services read the file at startup%n", name, adapters, file);
      System.out.println(key);
      return 0;
    }
  }

  @Command(name = "list", mixinStandardHelpOptions = true, description = "The keys in --file: names and adapters.")
  static final class ListKeys implements Callable<Integer> {
    @Option(names = "--file", required = true, description = "the keys file") Path file;

    @Override
    public Integer call() {
      List<ApiKeys.Caller> callers = ApiKeys.load(file).callers();
      for (ApiKeys.Caller c : callers) {
        System.out.println(c.name() + "\t" + String.join(",", c.adapters()));
      }
      return 0;
    }
  }
}
