package dev.memgen.trigger;

import dev.memgen.rpc.Ready;
import dev.memgen.rpc.TriggerService;
import jakarta.inject.Singleton;

/** The trigger service once {@link TriggerModel} has built it (see {@link Ready}). */
@Singleton
public class TriggerReady extends Ready<TriggerService> {}
