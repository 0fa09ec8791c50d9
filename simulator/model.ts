/**
 * The records the array persists (shares, jobs), shared by its parts. Every
 * field is plain JSON so a record can be written to LevelDB as is.
 */
import { ArrayError } from './errors.ts';

/** A job's state; see the state diagram in simulator.proto. */
export type JobState = 'COPYING' | 'SYNCING' | 'CUTTING_OVER' | 'DONE' | 'CANCELLED' | 'FAILED';

/** States in which a job holds its share (and a reservation in the destination pool). */
export const ACTIVE_JOB_STATES: ReadonlySet<JobState> = new Set<JobState>(['COPYING', 'SYNCING', 'CUTTING_OVER']);

/** What the cutover does past its window. */
export type CutoverAction = 'ABORT' | 'FORCE';

/** The default cutover window when a StartJob leaves it at 0 (Nova's maximum). */
export const DEFAULT_MAX_DOWNTIME_MS = 500;

/** The most bytes one WriteShare or ReadShare may carry (below gRPC's 4 MiB default message cap). */
export const MAX_IO_BYTES = 1024 * 1024;

/** A share, wherever it lives now. */
export interface ShareRecord {
  shareId: string;
  backend: string;
  pool: string;
  /** The name of its data file under <dataDir>/shares, without ".img". */
  fileId: string;
  sizeBytes: number;
  metadata: Record<string, string>;
  snapshots: number;
  shareType: string;
  createdAtMs: number;
  /** The active job's id, '' when none. */
  jobId: string;
}

/** A place a share's data can be. */
export interface Place {
  backend: string;
  pool: string;
  fileId: string;
}

/** What StartJob was asked, defaults applied. Two StartJobs are the same when these are equal. */
export interface JobSpec {
  shareId: string;
  destBackend: string;
  destPool: string;
  writable: boolean;
  nondisruptive: boolean;
  preserveMetadata: boolean;
  preserveSnapshots: boolean;
  newShareType: string;
  maxBandwidthBytesPerSec: number;
  maxDowntimeMs: number;
  cutoverAction: CutoverAction;
}

/** What a cutover did before it froze the share. */
export interface CatchUpMeasurements {
  ms: number;
  /** Passes over the dirty set. */
  passes: number;
  copiedBytes: number;
  verifiedBytes: number;
}

/** What a finished cutover measured. */
export interface CutoverMeasurements {
  freezeMs: number;
  finalDeltaBytes: number;
  /** Bytes verified while frozen. */
  verifiedBytes: number;
  /** Absent in records written before the cutover caught up unfrozen. */
  caughtUp?: CatchUpMeasurements;
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
  state: JobState;
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

/** Metadata keys. */
export const keys = {
  share: (id: string) => `share!${id}`,
  job: (id: string) => `job!${id}`,
  faults: 'faults',
  workload: (id: string) => `wl!${id}`,
  workloadBlock: (id: string, block: number) => `wlb!${id}!${String(block).padStart(10, '0')}`,
  workloadBlocks: (id: string) => `wlb!${id}!`,
} as const;

/**
 * NO_SUCH_OBJECT for a share id the array does not have. The array's calls name
 * no backend with a share, so the message says it is on none of them (a
 * driver, which knows the backend it asked about, names that one instead).
 */
export function shareNotFound(shareId: string): ArrayError {
  return new ArrayError('NO_SUCH_OBJECT', `share ${shareId} not found: it is on no backend of this array`);
}
