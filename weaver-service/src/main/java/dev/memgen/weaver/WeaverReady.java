package dev.memgen.weaver;

import dev.memgen.rpc.Ready;
import dev.memgen.rpc.WeaverService;
import jakarta.inject.Singleton;

/** The weaver service once {@link WeaverModel} has built it (see {@link Ready}). */
@Singleton
public class WeaverReady extends Ready<WeaverService> {}
