/**
 * The host data path as the engine sees it: a driver-shaped object whose
 * start, continue, complete, cancel and progress run ferryd's own mover
 * (job.ts) over the source's DataSource and the destination's
 * DataDestination. The engine drives a host-path migration exactly as it
 * drives a driver-path one (asynchronous calls, one at a time, resumed
 * after a restart), and the mover's own place is in the store beside it.
 */
import { FerryError, type CancelResult, type CompleteResult, type ContinueResult, type DriverProgress, type MigrationCall, type MigrationSpec, type StartResult } from '../../plugins/api/index.ts';
import type { Log } from '../../lib/log.ts';
import { TokenBucket } from '../../lib/rates.ts';
import { Semaphore } from '../../lib/semaphore.ts';
import type { GuardedDataDestination, GuardedDataSource } from '../guard-data.ts';
import type { GuardedDriver } from '../guard.ts';
import type { BackendEntry } from '../plugins.ts';
import { MoverJob, type MoverContext } from './job.ts';
import type { PlaceStore } from './place.ts';

/** The mover's settings (ferryd's config `hostPath`). */
export interface HostPathOptions {
  /** Bytes per batch (one read, one write, one verify). Default 4 MiB. */
  batchBytes: number;
  /** Batches one migration writes at once, each verified on its own (the next is read meanwhile). Default 4. */
  batchesInFlight: number;
  /** Batches held in memory at once, across all migrations. Default 8 (32 MiB). */
  batchesInMemory: number;
  /** Cap on the bytes per second all host-path copies move together; 0 means none. */
  bandwidthBytesPerSec: number;
  /** The pause between passes once phase 1 is done. Default 1000 ms. */
  warmIntervalMs: number;
}

export const DEFAULT_HOST_PATH_OPTIONS: Readonly<HostPathOptions> = Object.freeze({
  batchBytes: 4 * 1024 * 1024,
  batchesInFlight: 4,
  batchesInMemory: 8,
  bandwidthBytesPerSec: 0,
  warmIntervalMs: 1000,
});

/** How often the engine should poll a host-path migration (its progress is in memory: the call is cheap). */
const POLL_MS = 250;

type Call = Omit<MigrationCall, 'signal'>;

/** Why a backend cannot serve one half of the host path, or undefined when it can. */
export function hostPathGap(entry: BackendEntry | undefined, half: 'dataSource' | 'dataDestination'): string | undefined {
  if (!entry) return 'it is not configured';
  if (!entry.driver) return `it is not serving: ${entry.failure ?? 'its driver is not loaded'}`;
  if (!entry.driver[half]) return `driver ${entry.driver.plugin.name} offers no ${half === 'dataSource' ? 'data source (snapshots, changed extents, freeze)' : 'data destination (targets)'}`;
  return undefined;
}

/** The host path of one ferryd. */
export class HostPath {
  /** What stuck-migration messages name as the driver. */
  readonly plugin = { name: 'ferryd host path', version: '1' };
  private readonly jobs = new Map<string, Promise<MoverJob>>();
  private readonly ctx: MoverContext;

  constructor(
    backends: ReadonlyMap<string, BackendEntry>,
    places: PlaceStore,
    private readonly log: Log,
    options: HostPathOptions = DEFAULT_HOST_PATH_OPTIONS,
    backoffMs = { initial: 200, max: 5_000 },
  ) {
    const half = <K extends 'dataSource' | 'dataDestination'>(backend: string, key: K): NonNullable<GuardedDriver[K]> => {
      const entry = backends.get(backend);
      const gap = hostPathGap(entry, key);
      if (gap) throw new FerryError('UNAVAILABLE', `backend ${backend} cannot serve the host path now: ${gap}`);
      return entry!.driver![key]!;
    };
    this.ctx = {
      places,
      memory: new Semaphore(options.batchesInMemory),
      bucket: new TokenBucket(options.bandwidthBytesPerSec),
      batchBytes: options.batchBytes,
      batchesInFlight: options.batchesInFlight,
      warmIntervalMs: options.warmIntervalMs,
      backoffMs,
      source: (backend): GuardedDataSource => half(backend, 'dataSource'),
      destination: (backend): GuardedDataDestination => half(backend, 'dataDestination'),
    };
  }

  /** The migration's job, rebuilt from its place if this process has none yet. */
  private job(spec: MigrationSpec, log: Log): Promise<MoverJob> {
    let job = this.jobs.get(spec.id);
    if (!job) {
      job = MoverJob.open(this.ctx, spec, log);
      this.jobs.set(spec.id, job);
      job.catch(() => this.jobs.delete(spec.id));
    }
    return job;
  }

  private logFor(call: Call): Log {
    return this.log.child({ migration: call.migration.id });
  }

  /** Takes the first snapshot, creates the target, and sets the copy going. */
  async start(call: Call, outer?: AbortSignal): Promise<StartResult> {
    const job = await this.job(call.migration, this.logFor(call));
    await job.begin(outer ?? new AbortController().signal);
    job.ensureRunning();
    return { checkpoint: null };
  }

  /** Progress; the copy runs in the background (and resumes here after a restart). */
  async continue(call: Call): Promise<ContinueResult> {
    const job = await this.job(call.migration, this.logFor(call));
    if (job.failure) throw job.failure;
    job.ensureRunning();
    return { progress: job.progress(), phase1Done: job.phase1Done, nextPollMs: POLL_MS, checkpoint: null };
  }

  /** The cutover: started by the first call, answered by the later ones. */
  async complete(call: Call): Promise<CompleteResult> {
    const job = await this.job(call.migration, this.logFor(call));
    const result = job.complete();
    if (result.status === 'done') this.jobs.delete(call.migration.id);
    return result;
  }

  /** Removes the target and the snapshots; the source is untouched. */
  async cancel(call: Call): Promise<CancelResult> {
    const job = await this.job(call.migration, this.logFor(call));
    await job.cancel();
    this.jobs.delete(call.migration.id);
    return { done: true, checkpoint: null };
  }

  async progress(call: Call): Promise<DriverProgress> {
    return (await this.job(call.migration, this.logFor(call))).progress();
  }

  /** Stops every copy at its next batch (shutdown); each resumes from its place in the next process. */
  async close(): Promise<void> {
    const jobs = await Promise.allSettled(this.jobs.values());
    await Promise.all(jobs.map((j) => (j.status === 'fulfilled' ? j.value.close() : undefined)));
    this.jobs.clear();
  }
}
