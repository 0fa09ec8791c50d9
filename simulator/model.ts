/**
 * The records the array persists (shares, and the parts of a job record;
 * the job record itself is in job-record.ts), shared by its parts. Every
 * field is plain JSON so a record can be written to LevelDB as is.
 */
import { ArrayError } from './errors.ts';

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
  /** Where the share lived before a target was promoted to be it, until RetireShare deletes it. */
  retiring?: Place;
  /** The share was moved to another array's target (ReleaseShare committed, no promote here): writes fail until RetireShare deletes it. */
  movedAway?: boolean;
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

/** Metadata keys. */
export const keys = {
  share: (id: string) => `share!${id}`,
  job: (id: string) => `job!${id}`,
  faults: 'faults',
  workload: (id: string) => `wl!${id}`,
  workloadBlock: (id: string, block: number) => `wlb!${id}!${String(block).padStart(10, '0')}`,
  workloadBlocks: (id: string) => `wlb!${id}!`,
  snapshot: (id: string) => `snap!${id}`,
  /** The blocks of a snapshot preserved in its side file (written since it was taken). */
  preserved: (id: string) => `snapp!${id}`,
  /** The blocks written between snapshot `base` and the later snapshot `id` of one share. */
  changed: (id: string, base: string) => `snapc!${id}!${base}`,
  changedOf: (id: string) => `snapc!${id}!`,
  target: (id: string) => `target!${id}`,
} as const;

/**
 * NO_SUCH_OBJECT for a share id the array does not have. The array's calls name
 * no backend with a share, so the message says it is on none of them (a
 * driver, which knows the backend it asked about, names that one instead).
 */
export function shareNotFound(shareId: string): ArrayError {
  return new ArrayError('NO_SUCH_OBJECT', `share ${shareId} not found: it is on no backend of this array`);
}

/** The names (as in the proto) of the fields that differ between two specs. */
export function specDiff(a: JobSpec, b: JobSpec): string[] {
  const names: Record<keyof JobSpec, string> = {
    shareId: 'share_id',
    destBackend: 'dest_backend',
    destPool: 'dest_pool',
    writable: 'writable',
    nondisruptive: 'nondisruptive',
    preserveMetadata: 'preserve_metadata',
    preserveSnapshots: 'preserve_snapshots',
    newShareType: 'new_share_type',
    maxBandwidthBytesPerSec: 'max_bandwidth_bytes_per_sec',
    maxDowntimeMs: 'max_downtime_ms',
    cutoverAction: 'cutover_action',
  };
  return (Object.keys(names) as Array<keyof JobSpec>).filter((k) => a[k] !== b[k]).map((k) => names[k]);
}
