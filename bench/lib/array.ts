/**
 * The simulated array in the bench's own process, for the scenarios that
 * measure the array's data path (copy, cutover): shares filled with
 * incompressible data, and migration jobs with the settings a migration
 * from ferryd gets.
 */
import path from 'node:path';
import { SimArray } from '../../simulator/index.ts';
import type { SimulatorConfig } from '../../simulator/index.ts';
import { fillFile } from './content.ts';
import { fdatasync, run } from './system.ts';

/** A destination for a job. */
export interface Place {
  backend: string;
  pool: string;
}

/** Opens an array in `dataDir` with `config` overrides (silent). */
export function openArray(dataDir: string, config: Partial<SimulatorConfig> = {}): Promise<SimArray> {
  return SimArray.open({ dataDir, config });
}

/** The data file of a share (the layout array.ts documents: <dataDir>/shares/<fileId>.img). */
export function shareFile(array: SimArray, dataDir: string, shareId: string): string {
  return path.join(dataDir, 'shares', `${array.getShare(shareId).fileId}.img`);
}

/**
 * Creates a share in alpha/gold holding the bytes of `from` (copied with cp)
 * or, without `from`, incompressible data. The file is written directly,
 * before any job exists: no write can be missed by dirty tracking.
 */
export async function filledShare(array: SimArray, dataDir: string, shareId: string, sizeBytes: number, from?: string): Promise<string> {
  await array.createShare({ shareId, backend: 'alpha', pool: 'gold', sizeBytes, metadata: {}, snapshots: 0, shareType: '' });
  const file = shareFile(array, dataDir, shareId);
  if (from) await run('cp', [from, file]);
  else await fillFile(file, sizeBytes);
  await fdatasync(file);
  return file;
}

/** Starts a job as the simulator driver does for a writable, nondisruptive migration (500 ms window, ABORT, no cap unless given). */
export function startJob(array: SimArray, jobId: string, shareId: string, dest: Place, options: { maxDowntimeMs?: number; maxBandwidthBytesPerSec?: number } = {}) {
  const { maxDowntimeMs = 500, maxBandwidthBytesPerSec = 0 } = options;
  return array.jobs.start(jobId, {
    shareId,
    destBackend: dest.backend,
    destPool: dest.pool,
    writable: true,
    nondisruptive: true,
    preserveMetadata: true,
    preserveSnapshots: false,
    newShareType: '',
    maxBandwidthBytesPerSec,
    maxDowntimeMs,
    cutoverAction: 'ABORT',
  });
}

/** Polls a job every `everyMs` until `done` holds; returns the last view. */
export async function waitJob(array: SimArray, jobId: string, done: (v: ReturnType<SimArray['jobs']['get']>) => boolean, everyMs = 2) {
  for (;;) {
    const v = array.jobs.get(jobId);
    if (done(v)) return v;
    if (v.record.state === 'FAILED' || v.record.state === 'CANCELLED') throw new Error(`job ${jobId} ended ${v.record.state}: ${v.record.error?.message ?? ''}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}
