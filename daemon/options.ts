/** The engine's tuning and hooks, with their defaults (the config file's `engine` block). */
import { DEFAULT_POLL_POLICY, type PollPolicy } from '../host/poll.ts';
import type { MigrationRecord, State } from './migration.ts';

/** Engine tuning. Every field has a default (DEFAULT_ENGINE_OPTIONS). The poll policy's fields are the host's (host/poll.ts). */
export interface EngineOptions extends PollPolicy {
  /** Driver calls in flight at once, across all migrations. */
  maxConcurrentCalls: number;
  /** STARTING or IN_PROGRESS with no progress for this long becomes ERROR (STALLED). 0 turns it off. */
  stallTimeoutMs: number;
  /** The cutover window when the request gives none. */
  defaultMaxDowntimeMs: number;
  /** Retry delays after a failed driver call: doubling from initial, capped at max. */
  backoffInitialMs: number;
  backoffMaxMs: number;
  /**
   * Progress-only changes are written to LevelDB, and so shown to callers,
   * at most this often (state and checkpoint changes: always). Callers see
   * only what is written, so a crash never shows them an older value.
   */
  progressPersistMs: number;
  /**
   * A migration parked in PHASE1_DONE whose driver's change feed is open
   * (Driver.watchChanges) is polled this often, whatever the driver
   * suggests: the feed tells of what matters. (A copy in IN_PROGRESS with
   * the feed open is polled every progressPersistMs at most often.) Without
   * a feed the driver's suggestion stands.
   */
  parkedPollMs: number;
  /** How many times cleanup after an error is tried before it is given up (and logged). */
  cleanupAttempts: number;
  /**
   * A cutover or cancel whose driver has not answered (every call timed out
   * or was UNAVAILABLE) for this long is marked `stuck`, and its backend
   * NOT_SERVING. The retries go on: a driver that answers again resumes it.
   */
  unresponsiveAfterMs: number;
}

/** What the engine tells the rest of the daemon. */
export interface EngineHooks {
  /** A migration of this backend became stuck, or answered again. */
  stuckChanged?(backend: string): void;
  /**
   * A migration moved from `from` to the state it is in now (in memory: its
   * write follows). The record is the engine's working copy: read it, never
   * change it. For the daemon's metrics.
   */
  transitioned?(record: Readonly<MigrationRecord>, from: State): void;
}

/** Defaults: notice phase 1 within tens of ms, give up on a silent copy after 5 minutes. */
export const DEFAULT_ENGINE_OPTIONS: EngineOptions = {
  maxConcurrentCalls: 64,
  ...DEFAULT_POLL_POLICY,
  stallTimeoutMs: 300_000,
  defaultMaxDowntimeMs: 1_000,
  backoffInitialMs: 100,
  backoffMaxMs: 10_000,
  progressPersistMs: 1_000,
  parkedPollMs: 10_000,
  cleanupAttempts: 20,
  unresponsiveAfterMs: 600_000,
};
