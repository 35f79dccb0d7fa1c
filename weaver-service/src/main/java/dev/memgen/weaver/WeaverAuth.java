package dev.memgen.weaver;

import dev.memgen.rpc.ServiceAuth;
import io.quarkus.grpc.GlobalInterceptor;
import io.quarkus.runtime.Startup;
import jakarta.inject.Singleton;
import java.util.Optional;
import org.eclipse.microprofile.config.inject.ConfigProperty;

/** API keys on every gRPC call of weaver-service (see {@link ServiceAuth}; off unless memgen.auth.keys-file is set). */
@GlobalInterceptor
@Singleton
@Startup
public class WeaverAuth extends ServiceAuth {
  WeaverAuth(@ConfigProperty(name = "memgen.auth.keys-file") Optional<String> keysFile) {
    super(keysFile, "weaver-service");
  }
}
