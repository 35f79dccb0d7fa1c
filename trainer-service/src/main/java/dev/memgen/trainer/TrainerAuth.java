package dev.memgen.trainer;

import dev.memgen.rpc.ServiceAuth;
import io.quarkus.grpc.GlobalInterceptor;
import io.quarkus.runtime.Startup;
import jakarta.inject.Singleton;
import java.util.Optional;
import org.eclipse.microprofile.config.inject.ConfigProperty;

/** API keys on every gRPC call of trainer-service (see {@link ServiceAuth}; off unless memgen.auth.keys-file is set). */
@GlobalInterceptor
@Singleton
@Startup
public class TrainerAuth extends ServiceAuth {
  TrainerAuth(@ConfigProperty(name = "memgen.auth.keys-file") Optional<String> keysFile) {
    super(keysFile, "trainer-service");
  }
}
