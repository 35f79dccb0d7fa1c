package dev.memgen.rpc;

/**
 * What weaver-service and trigger-service have in common for those who watch them (metrics, readiness): their
 * sessions, their default adapter, their model thread's queue and the batched passes it runs.
 */
public interface MemoryService extends AdapterHost {
  /** Sessions open now. */
  int openSessions();

  /** The adapter sessions that name none get. */
  String defaultAdapterName();

  /** Messages and passes waiting for the model thread. */
  int modelQueue();

  /** What a pass does: "weave" or "decide". */
  String passKind();

  /** Passes run and the requests they carried: their ratio is the mean batch across sessions. */
  PendingPasses.Passes passes();
}
