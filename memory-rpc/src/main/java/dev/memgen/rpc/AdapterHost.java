package dev.memgen.rpc;

import java.nio.file.Path;
import java.util.List;

/**
 * Something that serves versions of named adapters and can be told to swap one in: weaver-service's and
 * trigger-service's session services, and a reasoner's embedded memory (one host for its weaver, one for its
 * trigger). {@link AdapterFollower} drives it from the adapters topic.
 */
public interface AdapterHost {
  /**
   * One version of a named adapter, as {@link #adapters()} reports it.
   *
   * @param sha256 the hash of its adapter-store record; "" for the directory the host started with
   * @param dir where it is loaded from (null for a memory lent by the caller)
   * @param loaded its memory is in native memory now
   * @param current sessions opened now get it (false: replaced or unloaded, still held by {@code sessions})
   * @param sessions open sessions using it
   */
  record Adapter(String name, long version, String sha256, Path dir, boolean loaded, boolean current, int sessions) {}

  /**
   * What {@link #install} did: {@code swapped} the name was loaded and the new version replaced it for new sessions
   * (false: the name was not loaded, so the version was loaded only to check it, and is loaded again when a session
   * asks); {@code alreadyCurrent} this very version (same record hash) was current, nothing was done.
   * {@code previous} is the version current before (0: the name was new).
   */
  record Installed(String name, long version, long previous, boolean swapped, boolean alreadyCurrent) {}

  /** The fingerprint of the base model this host runs on; it loads only adapters made for it. */
  String baseFingerprint();

  /** Every adapter this host knows, current versions first (by name), then replaced ones still held by sessions. */
  List<Adapter> adapters();

  /**
   * Makes version {@code version} of adapter {@code name}, a memory directory already verified against the adapter
   * store record with hash {@code sha256}, the current one: sessions opened from now on get it, open sessions keep
   * the version they have. If it cannot be loaded nothing changes.
   *
   * @throws IllegalArgumentException the version cannot be loaded (its message names it and what is wrong)
   */
  Installed install(String name, long version, String sha256, Path dir) throws InterruptedException;
}
