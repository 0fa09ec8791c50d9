/**
 * The adapter: the small surface a vendor writes so that the conformance kit
 * can make test shares on their array and look at them. It is the kit's
 * only way to see the array; everything else goes through Ferry (the daemon
 * and the vendor's driver). Like abstract-level's private surface, it is
 * kept as small as possible: create, write, checksum, locate, list, delete.
 *
 * The kit calls the adapter one call at a time, never concurrently, and
 * removes everything it created after each check (deleteShare).
 */

/** One backend as the daemon config names it, with the options the vendor's driver gets. */
export interface AdapterBackend {
  /** The backend's name in the daemon config (1-64 letters, digits, ".", "_" or "-"). */
  name: string;
  /** The backend's `options`, given to the driver's `createDriver` as `ctx.options`. */
  options: Record<string, unknown>;
}

/** What `setup` returns: two backends driven by the plugin, and the pools to use. */
export interface AdapterSetup {
  /** [source, destination]. Both are driven by the plugin under test; they may be the same array. */
  backends: [AdapterBackend, AdapterBackend];
  /** A pool of the source backend where the kit creates its shares. */
  sourcePool: string;
  /** A pool of the destination backend the kit migrates to. */
  destinationPool: string;
  /**
   * OPTIONAL: a pool of the destination backend with less free room than the
   * kit's share size, for the RESOURCE_EXHAUSTED check. Without it that
   * check is skipped.
   */
  smallPool?: string;
}

/** Where a share lives now. */
export interface ShareLocation {
  backend: string;
  pool: string;
}

/**
 * What a vendor implements for the kit. A module passed to
 * `ferry-conformance --adapter FILE` exports `createAdapter(config)`, which
 * returns one of these (`config` is the parsed `--config FILE`, or `{}`).
 */
export interface ConformanceAdapter {
  /**
   * Starts the array, or points at one, and says which backends and pools
   * the kit may use. Called once per run, before anything else. The array
   * must outlive the daemon: the kit SIGKILLs and restarts ferryd and
   * expects the array (and its jobs) to carry on.
   */
  setup(): Promise<AdapterSetup>;

  /** Creates an empty share of `sizeBytes` in `backend`/`pool` and returns its id. */
  createShare(backend: string, pool: string, sizeBytes: number): Promise<string>;

  /**
   * Writes `data` (at most 1 MiB) at `offset` through the array's data path,
   * wherever the share lives now, and resolves once the array acknowledged
   * it. Rejects when the array refuses the write (the kit reports why).
   */
  writeShare(shareId: string, offset: number, data: Uint8Array): Promise<void>;

  /** The sha256 of the share's whole content, lower-case hex, read wherever the share lives now. */
  checksum(shareId: string): Promise<string>;

  /**
   * Where the share lives now (the source until a cutover commits, the
   * destination after), or null if the array has no such share. A share
   * keeps its id when it moves; an array that renames it maps it here.
   */
  locate(shareId: string): Promise<ShareLocation | null>;

  /**
   * Everything on `backend` that holds share data, by a stable name: the
   * shares that live there and any destination a migration job created
   * there that is not (yet) a share. This is how the kit proves that a
   * cancel left nothing behind and that a repeated start made one
   * destination, so in-flight destinations must be listed.
   */
  listShares(backend: string): Promise<string[]>;

  /**
   * Removes a share the kit created, wherever it lives, together with any
   * migration job still holding it (cancel the job first). Resolves if the
   * share is already gone.
   */
  deleteShare(shareId: string): Promise<void>;

  /** Stops what `setup` started. Called once, last. */
  teardown(): Promise<void>;
}

/** The module an `--adapter FILE` names. */
export interface AdapterModule {
  createAdapter(config: Record<string, unknown>): ConformanceAdapter | Promise<ConformanceAdapter>;
}
