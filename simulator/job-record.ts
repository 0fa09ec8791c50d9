/**
 * A job's record, as the array persists it: its one constructor, and its
 * state machine, with the one function that changes a job's state. The
 * job manager, the copy loop and the cutover all ask `transition`; a
 * transition the table does not allow is a bug and throws.
 */
import type { CutoverMeasurements, JobSpec, Place } from './model.ts';

/** A job's state; see the state diagram in simulator.proto. */
export type JobState = 'COPYING' | 'SYNCING' | 'CUTTING_OVER' | 'DONE' | 'CANCELLED' | 'FAILED';

/** States in which a job holds its share (and a reservation in the destination pool). */
export const ACTIVE_JOB_STATES: ReadonlySet<JobState> = new Set<JobState>(['COPYING', 'SYNCING', 'CUTTING_OVER']);

/** Which transitions are legal. */
const TRANSITIONS: Record<JobState, readonly JobState[]> = {
  // Phase 1 done; or cancelled, or the copy failed.
  COPYING: ['SYNCING', 'CANCELLED', 'FAILED'],
  SYNCING: ['CUTTING_OVER', 'CANCELLED', 'FAILED'],
  // Back to SYNCING when an attempt rolls back (its window ran out, or a restart caught it before its commit point).
  CUTTING_OVER: ['DONE', 'SYNCING', 'FAILED'],
  DONE: [],
  CANCELLED: [],
  FAILED: [],
};

/** Whether `from -> to` is a legal transition. */
export function canTransition(from: JobState, to: JobState): boolean {
  return TRANSITIONS[from].includes(to);
}

/** Thrown by `transition` for a transition the table does not allow: a bug in the array. */
export class IllegalTransitionError extends Error {
  override name = 'IllegalTransitionError';
}

/** Told of every transition as it happens: the array's change stream (JobEvents, WatchJobs). */
export interface TransitionObserver {
  transitioned(rec: JobRecord): void;
}

/**
 * Moves `rec` to state `to`: the only writer of a job's state, and so the
 * one place that tells `observer` (the change stream) of it. Reaching
 * SYNCING from COPYING marks phase 1 done; reaching a final state records
 * when. Throws IllegalTransitionError for a transition the table does not
 * allow. The caller persists the record.
 */
export function transition(rec: JobRecord, to: JobState, observer: TransitionObserver): void {
  if (!canTransition(rec.state, to)) throw new IllegalTransitionError(`job ${rec.jobId}: no transition from ${rec.state} to ${to}`);
  const now = Date.now();
  if (rec.state === 'COPYING' && to === 'SYNCING') {
    rec.phase1Done = true;
    rec.phase1DoneAtMs = now;
  }
  if (TRANSITIONS[to].length === 0) rec.finishedAtMs = now;
  (rec as { state: JobState }).state = to;
  observer.transitioned(rec);
}

/** A migration job, as persisted. In-memory copy state (dirty set, hashes) lives in JobRunner. */
export interface JobRecord {
  jobId: string;
  spec: JobSpec;
  /** Set for an id CancelJob saw before any StartJob: it stays CANCELLED. */
  tombstone: boolean;
  source: Place;
  dest: Place;
  sizeBytes: number;
  blockSizeBytes: number;
  chunkSizeBytes: number;
  /** Written only by `transition`. */
  readonly state: JobState;
  phase1Done: boolean;
  converged: boolean;
  warning: string;
  /** The current pass, 1-based; 0 before the copy begins. */
  pass: number;
  /** Pass 1: every block below this one has been copied. */
  cursor: number;
  /** Pass 1: no block at or above this one has ever been handed to a worker (persisted before dispatch). */
  dispatchedEnd: number;
  sentBytes: number;
  /** The copy rate measured over whole passes, bytes per second: the basis of the phase-1 threshold. */
  copyRateBps: number;
  recopiedAfterCrashBytes: number;
  /** True once the cutover's commit point is durable: the share lives at `dest`. */
  switched: boolean;
  createdAtMs: number;
  phase1DoneAtMs: number;
  finishedAtMs: number;
  cutover: CutoverMeasurements | null;
  cutoverAttempts: number;
  lastAbortReason: string;
  lastAbortAttempt: number;
  error: { code: string; message: string } | null;
  /** A data file still to delete (the source after the switch, the destination after cancel or failure); '' when none. */
  pendingDelete: string;
}

/** What a new job record is made of; everything else starts at zero. */
export interface NewJob {
  jobId: string;
  spec: JobSpec;
  source: Place;
  dest: Place;
  sizeBytes: number;
  blockSizeBytes: number;
  chunkSizeBytes: number;
}

/** A job that StartJob has just made: COPYING, nothing copied yet. */
export function newJobRecord(job: NewJob): JobRecord {
  return blankRecord(job, 'COPYING', false);
}

/** The record of an id that CancelJob saw before any StartJob: CANCELLED for good, so a late StartJob cannot revive it. */
export function tombstoneRecord(jobId: string, sizes: { blockSizeBytes: number; chunkSizeBytes: number }): JobRecord {
  const none: Place = { backend: '', pool: '', fileId: '' };
  const spec: JobSpec = {
    shareId: '',
    destBackend: '',
    destPool: '',
    writable: false,
    nondisruptive: false,
    preserveMetadata: false,
    preserveSnapshots: false,
    newShareType: '',
    maxBandwidthBytesPerSec: 0,
    maxDowntimeMs: 0,
    cutoverAction: 'ABORT',
  };
  return blankRecord({ jobId, spec, source: none, dest: none, sizeBytes: 0, ...sizes }, 'CANCELLED', true);
}

/** The one constructor of a job record. */
function blankRecord(job: NewJob, state: 'COPYING' | 'CANCELLED', tombstone: boolean): JobRecord {
  const now = Date.now();
  return {
    ...job,
    tombstone,
    state,
    phase1Done: false,
    converged: false,
    warning: '',
    pass: 0,
    cursor: 0,
    dispatchedEnd: 0,
    sentBytes: 0,
    copyRateBps: 0,
    recopiedAfterCrashBytes: 0,
    switched: false,
    createdAtMs: now,
    phase1DoneAtMs: 0,
    finishedAtMs: state === 'CANCELLED' ? now : 0,
    cutover: null,
    cutoverAttempts: 0,
    lastAbortReason: '',
    lastAbortAttempt: 0,
    error: null,
    pendingDelete: '',
  };
}
