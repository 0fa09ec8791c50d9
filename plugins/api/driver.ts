/**
 * The driver contract: what a vendor plugin implements and what the daemon
 * promises it in return. Read docs in this file as the specification.
 *
 * The model is asynchronous (DESIGN.md, option C): every call returns fast.
 * `start` submits the job to the array; the daemon then calls `continue`
 * again and again until phase 1 is done, and on after that to keep the
 * destination warm; `complete` and `cancel` are called on request and may
 * also be called repeatedly until they report that they are done.
 *
 * What the daemon guarantees every driver:
 * - One call at a time per migration; calls for different migrations may
 *   run concurrently on the same driver instance.
 * - Every call gets the checkpoint the previous call of that migration
 *   returned, persisted to disk before the call is made. After a daemon crash
 *   the next call gets the last persisted checkpoint: a driver must treat
 *   every call as possibly a repeat of one whose result was lost.
 * - Arguments are checked before the driver sees them (the fields below are
 *   always present and well-formed).
 * - Every call has a deadline; `signal` aborts when it passes or the daemon
 *   shuts down. A call that ignores it is abandoned and counted as failed.
 *
 * What the daemon asks of every module driver: never block the event loop
 * (it is the daemon's); a call whose answer comes after its deadline counts
 * as DEADLINE_EXCEEDED, however it was answered.
 */
import type { DataDestination, DataSource } from './data-path.ts';
import type { ErrorCode } from './errors.ts';

/** The driver API version this module describes. A plugin's manifest must name it. */
export const DRIVER_API_VERSION = 1;

/** A plugin's `plugin.json`, read before any of its code runs. */
export interface PluginManifest {
  /** Unique among loaded plugins; what the config's `backends[].plugin` names. */
  name: string;
  /** The plugin's own version (semver). */
  version: string;
  /** The driver API version the plugin was written against (DRIVER_API_VERSION). */
  apiVersion: number;
  /** The module to import, relative to the plugin folder. Default "index.ts", then "index.js". */
  main?: string;
  /** One line for humans. */
  description?: string;
}

/** The four Manila migration flags, as capabilities. */
export interface Capabilities {
  /** The share can stay writable during phase 1. */
  writable: boolean;
  /** Writes wait, rather than fail, during the cutover. */
  nondisruptive: boolean;
  /** The share's metadata moves with it. */
  preserveMetadata: boolean;
  /** The share's snapshots move with it. */
  preserveSnapshots: boolean;
}

/** What the cutover does when it runs past `maxDowntimeMs`. */
export type CutoverAction = 'abort' | 'force';

/**
 * How a migration's data moves. `driver`: the source backend's driver moves
 * it (its array copies to the destination itself; the calls of Driver).
 * `host`: ferryd moves it, reading snapshots through the source's
 * `dataSource` and writing through the destination's `dataDestination`
 * (see DataSource), for arrays that cannot reach each other.
 */
export type DataPath = 'driver' | 'host';

/** One migration, as the driver sees it. Never changes after StartMigration. */
export interface MigrationSpec {
  /** The migration's id: unique, stable across restarts; use it as the job's idempotency key on the array. */
  id: string;
  /** The share to move. */
  source: { backend: string; shareId: string };
  /** Where to. The backend may be driven by another plugin; refuse it in checkCompatibility if unreachable. */
  destination: { backend: string; pool: string };
  /** Capabilities the caller requires (see Capabilities). */
  writable: boolean;
  nondisruptive: boolean;
  preserveMetadata: boolean;
  preserveSnapshots: boolean;
  /** A share type for the destination, or '' to keep the source's. */
  newShareType: string;
  /** Copy bandwidth cap in bytes per second; 0 means none. */
  maxBandwidthBytesPerSec: number;
  /** The cutover window in milliseconds (always > 0). */
  maxDowntimeMs: number;
  /** What the cutover does past its window. */
  cutoverAction: CutoverAction;
  /**
   * How the data moves, decided when the migration was admitted. A driver
   * called with `start`, `continue`, `complete` or `cancel` always sees
   * `driver`; the data-path calls always see `host`. checkCompatibility is
   * asked with `driver` whatever the caller asked for.
   */
  dataPath: DataPath;
}

/** A JSON-serialisable value the driver wants back on the next call. */
export type Checkpoint = { [key: string]: unknown } | null;

/** A structured logger (pino-compatible subset). */
export interface Logger {
  debug(obj: object | string, msg?: string): void;
  info(obj: object | string, msg?: string): void;
  warn(obj: object | string, msg?: string): void;
  error(obj: object | string, msg?: string): void;
}

/** What every per-migration call receives. */
export interface MigrationCall {
  /** The migration. */
  migration: MigrationSpec;
  /** The checkpoint the previous call returned (null before the first). */
  checkpoint: Checkpoint;
  /** Aborts at the call's deadline or at shutdown. */
  signal: AbortSignal;
  /** Logs with the migration id on every line. */
  log: Logger;
}

/** Progress as the array reports it. Bytes are whole numbers. */
export interface DriverProgress {
  /** The share's size. */
  totalBytes: number;
  /** Bytes copied at least once in the current pass order (never more than totalBytes). */
  copiedBytes: number;
  /** Bytes written on the source since they were copied. */
  dirtyBytes: number;
  /** Bytes per second newly dirtied by writes. */
  dirtyRateBytesPerSec: number;
  /** Copy throughput in bytes per second. */
  throughputBytesPerSec: number;
  /** Copy pass, 1-based; 0 before the copy begins. */
  iteration: number;
  /** Seconds until phase 1 is done; 0 when unknown or done. */
  etaSeconds: number;
  /** Set when writes outpace the copy. */
  warning?: string;
}

/** Returned by `start`. */
export interface StartResult {
  /** Persisted, and given to the next call. */
  checkpoint: Checkpoint;
}

/** Returned by `continue`. */
export interface ContinueResult {
  progress: DriverProgress;
  /**
   * True once the remaining delta fits the cutover window. The daemon keeps
   * the migration in PHASE1_DONE even if a later call says false (writes
   * surged): the cutover window, not this flag, bounds the freeze.
   */
  phase1Done: boolean;
  /** When the daemon should call again, in ms. The daemon clamps it to its configured bounds. */
  nextPollMs?: number;
  checkpoint: Checkpoint;
}

/** What the cutover measured. */
export interface CutoverMeasurements {
  /** How long writes were frozen, in ms. */
  freezeMs: number;
  /** Bytes copied while frozen. */
  finalDeltaBytes: number;
  /** Bytes verified while frozen. */
  verifiedBytes: number;
}

/** Returned by `complete`. */
export type CompleteResult =
  /** The share lives at its destination and the source is gone. Final. */
  | { status: 'done'; cutover: CutoverMeasurements; checkpoint: Checkpoint }
  /** Still cutting over: call `complete` again after `nextPollMs`. */
  | { status: 'in_progress'; nextPollMs?: number; checkpoint: Checkpoint }
  /** The cutover ran past its window and rolled back; the source is authoritative and phase 1 continues. */
  | { status: 'aborted'; reason: string; checkpoint: Checkpoint };

/** Returned by `cancel`. */
export interface CancelResult {
  /** True when the destination is gone and the source is as it was. Final. */
  done: boolean;
  nextPollMs?: number;
  checkpoint: Checkpoint;
}

/** Returned by `checkCompatibility`. */
export interface CompatibilityResult {
  /** What the driver can honour for this share and destination. */
  capabilities: Capabilities;
  /** Reasons the migration cannot be done at all (besides capabilities and room), one line each. Empty when it can. */
  reasons: string[];
  /** The share's size in bytes. */
  shareSizeBytes: number;
  /** Free bytes in the destination pool. */
  destinationFreeBytes: number;
  /**
   * True when this driver cannot move the data to the destination at all
   * (another array it has no link to). ferryd then moves it on the host
   * path if both backends offer it, and `reasons` need not say it again.
   * Absent means false: the driver reaches the destination.
   */
  destinationUnreachable?: boolean;
}

/** A change on the array that a migration's next call should see (Driver.watchChanges). */
export interface DriverChange {
  /** The migration it concerns; '' means that any migration of this backend may have changed (events may have been missed). */
  migrationId: string;
}

/** A pool as the driver reports it. */
export interface PoolInfo {
  name: string;
  capacityBytes: number;
  freeBytes: number;
}

/**
 * A driver for one backend. Created by the plugin's `createDriver` once per
 * configured backend. Throw `FerryError` for expected failures; anything else
 * thrown is reported as DRIVER_ERROR.
 */
export interface Driver {
  /**
   * What this driver can ever honour. Called once after creation; a flag the
   * caller requires that is false here makes StartMigration UNIMPLEMENTED.
   */
  capabilities(): Capabilities;

  /**
   * The backend's pools. Called for ListBackends and as the health probe:
   * throw UNAVAILABLE when the array is unreachable.
   */
  describe(options: { signal: AbortSignal }): Promise<{ pools: PoolInfo[] }>;

  /**
   * Whether `migration` can be done. Called before StartMigration persists
   * anything and for the CheckCompatibility RPC. Read-only. Throw NOT_FOUND
   * for an unknown share or destination pool.
   */
  checkCompatibility(call: Omit<MigrationCall, 'checkpoint'>): Promise<CompatibilityResult>;

  /**
   * Submit the migration job to the array and return at once. Called in
   * STARTING, and again after a crash in STARTING: must be idempotent on
   * `migration.id` (a second call for an existing job returns it, not a new one).
   */
  start(call: MigrationCall): Promise<StartResult>;

  /**
   * Report progress and whether phase 1 is done. Called repeatedly in
   * IN_PROGRESS and PHASE1_DONE. Must return fast (it has a short deadline),
   * must not go back on copied data, and must keep the destination warm.
   */
  continue(call: MigrationCall): Promise<ContinueResult>;

  /**
   * The cutover. Called once the caller asked for it (only after phase 1
   * was reported done), and again until it reports `done` or `aborted`, and
   * again after a crash in COMPLETING: idempotent and resumable from
   * `checkpoint`. Before its commit point a failure must leave the source
   * authoritative; after it, the call must roll forward. If the array says
   * the job cannot be cut over yet, throw FAILED_PRECONDITION.
   */
  complete(call: MigrationCall): Promise<CompleteResult>;

  /**
   * Stop the job and remove everything on the destination; the source stays
   * untouched and writable. Called until it reports `done`; idempotent,
   * including for a job the array never saw. Also called to clean up after
   * a migration failed before its cutover. The checkpoint may be null (a
   * start whose result was lost): find the job by `migration.id`.
   */
  cancel(call: MigrationCall): Promise<CancelResult>;

  /**
   * Progress, read-only and cheap. The daemon calls it while a cutover
   * reports `in_progress` (continue is not called then); tools may call it
   * at any time, concurrently with other calls.
   */
  progress(call: MigrationCall): Promise<DriverProgress>;

  /**
   * Optional: changes on the array as they happen, so that the daemon calls
   * a migration's next step at once instead of at its next poll. ferryd
   * opens it once per backend after creation and keeps it open; when it ends
   * or throws, ferryd opens it again after a backoff; `signal` aborts at
   * shutdown. It is not a per-call deadline: the stream may stay open for days.
   *
   * Yield a change at least when a job's phase 1 becomes done, when a job
   * fails or ends on the array, and when a cutover or cancel that answered
   * `in_progress` finishes. Changes may be coalesced, repeated or spurious:
   * each only makes the daemon call sooner. Whenever the stream (re)connects
   * to an array that may have changed meanwhile, yield `{ migrationId: '' }`
   * first.
   *
   * While the stream is open, ferryd relies on it for the events above and
   * polls less: a copy in IN_PROGRESS no more often than its progress is
   * shown (`engine.progressPersistMs`, 1 s), a migration parked in
   * PHASE1_DONE every `engine.parkedPollMs` (10 s), whatever `nextPollMs`
   * says; while it is not open, it polls as `nextPollMs` says. A driver that
   * cannot report those events should not offer it.
   */
  watchChanges?(options: { signal: AbortSignal }): AsyncIterable<DriverChange>;

  /** Release connections. Called once at shutdown, after the last call. */
  close?(): Promise<void>;

  /**
   * Optional: the source half of the host data path. Present when this
   * backend's shares can be moved by ferryd to an array this driver cannot
   * reach; absent otherwise. Asked for once, after creation.
   */
  readonly dataSource?: DataSource;

  /** Optional: the destination half of the host data path (see DataDestination). */
  readonly dataDestination?: DataDestination;
}

/** What `createDriver` receives. */
export interface DriverFactoryContext {
  /** The backend this driver instance serves. */
  backend: string;
  /** The backend's `options` from the daemon config, as written there. */
  options: Record<string, unknown>;
  /** The daemon's own gRPC address (for arrays served in-process). */
  daemonAddress: string;
  /** Logs with the backend name on every line. */
  log: Logger;
}

/** The function a plugin module exports as `createDriver`. */
export type DriverFactory = (ctx: DriverFactoryContext) => Driver | Promise<Driver>;

/** Re-exported so a plugin can import everything from one place. */
export type { ErrorCode };
