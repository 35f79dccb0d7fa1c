package dev.memgen.trigger;

import dev.memgen.rpc.ServiceAuth;
import io.quarkus.grpc.GlobalInterceptor;
import io.quarkus.runtime.Startup;
import jakarta.inject.Singleton;
import java.util.Optional;
import org.eclipse.microprofile.config.inject.ConfigProperty;

/** API keys on every gRPC call of trigger-service (see {@link ServiceAuth}; off unless memgen.auth.keys-file is set). */
@GlobalInterceptor
@Singleton
@Startup
public class TriggerAuth extends ServiceAuth {
  TriggerAuth(@ConfigProperty(name = "memgen.auth.keys-file") Optional<String> keysFile) {
    super(keysFile, "trigger-service");
  }
}
