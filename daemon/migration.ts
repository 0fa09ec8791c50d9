/**
 * A migration as the daemon keeps it (in memory and in LevelDB), and the
 * state machine it moves through (DESIGN.md section 3).
 */
import type { MigrationState__Output } from '../build/types/ferry/v1/MigrationState.ts';
import type { Checkpoint, CutoverMeasurements, DriverProgress, MigrationSpec } from '../plugins/api/index.ts';

/** A migration state: the proto's MigrationState (generated) without its MIGRATION_STATE_ prefix, never UNSPECIFIED. */
export type State = Exclude<MigrationState__Output extends `MIGRATION_STATE_${infer Name}` ? Name : never, 'UNSPECIFIED'>;

/** States a migration never leaves. */
export const TERMINAL_STATES: ReadonlySet<State> = new Set<State>(['SUCCESS', 'CANCELLED', 'ERROR']);

/** States from which CancelMigration is accepted. */
export const CANCELLABLE_STATES: ReadonlySet<State> = new Set<State>(['STARTING', 'IN_PROGRESS', 'PHASE1_DONE']);

/**
 * Which transitions are legal. The engine refuses (and logs) any other as a
 * bug. Its keys are every state: a state added to the proto fails to compile
 * here until it has a row.
 */
const TRANSITIONS: Record<State, readonly State[]> = {
  STARTING: ['IN_PROGRESS', 'CANCELLING', 'ERROR'],
  IN_PROGRESS: ['PHASE1_DONE', 'CANCELLING', 'ERROR'],
  PHASE1_DONE: ['COMPLETING', 'CANCELLING', 'ERROR'],
  // Back to PHASE1_DONE when the cutover ran past its window and rolled back.
  COMPLETING: ['SUCCESS', 'PHASE1_DONE', 'ERROR'],
  CANCELLING: ['CANCELLED', 'ERROR'],
  SUCCESS: [],
  CANCELLED: [],
  ERROR: [],
};

/** Every migration state, in the proto's order. */
export const STATES = Object.keys(TRANSITIONS) as readonly State[];

/** Whether `from -> to` is a legal transition. */
export function canTransition(from: State, to: State): boolean {
  return TRANSITIONS[from].includes(to);
}

/** Progress as reported to callers: the driver's figures plus a percent that never lies. */
export interface Progress extends DriverProgress {
  /** 0..100; 100 only once phase 1 is done. Never goes back while the migration runs. */
  percent: number;
  /** Bytes still to copy in phase 1 (total - what the driver has copied, plus dirty). */
  remainingBytes: number;
  /** Bytes the driver went back on and copies again (after a crash of its array); absent in records written before it existed. See foldProgress. */
  recopiedBytes?: number;
}

/** A coded error kept on a migration. */
export interface RecordedError {
  code: string;
  message: string;
}

/** Everything the daemon knows about one migration. Plain JSON: this is what LevelDB stores. */
export interface MigrationRecord {
  /** Record layout version, for future migrations of the store itself. */
  v: 1;
  id: string;
  spec: MigrationSpec;
  /** The caller's request id, or ''. */
  requestId: string;
  /** A hash of the request's fields, to tell a retry from a conflicting reuse of `requestId`. */
  fingerprint: string;
  state: State;
  progress: Progress;
  /** Bytes copied as the driver last reported them; `progress.copiedBytes` never goes below its highest (foldProgress). */
  driverCopiedBytes?: number;
  /** The driver's last checkpoint. */
  checkpoint: Checkpoint;
  createdAt: number;
  startedAt?: number;
  phase1DoneAt?: number;
  completingAt?: number;
  cancellingAt?: number;
  finishedAt?: number;
  updatedAt: number;
  error?: RecordedError;
  cutover?: CutoverMeasurements;
  lastCutoverAbort?: RecordedError;
  /**
   * Set when the migration failed before its cutover's commit point and the
   * destination may still hold a partial copy: the engine keeps calling the
   * driver's `cancel` (across restarts) until it reports done.
   */
  cleanupPending?: boolean;
  /**
   * Set while the migration cannot move because its driver has not answered
   * complete or cancel for longer than the engine's `unresponsiveAfterMs`:
   * says what is unknown and what the operator should check. Cleared when
   * the driver answers again (the retries never stop).
   */
  stuck?: RecordedError;
}

/**
 * The stable codes that only migrations carry (in `error`, `stuck` and
 * `last_cutover_abort`), beside the FerryError codes. Listed with the rest
 * in proto/ferry/v1/error_reason.proto.
 */
export const MIGRATION_ONLY_CODES = ['CUTOVER_WINDOW_EXCEEDED', 'CUTOVER_OUTCOME_UNKNOWN', 'CANCEL_OUTCOME_UNKNOWN'] as const;

/** One of MIGRATION_ONLY_CODES. */
export type MigrationOnlyCode = (typeof MIGRATION_ONLY_CODES)[number];

/** The progress of a migration that has not copied anything yet. */
export function emptyProgress(): Progress {
  return {
    percent: 0,
    totalBytes: 0,
    copiedBytes: 0,
    remainingBytes: 0,
    dirtyBytes: 0,
    dirtyRateBytesPerSec: 0,
    throughputBytesPerSec: 0,
    iteration: 0,
    etaSeconds: 0,
  };
}

/**
 * Folds a driver's progress into what callers see. The percent is capped
 * below 100 until phase 1 is done, so 100 always means "ready to complete".
 */
export function toProgress(p: DriverProgress, phase1Done: boolean): Progress {
  const total = p.totalBytes;
  const copied = Math.min(p.copiedBytes, total);
  let percent = total > 0 ? (copied / total) * 100 : 0;
  if (phase1Done) percent = 100;
  else percent = Math.min(percent, 99.9);
  const progress: Progress = {
    percent: Math.round(percent * 10) / 10,
    totalBytes: total,
    copiedBytes: copied,
    remainingBytes: phase1Done ? p.dirtyBytes : total - copied + p.dirtyBytes,
    dirtyBytes: p.dirtyBytes,
    dirtyRateBytesPerSec: p.dirtyRateBytesPerSec,
    throughputBytesPerSec: p.throughputBytesPerSec,
    iteration: p.iteration,
    etaSeconds: phase1Done ? 0 : p.etaSeconds,
  };
  if (p.warning) progress.warning = p.warning;
  return progress;
}

/**
 * A driver's new progress folded into what callers were shown before.
 * `copiedBytes` (and so the percent) never goes back: when the driver
 * reports fewer bytes copied than it last did (its array lost track of part
 * of the copy in a crash and copies it again), copied stays where it was
 * and what the driver went back by is added to `recopiedBytes`, until the
 * driver's own figure passes it again. `remainingBytes` is what the driver
 * says is left, so it shows the bytes to copy again.
 */
export function foldProgress(before: Progress, driverCopiedBefore: number | undefined, p: DriverProgress, phase1Done: boolean): { progress: Progress; driverCopiedBytes: number } {
  const next = toProgress(p, phase1Done);
  const driverCopied = next.copiedBytes;
  const previous = driverCopiedBefore ?? before.copiedBytes;
  const recopied = (before.recopiedBytes ?? 0) + Math.max(0, previous - driverCopied);
  const copied = Math.min(Math.max(before.copiedBytes, driverCopied), next.totalBytes);
  const percent = phase1Done ? 100 : Math.max(before.percent, next.percent);
  return { progress: { ...next, copiedBytes: copied, percent, recopiedBytes: recopied }, driverCopiedBytes: driverCopied };
}

/** Whether two progress values show the same figures. */
export function sameProgress(a: Progress | undefined, b: Progress): boolean {
  if (!a) return false;
  const keys = new Set([...Object.keys(a), ...Object.keys(b)] as (keyof Progress)[]);
  for (const key of keys) if (a[key] !== b[key]) return false;
  return true;
}

/**
 * The figures a migration keeps once it has ended (DESIGN rule 6: progress
 * never lies). The driver is not asked again, so its last poll would stay
 * on show: the rate and dirty bytes of a moment before the cutover. Instead
 * nothing is moving (dirty rate and ETA 0), the throughput is phase 1's
 * average, and a SUCCESS has copied everything and left nothing dirty.
 */
export function finalProgress(record: Pick<MigrationRecord, 'state' | 'progress' | 'startedAt' | 'phase1DoneAt' | 'finishedAt'>): Progress {
  const p = record.progress;
  const success = record.state === 'SUCCESS';
  const copied = success ? p.totalBytes : p.copiedBytes;
  const end = record.phase1DoneAt ?? record.finishedAt;
  const seconds = record.startedAt !== undefined && end !== undefined ? (end - record.startedAt) / 1000 : 0;
  const { warning: _warning, ...rest } = p;
  const progress: Progress = {
    ...rest,
    dirtyRateBytesPerSec: 0,
    etaSeconds: 0,
    throughputBytesPerSec: seconds > 0 ? Math.round(copied / seconds) : 0,
  };
  if (success) Object.assign(progress, { percent: 100, copiedBytes: copied, remainingBytes: 0, dirtyBytes: 0 });
  else if (p.warning) progress.warning = p.warning;
  return progress;
}
