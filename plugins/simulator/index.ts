/**
 * The driver for Ferry's simulated array, and the example a vendor starts
 * from: copy this folder, replace client.ts with your array's client, and
 * keep the shape of each call.
 *
 * The array does the work (copy, dirty tracking, cutover); the driver maps
 * Ferry's asynchronous contract onto the array's job API:
 *
 *   start     -> StartJob (job id = migration id: the array deduplicates retries)
 *   continue  -> GetJob   (progress, phase-1 flag, a poll hint)
 *   complete  -> CutoverJob (bounded wait; joins a running cutover on retry)
 *   cancel    -> CancelJob (idempotent even for a job the array never saw)
 *   progress  -> GetJob
 *   watchChanges -> WatchJobs (the array's job changes, so the daemon calls at once rather than at its next poll)
 *
 * and, for a destination on another array (which the array's jobs cannot
 * reach), ferryd's host data path (host-path.ts): dataSource on
 * CreateSnapshot, ListChangedExtents, ReadSnapshot, FreezeShare,
 * ReleaseShare and RetireShare; dataDestination on CreateTarget,
 * WriteTarget, ChecksumTarget, PromoteTarget and DiscardTarget.
 *
 * The driver keeps no state of its own beyond the channel: everything it
 * needs after a daemon restart is in the array (keyed by the migration id)
 * or in the small checkpoint the daemon persists for it.
 *
 * Options (the backend's `options` in the daemon config):
 *   endpoint       the array's gRPC address; default: the daemon's own
 *                  address, where the embedded array is served
 *   snapshots      false (default): preserve_snapshots is not supported;
 *                  true: supported; "within-backend": claimed, but only
 *                  possible between pools of one backend (so both the
 *                  UNIMPLEMENTED and the FAILED_PRECONDITION paths exist)
 *   callTimeoutMs  deadline of each call to the array (default 5000)
 *   hostPath       true (default): offer dataSource and dataDestination;
 *                  false: offer neither (a backend ferryd cannot move
 *                  between arrays)
 */
import { FerryError } from '@ferry/driver-api';
import type {
  CancelResult,
  Capabilities,
  Checkpoint,
  CompatibilityResult,
  DataDestination,
  DataSource,
  CompleteResult,
  ContinueResult,
  Driver,
  DriverFactory,
  DriverFactoryContext,
  DriverChange,
  DriverProgress,
  MigrationCall,
  PoolInfo,
  StartResult,
} from '@ferry/driver-api';
import { ArrayClient } from './client.ts';
import { SimDataDestination, SimDataSource } from './host-path.ts';
// The array's messages as the client receives them, generated from simulator.proto into gen/ by
// `npm run proto:build` (proto-loader-gen-types, with the client's loader options). Types only:
// nothing of gen/ is loaded at run time. A vendor generates their array's types the same way.
import type { Backend__Output as ArrayBackend } from './gen/ferry/simulator/v1/Backend.ts';
import type { Job__Output as ArrayJob } from './gen/ferry/simulator/v1/Job.ts';
import type { JobEvent__Output as ArrayJobEvent } from './gen/ferry/simulator/v1/JobEvent.ts';
import type { ListBackendsResponse__Output } from './gen/ferry/simulator/v1/ListBackendsResponse.ts';
import type { Share__Output as ArrayShare } from './gen/ferry/simulator/v1/Share.ts';

/** The checkpoint this driver asks the daemon to keep: the job, and the cutover attempt it started, if any. */
interface SimCheckpoint {
  jobId: string;
  cutoverAttempt?: number;
}

/** The driver's options, checked. */
interface Options {
  endpoint: string;
  snapshots: boolean | 'within-backend';
  callTimeoutMs: number;
  hostPath: boolean;
}

function parseOptions(ctx: DriverFactoryContext): Options {
  const { endpoint = ctx.daemonAddress, snapshots = false, callTimeoutMs = 5000, hostPath = true } = ctx.options;
  if (typeof hostPath !== 'boolean') throw new TypeError(`backend ${ctx.backend}: options.hostPath must be true or false`);
  if (typeof endpoint !== 'string' || endpoint === '') throw new TypeError(`backend ${ctx.backend}: options.endpoint must be a gRPC address`);
  if (snapshots !== true && snapshots !== false && snapshots !== 'within-backend') {
    throw new TypeError(`backend ${ctx.backend}: options.snapshots must be true, false or "within-backend"`);
  }
  if (typeof callTimeoutMs !== 'number' || !(callTimeoutMs >= 100)) {
    throw new TypeError(`backend ${ctx.backend}: options.callTimeoutMs must be a number of ms, at least 100`);
  }
  return { endpoint, snapshots, callTimeoutMs, hostPath };
}

/** Read the job id from the checkpoint; before `start` ever returned, it is the migration id (which is what start uses). */
function jobIdOf(call: Pick<MigrationCall, 'checkpoint' | 'migration'>): string {
  const cp = call.checkpoint as Partial<SimCheckpoint> | null;
  return typeof cp?.jobId === 'string' ? cp.jobId : call.migration.id;
}

function checkpoint(jobId: string, cutoverAttempt?: number): Checkpoint {
  return cutoverAttempt === undefined ? { jobId } : { jobId, cutoverAttempt };
}

function toProgress(job: ArrayJob): DriverProgress {
  const p = job.progress;
  if (!p) return { totalBytes: 0, copiedBytes: 0, dirtyBytes: 0, dirtyRateBytesPerSec: 0, throughputBytesPerSec: 0, iteration: 0, etaSeconds: 0 };
  return {
    totalBytes: p.totalBytes,
    copiedBytes: Math.min(p.copiedBytes, p.totalBytes),
    dirtyBytes: p.dirtyBytes,
    dirtyRateBytesPerSec: p.dirtyRateBytesPerSec,
    throughputBytesPerSec: p.throughputBytesPerSec,
    iteration: p.pass,
    etaSeconds: job.phase1Done ? 0 : p.etaSeconds,
    ...(p.warning ? { warning: p.warning } : {}),
  };
}

/**
 * A job that ended without us is an error for the daemon: FAILED carries the
 * array's reason (DRIVER_ERROR), CANCELLED means someone cancelled it on the
 * array directly (FAILED_PRECONDITION).
 */
function throwIfEnded(job: ArrayJob): void {
  if (job.state === 'JOB_STATE_FAILED') {
    throw new FerryError('DRIVER_ERROR', `array job ${job.jobId} failed: ${job.error?.message ?? 'no reason given'}`);
  }
  if (job.state === 'JOB_STATE_CANCELLED') {
    throw new FerryError('FAILED_PRECONDITION', `array job ${job.jobId} was cancelled on the array`);
  }
}

/**
 * How soon to call `continue` again. Copying: half the time the array needs
 * for what is left (bytes to copy over the measured throughput), between 10
 * and 100 ms (20 ms before the first measurement), so the daemon notices
 * phase 1 done within tens of ms without
 * calling the array more than 10 times a second on a long copy. Syncing:
 * every 500 ms is enough to report progress and notice a failure.
 */
function nextPollMs(job: ArrayJob): number {
  if (job.phase1Done) return 500;
  const p = job.progress;
  // No throughput measured yet (the copy just began): a small share may already be done by the next look.
  if (!p || p.throughputBytesPerSec <= 0) return 20;
  const leftMs = ((p.totalBytes - Math.min(p.copiedBytes, p.totalBytes) + p.dirtyBytes) / p.throughputBytesPerSec) * 1000;
  return Math.min(100, Math.max(10, Math.round(leftMs / 2)));
}

/** The simulator's driver. One instance per configured backend. */
class SimulatorDriver implements Driver {
  private readonly ctx: DriverFactoryContext;
  private readonly options: Options;
  private readonly array: ArrayClient;
  readonly dataSource?: DataSource;
  readonly dataDestination?: DataDestination;

  constructor(ctx: DriverFactoryContext) {
    this.ctx = ctx;
    this.options = parseOptions(ctx);
    this.array = new ArrayClient(this.options.endpoint, this.options.callTimeoutMs);
    if (this.options.hostPath) {
      this.dataSource = new SimDataSource(this.array, ctx.backend);
      this.dataDestination = new SimDataDestination(this.array, ctx.backend);
    }
  }

  capabilities(): Capabilities {
    return { writable: true, nondisruptive: true, preserveMetadata: true, preserveSnapshots: this.options.snapshots !== false };
  }

  async describe({ signal }: { signal: AbortSignal }): Promise<{ pools: PoolInfo[] }> {
    const backend = await this.backend(this.ctx.backend, signal);
    if (!backend) throw new FerryError('UNAVAILABLE', `the array at ${this.options.endpoint} has no backend ${this.ctx.backend}`);
    return { pools: backend.pools.map((p) => ({ name: p.name, capacityBytes: p.capacityBytes, freeBytes: p.freeBytes })) };
  }

  async checkCompatibility(call: Omit<MigrationCall, 'checkpoint'>): Promise<CompatibilityResult> {
    const { migration, signal } = call;
    // The share must exist on this backend: NOT_FOUND otherwise (the contract's "unknown share"). Both asked at once: a start waits for one round trip, not two.
    const asked = this.array.call<ListBackendsResponse__Output>('ListBackends', {}, signal);
    asked.catch(() => {}); // its failure is seen below, unless GetShare's is seen first
    const share = await this.array.call<ArrayShare>('GetShare', { shareId: migration.source.shareId }, signal).catch((err: unknown) => {
      // The array knows no backend with the id; the migration names one, so the message does too.
      if (err instanceof FerryError && err.code === 'NOT_FOUND') {
        throw new FerryError('NOT_FOUND', `share ${migration.source.shareId} not found on backend ${migration.source.backend}`, { cause: err });
      }
      throw err;
    });
    if (share.backend !== migration.source.backend) {
      throw new FerryError('NOT_FOUND', `share ${share.shareId} is not on backend ${migration.source.backend} (it lives on ${share.backend})`);
    }
    const reasons: string[] = [];
    const { backend: destBackend, pool: destPool } = migration.destination;
    const backends = await asked;
    const dest = backends.backends.find((b) => b.name === destBackend);
    const here = backends.backends.find((b) => b.name === share.backend);
    let destinationFreeBytes = 0;
    // Another plugin's backend, or one on another array this process hosts: no job can copy there. ferryd may
    // move the data itself (the host data path), and checks the destination's pool through its own driver.
    const destinationUnreachable = dest === undefined || dest.array !== here?.array;
    if (dest) {
      const pool = dest.pools.find((p) => p.name === destPool);
      if (!pool && !destinationUnreachable) throw new FerryError('NOT_FOUND', `pool ${destPool} not found on backend ${destBackend} (it has ${dest.pools.map((p) => p.name).join(', ') || 'no pools'})`);
      destinationFreeBytes = pool?.freeBytes ?? 0;
    }
    if (share.backend === destBackend && share.pool === destPool) reasons.push(`share ${share.shareId} already lives in ${destBackend}#${destPool}`);
    // A job with this migration's id is a retry of ours, not a conflict.
    if (share.migrating && share.jobId !== migration.id) reasons.push(`share ${share.shareId} is already migrating (array job ${share.jobId})`);
    const snapshots = this.options.snapshots === true || (this.options.snapshots === 'within-backend' && destBackend === share.backend);
    return {
      capabilities: { ...this.capabilities(), preserveSnapshots: snapshots },
      reasons,
      shareSizeBytes: share.sizeBytes,
      destinationFreeBytes,
      ...(destinationUnreachable ? { destinationUnreachable } : {}),
    };
  }

  async start(call: MigrationCall): Promise<StartResult> {
    const { migration: m, signal } = call;
    if (m.preserveSnapshots && this.options.snapshots === false) {
      throw new FerryError('UNIMPLEMENTED', `backend ${this.ctx.backend} does not preserve snapshots`);
    }
    // The migration id is the job id, so a retried start (lost reply, daemon restart) finds the same job.
    const job = await this.array.call<ArrayJob>(
      'StartJob',
      {
        jobId: m.id,
        shareId: m.source.shareId,
        destBackend: m.destination.backend,
        destPool: m.destination.pool,
        writable: m.writable,
        nondisruptive: m.nondisruptive,
        preserveMetadata: m.preserveMetadata,
        preserveSnapshots: m.preserveSnapshots,
        newShareType: m.newShareType,
        maxBandwidthBytesPerSec: m.maxBandwidthBytesPerSec,
        maxDowntimeMs: m.maxDowntimeMs,
        cutoverAction: m.cutoverAction === 'force' ? 'CUTOVER_ACTION_FORCE' : 'CUTOVER_ACTION_ABORT',
      },
      signal,
    );
    // A cancel that reached the array before this start did wins: the array refuses to revive the job.
    if (job.state === 'JOB_STATE_CANCELLED') throw new FerryError('FAILED_PRECONDITION', `array job ${m.id} was cancelled before it started`);
    call.log.debug({ job: job.jobId }, 'array job started');
    return { checkpoint: checkpoint(job.jobId) };
  }

  async continue(call: MigrationCall): Promise<ContinueResult> {
    const jobId = jobIdOf(call);
    const job = await this.array.call<ArrayJob>('GetJob', { jobId }, call.signal);
    throwIfEnded(job);
    return { progress: toProgress(job), phase1Done: job.phase1Done, nextPollMs: nextPollMs(job), checkpoint: checkpoint(jobId) };
  }

  async complete(call: MigrationCall): Promise<CompleteResult> {
    const jobId = jobIdOf(call);
    const started = (call.checkpoint as Partial<SimCheckpoint> | null)?.cutoverAttempt;
    if (started !== undefined) {
      // A repeat of a call that started attempt `started`: if that attempt aborted, report it rather than start another.
      const job = await this.array.call<ArrayJob>('GetJob', { jobId }, call.signal);
      const aborted = this.abortOf(job, started);
      if (aborted) return aborted;
    }
    // CutoverJob starts a cutover on a syncing job, joins a running one, and returns a finished one as it is.
    // Waiting at most about half our deadline leaves time to answer `in_progress` instead of timing out.
    const waitMs = Math.max(50, Math.floor(this.options.callTimeoutMs / 2));
    const job = await this.array.call<ArrayJob>('CutoverJob', { jobId, waitMs }, call.signal);
    throwIfEnded(job);
    if (job.state === 'JOB_STATE_DONE') {
      // Figures made up here would hide an array that breaks its contract: say so instead.
      const c = job.cutover;
      if (!c) throw new FerryError('DRIVER_ERROR', `array job ${jobId} is DONE but the array reported no cutover figures (simulator.proto promises them for a DONE job)`);
      return { status: 'done', cutover: { freezeMs: c.freezeMs, finalDeltaBytes: c.finalDeltaBytes, verifiedBytes: c.verifiedBytes }, checkpoint: checkpoint(jobId) };
    }
    const aborted = this.abortOf(job, job.cutoverAttempts);
    if (aborted) return aborted;
    return { status: 'in_progress', nextPollMs: 100, checkpoint: checkpoint(jobId, job.cutoverAttempts) };
  }

  /** The 'aborted' result if cutover attempt `attempt` of `job` rolled back. */
  private abortOf(job: ArrayJob, attempt: number): CompleteResult | null {
    if (job.state !== 'JOB_STATE_SYNCING' || attempt === 0 || job.lastAbortAttempt !== attempt) return null;
    return { status: 'aborted', reason: job.lastAbortReason, checkpoint: checkpoint(job.jobId) };
  }

  async cancel(call: MigrationCall): Promise<CancelResult> {
    const jobId = jobIdOf(call);
    // Idempotent on the array, also for a job it never saw (it remembers the id as cancelled).
    const job = await this.array.call<ArrayJob>('CancelJob', { jobId }, call.signal);
    const done = job.state === 'JOB_STATE_CANCELLED' || job.state === 'JOB_STATE_FAILED';
    return done ? { done, checkpoint: checkpoint(jobId) } : { done, nextPollMs: 100, checkpoint: checkpoint(jobId) };
  }

  async progress(call: MigrationCall): Promise<DriverProgress> {
    try {
      return toProgress(await this.array.call<ArrayJob>('GetJob', { jobId: jobIdOf(call) }, call.signal));
    } catch (err) {
      // Before start reached the array there is no job, and no progress: zeros are the truth.
      if (err instanceof FerryError && err.code === 'NOT_FOUND') return toProgress({ progress: null } as ArrayJob);
      throw err;
    }
  }

  /**
   * The array's job changes on this backend (WatchJobs). The array's first
   * message, sent once its watch is registered, has no job id: it becomes
   * `{ migrationId: '' }`, since anything may have changed while no stream
   * was open. Each later message names a job, and a job id is the migration
   * id (start sends it, and every checkpoint keeps it: jobIdOf), so it maps
   * one to one; a job started on the array by hand names no migration, and
   * the daemon ignores it. Ends when the array ends the stream (it is
   * closing) and throws when the connection breaks: the daemon opens it
   * again either way. Returns quietly once `signal` aborts.
   */
  async *watchChanges({ signal }: { signal: AbortSignal }): AsyncIterable<DriverChange> {
    try {
      for await (const event of this.array.stream<ArrayJobEvent>('WatchJobs', { backend: this.ctx.backend }, signal)) {
        yield { migrationId: event.jobId };
      }
    } catch (err) {
      if (signal.aborted) return;
      throw err;
    }
  }

  async close(): Promise<void> {
    this.array.close();
  }

  private async backend(name: string, signal: AbortSignal): Promise<ArrayBackend | undefined> {
    const res = await this.array.call<ListBackendsResponse__Output>('ListBackends', {}, signal);
    return res.backends.find((b) => b.name === name);
  }
}

/** Creates the driver for one backend. */
export const createDriver: DriverFactory = (ctx) => new SimulatorDriver(ctx);
