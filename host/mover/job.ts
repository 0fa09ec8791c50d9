/**
 * One host-path migration in ferryd's memory: the loop that copies passes
 * in the background (phase 1, then keeping the target warm), the cutover,
 * and the cancel. Its durable state is its MoverPlace (place.ts), saved
 * before anything acts on it, so a job rebuilt from the place after a crash
 * goes on where the last one stood: within one batch while copying, from
 * the commit on after a cutover that reached it.
 *
 * Calls go through the source's and the destination's guarded data path;
 * for one migration, at most one call runs on each driver at a time, except
 * that the freeze is renewed while the last delta is copied.
 */
import { FerryError, RETRYABLE_CODES, type CompleteResult, type CutoverMeasurements, type DriverProgress, type MigrationSpec } from '../../plugins/api/index.ts';
import type { Log } from '../../lib/log.ts';
import { RateMeter, sleep, TokenBucket } from '../../lib/rates.ts';
import type { Semaphore } from '../../lib/semaphore.ts';
import type { DataArgs, GuardedDataDestination, GuardedDataSource } from '../guard-data.ts';
import { backoffDelay } from '../poll.ts';
import { copyPass, type PassContext } from './copier.ts';
import { initialPlace, snapshotId, targetId, type MoverPlace, type PlaceStore } from './place.ts';

/** What every job shares: the daemon's limits and the ways to its backends. */
export interface MoverContext {
  places: PlaceStore;
  /** Batches in memory, daemon-wide. */
  memory: Semaphore;
  /** The daemon-wide bandwidth cap (rate 0: none). */
  bucket: TokenBucket;
  /** Bytes per batch. */
  batchBytes: number;
  /** Batches of one migration written at once. */
  batchesInFlight: number;
  /** Pause between passes once phase 1 is done (keeping the target warm). */
  warmIntervalMs: number;
  /** First and longest backoff after a retryable failure. */
  backoffMs: { initial: number; max: number };
  /** The guarded data path of a backend; throws FerryError when the backend cannot serve it. */
  source(backend: string): GuardedDataSource;
  destination(backend: string): GuardedDataDestination;
}

/** Unfrozen passes a cutover makes at most before it freezes (each copying what landed during the one before). */
const MAX_CATCH_UP_PASSES = 8;
/** A catch-up delta this small is small enough to freeze for. */
const CATCH_UP_SMALL_BYTES = 256 * 1024;

/** Consecutive failures of one kind a job rides out before it fails the migration. */
const MAX_DATA_LOSS = 5;
const MAX_NOT_FOUND = 3;

/** Why a cutover attempt stopped at its window. */
class WindowExceeded extends Error {}

const asFerry = (err: unknown): FerryError => (err instanceof FerryError ? err : new FerryError('INTERNAL', `host path: ${String(err)}`));

export class MoverJob {
  /** The failure that ended the job; every later call answers it. */
  failure: FerryError | undefined;
  /** Phase 1 was done once (the delta fitted the window). */
  phase1Done = false;
  private loop: { stop: AbortController; done: Promise<void> } | undefined;
  private cutover: Promise<CompleteResult> | undefined;
  private cutoverResult: CompleteResult | undefined;
  private cutoverError: FerryError | undefined;
  /** Stops the cutover's unfrozen catch-up passes (shutdown, cancel); unset outside them. */
  private catchUpStop: AbortController | undefined;
  private readonly meter = new RateMeter();
  private readonly bucket: TokenBucket;
  private readonly args: DataArgs;
  /** Bytes of the last whole pass after the first, and how long it took. */
  private lastDelta = { bytes: 0, ms: 0 };
  /** Bytes copied so far in the pass under way. */
  private passBytes = 0;

  private constructor(
    private readonly ctx: MoverContext,
    readonly spec: MigrationSpec,
    private place: MoverPlace,
    private readonly log: Log,
  ) {
    this.bucket = new TokenBucket(spec.maxBandwidthBytesPerSec);
    this.args = { migration: spec, log };
  }

  /** The job of `spec`, from its saved place, or new (its place saved first). */
  static async open(ctx: MoverContext, spec: MigrationSpec, log: Log): Promise<MoverJob> {
    const saved = await ctx.places.load(spec.id);
    const job = new MoverJob(ctx, spec, saved ?? initialPlace(), log);
    if (!saved) await job.save();
    return job;
  }

  private get source(): GuardedDataSource {
    return this.ctx.source(this.spec.source.backend);
  }

  private get destination(): GuardedDataDestination {
    return this.ctx.destination(this.spec.destination.backend);
  }

  private save(): Promise<void> {
    return this.ctx.places.save(this.spec.id, this.place);
  }

  /** Takes the first snapshot and creates the target, if not done yet (start). */
  async begin(signal: AbortSignal): Promise<void> {
    if (this.place.pass === 0) await this.openPass(signal);
  }

  /** Starts the background passes unless they run, the job failed, or a cutover owns the job. */
  ensureRunning(): void {
    if (this.loop || this.failure || this.cutover || this.place.phase !== 'copy') return;
    const stop = new AbortController();
    this.loop = { stop, done: this.run(stop.signal) };
  }

  /** Stops the background passes at the next batch and waits for them. */
  async pause(): Promise<void> {
    const loop = this.loop;
    if (!loop) return;
    loop.stop.abort(new FerryError('UNAVAILABLE', 'the copy was paused'));
    await loop.done;
    if (this.loop === loop) this.loop = undefined;
  }

  /** Progress as the contract reports it. */
  progress(): DriverProgress {
    const p = this.place;
    const total = p.sizeBytes;
    const rate = this.meter.rate();
    const dirty = p.base === '' ? 0 : Math.max(0, this.lastDelta.bytes - this.passBytes);
    const remaining = Math.max(0, total - p.firstPassBytes) + dirty;
    return {
      totalBytes: total,
      copiedBytes: Math.min(p.firstPassBytes, total),
      dirtyBytes: dirty,
      dirtyRateBytesPerSec: this.lastDelta.ms > 0 ? Math.round((this.lastDelta.bytes * 1000) / this.lastDelta.ms) : 0,
      throughputBytesPerSec: rate,
      iteration: p.pass,
      etaSeconds: this.phase1Done || rate === 0 ? 0 : Math.ceil(remaining / rate),
    };
  }

  // ------------------------------------------------------------ phase 1

  private async run(signal: AbortSignal): Promise<void> {
    let failures = 0;
    let dataLoss = 0;
    let notFound = 0;
    while (!signal.aborted) {
      try {
        await this.copyOnePass(signal);
        failures = dataLoss = notFound = 0;
        if (this.phase1Done) await sleep(this.ctx.warmIntervalMs, signal);
      } catch (err) {
        if (signal.aborted) return;
        const e = asFerry(err);
        if (e.code === 'DATA_LOSS' && ++dataLoss < MAX_DATA_LOSS) {
          this.log.warn({ err: e.message, attempt: dataLoss }, 'host path: bytes did not match their CRC-32C; copying the batch again');
        } else if (e.code === 'NOT_FOUND' && ++notFound < MAX_NOT_FOUND) {
          await this.lost(e, notFound);
        } else if (!RETRYABLE_CODES.has(e.code)) {
          this.log.error({ code: e.code, err: e.message }, 'host path: the copy failed');
          this.failure = e;
          return;
        }
        failures++;
        const backoff = backoffDelay(failures, this.ctx.backoffMs.initial, this.ctx.backoffMs.max);
        this.log.warn({ code: e.code, err: e.message, retryInMs: backoff }, 'host path: copy call failed; resuming from the last verified batch');
        await sleep(backoff, signal);
      }
    }
  }

  /**
   * A snapshot or the target is gone (the array lost it): the first time,
   * the pass starts over from a new snapshot; the second, the whole share
   * is copied again to a target made anew (progress does not go back).
   */
  private async lost(err: FerryError, times: number): Promise<void> {
    const p = this.place;
    if (p.current) p.garbage.push(p.current);
    p.current = '';
    p.cursor = 0;
    if (times >= 2) {
      if (p.base) p.garbage.push(p.base);
      p.base = '';
      p.targetCreated = false;
    }
    this.log.warn({ err: err.message, fullCopy: times >= 2 }, 'host path: a snapshot or the target is gone; copying again');
    await this.save();
  }

  /** Takes the next pass's snapshot (and creates the target the first time). */
  private async openPass(signal: AbortSignal): Promise<void> {
    const p = this.place;
    const id = snapshotId(this.spec.id, p.pass + 1);
    const info = await this.source.createSnapshot({ ...this.args, snapshotId: id }, signal);
    if (p.sizeBytes !== 0 && info.sizeBytes !== p.sizeBytes) {
      throw new FerryError('FAILED_PRECONDITION', `share ${this.spec.source.shareId} changed size during the migration (${p.sizeBytes} to ${info.sizeBytes} bytes)`);
    }
    if (!p.targetCreated) {
      const target = await this.destination.createTarget(
        {
          ...this.args,
          targetId: targetId(this.spec.id),
          sizeBytes: info.sizeBytes,
          metadata: this.spec.preserveMetadata ? info.metadata : {},
          shareType: this.spec.newShareType || info.shareType,
        },
        signal,
      );
      if (target.promoted) throw new FerryError('FAILED_PRECONDITION', `target ${targetId(this.spec.id)} was already promoted, though this migration's cutover never committed`);
    }
    p.pass++;
    p.current = id;
    p.cursor = 0;
    p.sizeBytes = info.sizeBytes;
    p.targetCreated = true;
    await this.save();
  }

  private passContext(signal: AbortSignal): PassContext {
    return {
      args: this.args,
      source: this.source,
      destination: this.destination,
      targetId: targetId(this.spec.id),
      batchBytes: this.ctx.batchBytes,
      batchesInFlight: this.ctx.batchesInFlight,
      buckets: [this.bucket, this.ctx.bucket],
      memory: this.ctx.memory,
      signal,
    };
  }

  /** Copies one pass to its end (resuming the one under way), then judges whether phase 1 is done. */
  private async copyOnePass(signal: AbortSignal): Promise<void> {
    if (!this.place.current) await this.openPass(signal);
    const p = this.place;
    const whole = p.base === '';
    const startedAt = Date.now();
    this.passBytes = 0;
    const result = await copyPass(this.passContext(signal), { base: p.base, snapshot: p.current, from: p.cursor, sizeBytes: p.sizeBytes }, async (end, bytes) => {
      p.cursor = end;
      p.sentBytes += bytes;
      if (whole) p.firstPassBytes = Math.max(p.firstPassBytes, end);
      this.passBytes += bytes;
      this.meter.add(bytes);
      await this.save();
    });
    if (p.base) p.garbage.push(p.base);
    p.base = p.current;
    p.current = '';
    p.cursor = 0;
    if (whole) p.firstPassBytes = p.sizeBytes;
    await this.save();
    await this.collectGarbage(signal);
    if (whole) return;
    this.lastDelta = { bytes: result.bytes, ms: Date.now() - startedAt };
    if (!this.phase1Done && this.fitsWindow(result.bytes)) {
      this.phase1Done = true;
      this.log.info({ pass: p.pass, deltaBytes: result.bytes }, 'host path: the delta fits the cutover window');
    }
  }

  /** Whether `bytes` would copy in half the cutover window at the throughput seen. */
  private fitsWindow(bytes: number): boolean {
    const rate = Math.max(this.meter.rate(), 1);
    return (bytes / rate) * 1000 <= this.spec.maxDowntimeMs / 2;
  }

  /** Deletes the snapshots no longer needed; one that cannot be deleted now is tried again later. */
  private async collectGarbage(signal?: AbortSignal): Promise<void> {
    const p = this.place;
    if (p.garbage.length === 0) return;
    const kept: string[] = [];
    for (const id of p.garbage) {
      await this.source.deleteSnapshot({ ...this.args, snapshotId: id }, signal).catch((err: unknown) => {
        kept.push(id);
        this.log.warn({ snapshot: id, err: asFerry(err).message }, 'host path: could not delete a snapshot yet');
      });
    }
    p.garbage = kept;
    await this.save();
  }

  // ------------------------------------------------------------ cutover

  /** complete: starts the cutover (or rolls a committed one forward) and answers how it stands. */
  complete(): CompleteResult {
    if (this.failure) throw this.failure;
    if (this.cutoverError) {
      // The attempt failed; the engine decides (retry on UNAVAILABLE, else ERROR and clean-up).
      const err = this.cutoverError;
      this.cutoverError = undefined;
      throw err;
    }
    if (this.cutoverResult) {
      const result = this.cutoverResult;
      // An aborted attempt hands the job back to phase 1; a later complete starts a new one.
      if (result.status === 'aborted') {
        this.cutoverResult = undefined;
        this.cutover = undefined;
        this.ensureRunning();
      }
      return result;
    }
    this.cutover ??= this.runCutover().then(
      (result) => (this.cutoverResult = result),
      (err: unknown) => {
        this.cutover = undefined;
        this.cutoverError = asFerry(err);
        throw err;
      },
    );
    this.cutover.catch(() => undefined);
    return { status: 'in_progress', nextPollMs: 10, checkpoint: null };
  }

  /** Waits for the cutover under way, if any, and answers as complete would. */
  async settled(): Promise<void> {
    await this.cutover?.catch(() => undefined);
  }

  private async runCutover(): Promise<CompleteResult> {
    await this.pause();
    const p = this.place;
    if (p.phase === 'promoting') {
      // A crash after the last delta was verified: whether promote committed is the destination's to say.
      if (await this.promoted()) {
        p.phase = 'committed';
        await this.save();
      } else {
        p.phase = 'copy';
        await this.save();
      }
    }
    if (p.phase === 'committed') return this.rollForward(p.cutover ?? { freezeMs: 0, finalDeltaBytes: 0, verifiedBytes: 0 });
    // Catch up unfrozen: finish the pass under way, then pass after pass while the delta keeps shrinking. Each
    // copies what landed during the one before, so the frozen one copies only what lands during the last:
    // a warm pass's delta holds up to warmIntervalMs of writes, the last catch-up pass's a few ms of them.
    // A shutdown or a cancel stops them (close, cancel); the cutover is asked again in the next process.
    const stop = new AbortController();
    this.catchUpStop = stop;
    const catchUp: number[] = [];
    try {
      if (p.current) await this.copyOnePass(stop.signal);
      for (let i = 0; i < MAX_CATCH_UP_PASSES; i++) {
        await this.copyOnePass(stop.signal);
        const bytes = this.lastDelta.bytes;
        catchUp.push(bytes);
        if (bytes <= CATCH_UP_SMALL_BYTES || bytes >= (catchUp.at(-2) ?? Infinity)) break;
      }
    } finally {
      this.catchUpStop = undefined;
    }
    return this.frozenAttempt(catchUp);
  }

  /** Whether the target was promoted (createTarget repeated answers it). */
  private async promoted(): Promise<boolean> {
    const p = this.place;
    const target = await this.destination.createTarget({ ...this.args, targetId: targetId(this.spec.id), sizeBytes: p.sizeBytes, metadata: {}, shareType: '' });
    return target.promoted;
  }

  /** Freeze, last snapshot, last delta, promote, release, retire: within the window or rolled back (ABORT). */
  private async frozenAttempt(catchUp: number[]): Promise<CompleteResult> {
    const p = this.place;
    const windowMs = this.spec.maxDowntimeMs;
    const leaseMs = Math.max(2_000, 4 * windowMs);
    const attempt = new AbortController();
    const timer = this.spec.cutoverAction === 'abort' ? setTimeout(() => attempt.abort(new WindowExceeded()), windowMs) : undefined;
    let renewal: NodeJS.Timeout | undefined;
    let leaseUntil = 0;
    const freeze = async () => {
      const askedAt = Date.now();
      await this.source.freezeWrites({ ...this.args, leaseMs }, attempt.signal);
      leaseUntil = askedAt + leaseMs;
    };
    const frozenAt = performance.now();
    /** ms from the freeze to the end of each step, for the log line of the commit. */
    const steps: Record<string, number> = {};
    const mark = (step: string) => (steps[step] = Math.round(performance.now() - frozenAt));
    this.log.info({ catchUpDeltaBytes: catchUp }, 'host path: caught up; freezing the source');
    let finalDelta = 0;
    const final = snapshotId(this.spec.id, p.pass + 1);
    try {
      await freeze();
      mark('frozen');
      renewal = setInterval(() => void freeze().catch(() => undefined), Math.floor(leaseMs / 3));
      await this.source.createSnapshot({ ...this.args, snapshotId: final }, attempt.signal);
      mark('snapshot');
      p.pass++;
      p.current = final;
      p.cursor = 0;
      const result = await copyPass(this.passContext(attempt.signal), { base: p.base, snapshot: final, from: 0, sizeBytes: p.sizeBytes }, (end, bytes) => {
        p.cursor = end;
        p.sentBytes += bytes;
        this.meter.add(bytes);
      });
      finalDelta = result.bytes;
      mark('copied');
      if (Date.now() >= leaseUntil) throw new FerryError('UNAVAILABLE', 'the freeze lease ran out before the last delta was verified; writes may have landed since');
      // Past this save the cutover only goes forward: the last delta is on the target, verified, and the source is frozen.
      clearTimeout(timer);
      if (p.base) p.garbage.push(p.base);
      p.base = final;
      p.current = '';
      p.cursor = 0;
      p.phase = 'promoting';
      await this.save();
      mark('saved');
      this.log.info({ finalDeltaBytes: finalDelta }, 'host path: the last delta is verified; promoting the target');
    } catch (err) {
      clearTimeout(timer);
      clearInterval(renewal);
      await this.rollBack(final);
      if (err instanceof WindowExceeded || attempt.signal.reason instanceof WindowExceeded) {
        const frozenMs = Math.round(performance.now() - frozenAt);
        return {
          status: 'aborted',
          reason: `the last delta did not fit the cutover window of ${windowMs} ms (${finalDelta} bytes copied when it ran out); writes were released after ${frozenMs} ms and the source stays authoritative`,
          checkpoint: null,
        };
      }
      throw err;
    }
    try {
      await this.destination.promoteTarget({ ...this.args, targetId: targetId(this.spec.id) });
      mark('promoted');
    } finally {
      clearInterval(renewal);
    }
    const measured: CutoverMeasurements = { freezeMs: performance.now() - frozenAt, finalDeltaBytes: finalDelta, verifiedBytes: finalDelta };
    p.phase = 'committed';
    p.cutover = measured;
    await this.save();
    mark('committed');
    this.log.info({}, 'host path: the target is promoted (the commit point); releasing the writes and retiring the source');
    return this.rollForward(measured, frozenAt, steps);
  }

  /** Undoes a cutover attempt that did not reach its commit: writes thaw where they are, the last snapshot goes. */
  private async rollBack(final: string): Promise<void> {
    const p = this.place;
    await this.source.releaseWrites({ ...this.args, committed: false }).catch((err: unknown) => {
      this.log.warn({ err: asFerry(err).message }, 'host path: releasing the writes failed; the freeze lease ends it');
    });
    if (p.current === final) {
      p.current = '';
      p.cursor = 0;
    }
    p.garbage.push(final);
    await this.save();
    await this.collectGarbage();
  }

  /** After the commit: release the writes (to the destination), retire the source, forget the place. */
  private async rollForward(measured: CutoverMeasurements, frozenAt?: number, steps: Record<string, number> = {}): Promise<CompleteResult> {
    await this.source.releaseWrites({ ...this.args, committed: true });
    if (frozenAt !== undefined) steps.released = Math.round(performance.now() - frozenAt);
    const cutover = frozenAt === undefined ? measured : { ...measured, freezeMs: performance.now() - frozenAt };
    await this.source.retireSource(this.args);
    await this.ctx.places.remove(this.spec.id);
    this.log.info({ freezeMs: Math.round(cutover.freezeMs), finalDeltaBytes: cutover.finalDeltaBytes, sizeBytes: this.place.sizeBytes, sentBytes: this.place.sentBytes, passes: this.place.pass, steps }, 'host path: cutover committed');
    return { status: 'done', cutover, checkpoint: null };
  }

  // ------------------------------------------------------------- cancel

  /** Stops the copy and removes everything the migration made; the source is untouched. */
  async cancel(): Promise<void> {
    this.catchUpStop?.abort(new FerryError('UNAVAILABLE', 'the migration is being cancelled'));
    await this.pause();
    await this.settled();
    const p = this.place;
    if (p.phase === 'committed' || (p.phase === 'promoting' && (await this.promoted()))) {
      throw new FerryError('FAILED_PRECONDITION', `the cutover committed: share ${this.spec.source.shareId} lives on ${this.spec.destination.backend}#${this.spec.destination.pool}; there is nothing to roll back`);
    }
    await this.source.releaseWrites({ ...this.args, committed: false });
    await this.destination.discardTarget({ ...this.args, targetId: targetId(this.spec.id) });
    const snapshots = new Set([...p.garbage, p.base, p.current, p.pass > 0 ? snapshotId(this.spec.id, p.pass) : '', snapshotId(this.spec.id, p.pass + 1)]);
    for (const id of snapshots) if (id) await this.source.deleteSnapshot({ ...this.args, snapshotId: id });
    await this.ctx.places.remove(this.spec.id);
  }

  /** Stops the job (shutdown) before its next batch, cutover catch-up included; it resumes from its place in the next process. */
  async close(): Promise<void> {
    this.catchUpStop?.abort(new FerryError('UNAVAILABLE', 'ferryd is shutting down; the cutover is asked again in the next process'));
    await this.pause();
    await this.settled();
  }
}
