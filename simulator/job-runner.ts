/**
 * The copy engine of one job: pass 1 (a sequential copy in chunks), later
 * passes (the blocks written meanwhile), a background verification sweep,
 * and after a restart the rebuild of the dirty set that was lost with the
 * process. The cutover (cutover.ts) uses the same building blocks with the
 * loop stopped and the share frozen. What the job knows about each block,
 * and the worker operations on blocks, are in block-state.ts.
 *
 * Dirty tracking is race-free against the workers because a write marks its
 * blocks after its pwrite completed and before it is acknowledged, and pass 1
 * persists and publishes the end of the dispatched range before a worker can
 * read a chunk: a write that lands before the worker reads is copied by it, a
 * write that lands after is marked dirty, and one that lands in between is
 * both (which is only wasteful).
 */
import type { Log } from '../lib/log.ts';
import { BlockState, Flight, expand } from './block-state.ts';
import type { BlockStore } from './blockstore.ts';
import type { CopyPool } from './copy-pool.ts';
import type { BlockDigest, Runs } from './copy-protocol.ts';
import type { Faults } from './faults.ts';
import type { MetaStore } from './metadata.ts';
import { keys } from './model.ts';
import type { JobRecord } from './model.ts';
import { RateMeter, TokenBucket, Wakeup, sleep } from './rates.ts';

const MiB = 1024 * 1024;
/** While syncing, wait this long for small dirty sets to gather before a pass (many tiny passes cost more than they save). */
const SYNC_PACE_MS = 50;
/** How often an idle syncing job looks around when no write wakes it. */
const IDLE_WAIT_MS = 1000;
/** Pass 1 starts an fdatasync of the destination in the background after every this many bytes copied. */
const FLUSH_EVERY_BYTES = 64 * MiB;
/**
 * Under a bandwidth cap a worker task carries about this much of the cap's
 * rate (at most a chunk): the cap is paid before a task is handed out, so
 * with whole 8 MiB chunks at 1 MiB/s nothing would land for 8 s, then all of it.
 */
const PACE_MS = 250;

/** What a runner needs from the array. */
export interface RunnerDeps {
  store: MetaStore;
  blocks: BlockStore;
  pool: CopyPool;
  faults: Faults;
  log: Log;
  maxPasses: number;
  maxSentFactor: number;
  /** How blocks are digested for verification. */
  blockDigest: BlockDigest;
  /** The array-wide cap. */
  arrayBucket: TokenBucket;
  /** The slow-disk fault's cap. */
  diskBucket: TokenBucket;
  /** Called when the loop fails; the job must then fail. */
  failed(runner: JobRunner, err: unknown): Promise<void>;
}

/** Progress as the API reports it. */
export interface ProgressView {
  totalBytes: number;
  copiedBytes: number;
  dirtyBytes: number;
  dirtyRateBytesPerSec: number;
  throughputBytesPerSec: number;
  pass: number;
  etaSeconds: number;
  warning: string;
  recopiedAfterCrashBytes: number;
  sentBytes: number;
  verifiedBytes: number;
}

/** One active job's copy state and loop. */
export class JobRunner {
  readonly rec: JobRecord;
  /** What the job knows about each block. */
  readonly state: BlockState;
  private readonly deps: RunnerDeps;
  private readonly bucket: TokenBucket;
  private readonly throughput = new RateMeter();
  private readonly dirtyMeter = new RateMeter();
  /** Bytes that pass-1 tasks still in flight have landed: copied, though their blocks are marked so only when the task ends. */
  private landing = 0;
  private readonly wake = new Wakeup();
  /** Notified when the rebuild after a restart is done. */
  readonly rebuilt = new Wakeup();
  private loop: Promise<void> | null = null;
  private loopAbort: AbortController | null = null;
  /** True until the dirty set lost in a restart has been rebuilt. */
  needsRebuild: boolean;
  private precopyStopped = false;
  private budgetPass = 0;
  private budgetSent = 0;
  private verifyCursor = 0;
  /** Pass 1's background flush of the destination: the one running, where it started, and the first failure. */
  private flushing: Promise<void> | null = null;
  private flushedUpTo = 0;
  private flushError: unknown = null;
  /** A cancel or a cutover that owns the job now; the other must not start. */
  op: 'cancel' | 'cutover' | null = null;
  /** The running cutover, for callers that join it. */
  cutover: Promise<void> | null = null;

  constructor(rec: JobRecord, deps: RunnerDeps, options: { resumed: boolean }) {
    this.rec = rec;
    this.deps = deps;
    this.state = new BlockState(
      {
        sizeBytes: rec.sizeBytes,
        blockSizeBytes: rec.blockSizeBytes,
        chunkSizeBytes: rec.chunkSizeBytes,
        srcPath: deps.blocks.path(rec.source.fileId),
        dstPath: deps.blocks.path(rec.dest.fileId),
        digest: deps.blockDigest,
      },
      deps.pool,
    );
    this.bucket = new TokenBucket(rec.spec.maxBandwidthBytesPerSec);
    this.needsRebuild = options.resumed && rec.dispatchedEnd > 0;
    if (options.resumed && rec.dispatchedEnd === 0) rec.cursor = 0;
  }

  private get log(): Log {
    return this.deps.log;
  }

  private get blockCount(): number {
    return this.state.count;
  }

  /** Dirty bytes now. */
  dirtyBytes(): number {
    return this.state.countBytes(this.state.dirty.count);
  }

  /** Persists the job record (checkpoints need not be synced: a rebuild after a restart trusts nothing it cannot hash). */
  save(sync = false): Promise<void> {
    return this.deps.store.put(keys.job(this.rec.jobId), this.rec, { sync });
  }

  // ------------------------------------------------------------ the loop

  /** Starts (or restarts) the copy loop. */
  startLoop(): void {
    if (this.loop) return;
    const abort = new AbortController();
    this.loopAbort = abort;
    this.loop = this.run(abort.signal).catch((err: unknown) => this.deps.failed(this, err));
  }

  /** Stops the loop cooperatively: no new chunks, the ones in flight finish, then the checkpoint is saved. */
  async stopLoop(): Promise<void> {
    this.loopAbort?.abort();
    this.wake.notify();
    await this.loop;
    this.loop = null;
    this.loopAbort = null;
  }

  private async run(signal: AbortSignal): Promise<void> {
    if (this.needsRebuild) {
      await this.rebuild(signal);
      if (signal.aborted) return;
    }
    if (this.rec.cursor < this.blockCount) {
      await this.firstPass(signal);
      await this.flushing;
      if (this.flushError) throw this.flushError;
      if (signal.aborted) return;
      await this.deps.blocks.sync(this.rec.dest.fileId);
      await this.evaluate();
    }
    while (!signal.aborted) {
      if (this.precopyStopped) {
        await sleep(IDLE_WAIT_MS, signal);
        this.maybeResumePrecopy();
        continue;
      }
      let worked = false;
      if (this.state.dirty.count > 0) {
        if (this.rec.phase1Done && this.dirtyBytes() < this.rec.chunkSizeBytes) await this.pace(signal);
        if (signal.aborted) break;
        await this.dirtyPass(signal);
        if (!signal.aborted) await this.evaluate();
        worked = true;
      } else if (!this.rec.phase1Done) {
        await this.evaluate();
        continue;
      }
      // One verification batch per round, even while writes keep the dirty set from ever being empty:
      // otherwise every block recopied while syncing would wait for the freeze to be verified.
      if (this.rec.phase1Done && !signal.aborted && (await this.verifySweep(signal))) worked = true;
      if (!worked) await this.wake.wait(IDLE_WAIT_MS, signal);
    }
  }

  /** While syncing, let small dirty sets gather for SYNC_PACE_MS, verifying the destination meanwhile. */
  private async pace(signal: AbortSignal): Promise<void> {
    const until = Date.now() + SYNC_PACE_MS;
    while (Date.now() < until && !signal.aborted && (await this.verifySweep(signal)));
    await sleep(until - Date.now(), signal);
  }

  /** Pass 1: every chunk in order, each persisted as dispatched before a worker sees it and as copied after. */
  private async firstPass(signal: AbortSignal): Promise<void> {
    const { rec } = this;
    if (rec.pass === 0) rec.pass = 1;
    const flight = new Flight();
    const pending: Array<{ end: number; done: boolean }> = [];
    const started = Date.now();
    let passBytes = 0;
    this.flushedUpTo = 0;
    while (rec.dispatchedEnd < this.blockCount && !signal.aborted && !flight.error) {
      await this.deps.faults.whileStalled(signal);
      if (signal.aborted) break;
      const from = rec.dispatchedEnd;
      const to = Math.min(this.blockCount, from + this.taskBlocks());
      await this.throttle(this.state.countBytes(to) - this.state.countBytes(from), signal);
      if (signal.aborted) break;
      await flight.slot(this.state.parallelism);
      if (signal.aborted || flight.error) break;
      // Publish, then persist, then hand to a worker: see the note at the top of this file.
      rec.dispatchedEnd = to;
      await this.save();
      const entry = { end: to, done: false };
      pending.push(entry);
      flight.add(
        this.copyRuns([[from, to - from]], { firstPass: true }).then(async (bytes) => {
          entry.done = true;
          passBytes += bytes;
          this.flushInBackground(passBytes);
          while (pending[0]?.done) rec.cursor = pending.shift()!.end;
          await this.save();
          if (this.state.copied.count * 2 >= this.blockCount) await this.deps.faults.crashIfAt('DURING_COPY');
        }),
      );
    }
    await flight.drain();
    if (rec.cursor >= this.blockCount) this.measurePass(passBytes, started);
  }

  /**
   * Starts an fdatasync of the destination once FLUSH_EVERY_BYTES more have
   * been copied, without waiting for it: the disk writes back what pass 1
   * copied while the workers copy the rest, instead of all of it at the end.
   * A failure is kept and fails the job after the pass: an fsync error is
   * reported once per descriptor, so the final sync might not see it again.
   */
  private flushInBackground(passBytes: number): void {
    if (this.flushing || passBytes - this.flushedUpTo < FLUSH_EVERY_BYTES) return;
    this.flushedUpTo = passBytes;
    this.flushing = this.deps.blocks
      .sync(this.rec.dest.fileId)
      .catch((err: unknown) => void (this.flushError ??= err))
      .finally(() => (this.flushing = null));
  }

  /**
   * A later pass: snapshot and clear the dirty set, copy it (capped), flush
   * the destination. Blocks not reached before a stop go back into the set.
   * Resolves with the bytes copied. The loop runs these; so does the
   * cutover, before it freezes.
   */
  async dirtyPass(signal: AbortSignal): Promise<number> {
    const blocks = this.state.dirty.drain();
    if (blocks.length === 0) return 0;
    this.rec.pass++;
    const started = Date.now();
    const { bytes, leftover } = await this.copyBlocks(blocks, { throttle: true, signal });
    for (const b of leftover) this.state.dirty.set(b);
    // Flush now, in the background, so that the cutover's fdatasync only has the final delta to write.
    await this.deps.blocks.sync(this.rec.dest.fileId);
    if (leftover.length === 0) this.measurePass(bytes, started);
    await this.save();
    return bytes;
  }

  private measurePass(bytes: number, started: number): void {
    // Only passes big enough to say something about the copy rate count.
    if (bytes < Math.min(this.rec.sizeBytes, this.rec.chunkSizeBytes)) return;
    const rate = Math.round((bytes * 1000) / Math.max(1, Date.now() - started));
    this.rec.copyRateBps = this.rec.copyRateBps > 0 ? Math.round((this.rec.copyRateBps + rate) / 2) : rate;
  }

  /** Dirty bytes that fit the downtime target: what half the window copies at the measured rate, at least one block. */
  threshold(): number {
    return Math.max(this.rec.blockSizeBytes, (this.rec.copyRateBps * this.rec.spec.maxDowntimeMs * 0.5) / 1000);
  }

  /** After a pass: is phase 1 done, or is the pre-copy not converging? */
  private async evaluate(): Promise<void> {
    const { rec } = this;
    const fits = this.dirtyBytes() <= this.threshold();
    if (rec.phase1Done) {
      if (!this.precopyStopped && fits !== rec.converged) {
        rec.converged = fits;
        if (fits) rec.warning = '';
        await this.save();
      }
      return;
    }
    if (fits) {
      rec.converged = true;
      rec.warning = '';
    } else if (rec.pass - this.budgetPass >= this.deps.maxPasses || rec.sentBytes - this.budgetSent >= this.deps.maxSentFactor * rec.sizeBytes) {
      // Like Xen's last iteration: stop pre-copying rather than loop forever. The operator may still
      // complete; the cutover then copies the whole dirty set while frozen and its window decides.
      this.precopyStopped = true;
      rec.converged = false;
      rec.warning =
        `not converging: writes (${mib(this.dirtyMeter.rate())} MiB/s) outpace the copy (${mib(rec.copyRateBps)} MiB/s) ` +
        `after ${rec.pass - this.budgetPass} passes and ${mib(rec.sentBytes - this.budgetSent)} MiB sent; ` +
        `pre-copy stopped with ${mib(this.dirtyBytes())} MiB dirty`;
      this.log.warn({ job: rec.jobId, warning: rec.warning }, 'pre-copy not converging');
    } else {
      return;
    }
    rec.phase1Done = true;
    rec.state = 'SYNCING';
    rec.phase1DoneAtMs = Date.now();
    await this.save(true);
    this.log.info({ job: rec.jobId, pass: rec.pass, converged: rec.converged }, 'phase 1 done');
  }

  /** A stopped pre-copy resumes, with fresh bounds, once writes slow down below half the copy rate. */
  private maybeResumePrecopy(): void {
    if (this.dirtyMeter.rate() * 2 >= this.rec.copyRateBps) return;
    this.precopyStopped = false;
    this.budgetPass = this.rec.pass;
    this.budgetSent = this.rec.sentBytes;
    this.log.info({ job: this.rec.jobId }, 'writes slowed down; pre-copy resumes');
  }

  // ------------------------------------------------------- copy and hash

  /**
   * Copies `runs` in one worker task, counting the bytes sent as they land.
   * Pass 1 (`firstPass`) skips zero runs, and its landed bytes count as
   * copied while the task runs.
   */
  private async copyRuns(runs: Runs, options: { firstPass: boolean }): Promise<number> {
    let landed = 0;
    const onLanded = (n: number) => {
      landed += n;
      if (options.firstPass) this.landing += n;
      this.throughput.add(n);
    };
    try {
      const bytes = await this.state.copy(runs, options.firstPass, onLanded);
      this.throughput.add(bytes - landed);
      this.rec.sentBytes += bytes;
      return bytes;
    } finally {
      if (options.firstPass) this.landing -= landed;
    }
  }

  /** Blocks per worker task: a chunk, or under a bandwidth cap what the cap lets through in PACE_MS (at least a block). */
  private taskBlocks(): number {
    const caps = [this.bucket.rate, this.deps.arrayBucket.rate, this.deps.faults.value.copyBandwidthBytesPerSec].filter((r) => r > 0);
    if (caps.length === 0) return this.state.chunkBlocks;
    const blocks = Math.floor((Math.min(...caps) * PACE_MS) / 1000 / this.rec.blockSizeBytes);
    return Math.max(1, Math.min(this.state.chunkBlocks, blocks));
  }

  /**
   * Copies a list of blocks, a few tasks per worker at a time. With
   * `throttle`, bandwidth caps and the stall fault apply (not during the
   * freeze: a cap there would only lengthen it). Stops dispatching when
   * `signal` aborts and returns the blocks it did not reach.
   */
  async copyBlocks(blocks: number[], options: { throttle: boolean; signal?: AbortSignal }): Promise<{ bytes: number; leftover: number[] }> {
    const groups = this.state.tasks(blocks, options.throttle ? this.taskBlocks() : this.state.chunkBlocks);
    const flight = new Flight();
    const { signal } = options;
    let bytes = 0;
    let i = 0;
    for (; i < groups.length; i++) {
      if (signal?.aborted || flight.error) break;
      const group = groups[i]!;
      if (options.throttle && signal) {
        await this.deps.faults.whileStalled(signal);
        await this.throttle(this.state.bytesOf(expand(group)), signal);
      }
      await flight.slot(this.state.parallelism);
      if (signal?.aborted || flight.error) break;
      flight.add(this.copyRuns(group, { firstPass: false }).then((n) => void (bytes += n)));
    }
    await flight.drain();
    return { bytes, leftover: groups.slice(i).flatMap(expand) };
  }

  /** One batch of the background verification. Returns false when there was nothing to verify. */
  private async verifySweep(signal: AbortSignal): Promise<boolean> {
    const { state } = this;
    if (state.verified.count >= state.count) return false;
    // One chunk per worker, so a sweep reads as fast as the copy does.
    const limit = state.chunkBlocks * this.deps.pool.size;
    let batch = state.verifiable(this.verifyCursor, limit);
    if (batch.length === 0 && this.verifyCursor > 0) {
      this.verifyCursor = 0;
      batch = state.verifiable(0, limit);
    }
    if (batch.length === 0) return false;
    this.verifyCursor = batch[batch.length - 1]! + 1;
    await this.throttle(state.bytesOf(batch), signal);
    if (signal.aborted) return true;
    await this.verifyBatch(batch);
    return true;
  }

  /**
   * Verifies every block that can be verified now, for the cutover before it
   * freezes. Only the slow-disk fault paces it, not the job's or the array's
   * copy caps: the operator is waiting on it, it reads only the destination,
   * and the alternative is to do it inside the freeze. Resolves with the
   * bytes verified.
   */
  async verifyBacklog(signal: AbortSignal): Promise<number> {
    const { state } = this;
    const limit = state.chunkBlocks * this.deps.pool.size;
    let bytes = 0;
    for (let from = 0; !signal.aborted; ) {
      const batch = state.verifiable(from, limit);
      if (batch.length === 0) break;
      from = batch[batch.length - 1]! + 1;
      this.deps.diskBucket.setRate(this.deps.faults.value.copyBandwidthBytesPerSec);
      await this.deps.diskBucket.take(state.bytesOf(batch), signal);
      if (signal.aborted) break;
      bytes += await this.verifyBatch(batch);
    }
    return bytes;
  }

  /** Verifies `batch`; blocks that do not match their hash lose it and are copied again. Resolves with the bytes verified. */
  private async verifyBatch(batch: number[]): Promise<number> {
    const { state } = this;
    const { bytes, mismatched } = await state.verify(batch);
    if (mismatched.length > 0) {
      this.log.warn({ job: this.rec.jobId, blocks: mismatched.length }, 'destination blocks did not match their copy hash; copying them again');
      for (const b of mismatched) {
        state.hashed.clear(b);
        state.dirty.set(b);
      }
    }
    return bytes;
  }

  /**
   * After a restart: the dirty set died with the process. Hash source and
   * destination over everything ever dispatched; blocks that differ are
   * dirty (and copied again: recopied_after_crash_bytes), blocks that match
   * are copied, hashed and verified.
   */
  private async rebuild(signal: AbortSignal): Promise<void> {
    const { rec, state } = this;
    const end = rec.dispatchedEnd;
    const flight = new Flight();
    let recopied = 0;
    for (let from = 0; from < end && !signal.aborted && !flight.error; from += state.chunkBlocks) {
      await flight.slot(state.parallelism);
      if (signal.aborted || flight.error) break;
      flight.add(state.compare([[from, Math.min(end, from + state.chunkBlocks) - from]]).then((n) => void (recopied += n)));
    }
    await flight.drain();
    if (signal.aborted) return;
    rec.cursor = end;
    rec.recopiedAfterCrashBytes += recopied;
    this.needsRebuild = false;
    await this.save();
    this.rebuilt.notify();
    this.log.info({ job: rec.jobId, checkedBytes: state.countBytes(end), recopiedBytes: recopied }, 'dirty set rebuilt after restart');
  }

  private async throttle(bytes: number, signal: AbortSignal): Promise<void> {
    this.deps.diskBucket.setRate(this.deps.faults.value.copyBandwidthBytesPerSec);
    await this.bucket.take(bytes, signal);
    await this.deps.arrayBucket.take(bytes, signal);
    await this.deps.diskBucket.take(bytes, signal);
    // Stopped: the caller sends nothing. Without the refund the cutover's first catch-up pass, right after the loop
    // stops, waited out the debt of a sweep batch that was never read (~0.3 s at 50 MiB/s).
    if (signal.aborted) for (const bucket of [this.bucket, this.deps.arrayBucket, this.deps.diskBucket]) bucket.refund(bytes);
  }

  // -------------------------------------------------------------- writes

  /** A write landed on the source (called after its pwrite, before its acknowledgement). */
  noteWrite(offset: number, length: number): void {
    // Pass 1 copies blocks past the dispatched range later anyway; after pass 1 that range is everything.
    const newly = this.state.written(offset, length, this.rec.dispatchedEnd);
    if (newly > 0) {
      this.dirtyMeter.add(newly);
      this.wake.notify();
    }
  }

  // ------------------------------------------------------------ progress

  /** Progress now. */
  progress(): ProgressView {
    const { rec } = this;
    const copiedBytes = Math.min(rec.sizeBytes, this.state.countBytes(this.state.copied.count) + this.landing);
    const dirtyBytes = this.dirtyBytes();
    const dirtyRate = this.dirtyMeter.rate();
    const throughput = this.throughput.rate();
    let eta = 0;
    if (!rec.phase1Done) {
      const net = (throughput || rec.copyRateBps) - dirtyRate;
      const remaining = rec.sizeBytes - copiedBytes + dirtyBytes;
      if (net > 0) eta = Math.ceil(remaining / net);
    }
    return {
      totalBytes: rec.sizeBytes,
      copiedBytes,
      dirtyBytes,
      dirtyRateBytesPerSec: dirtyRate,
      throughputBytesPerSec: throughput,
      pass: rec.pass,
      etaSeconds: eta,
      warning: rec.warning,
      recopiedAfterCrashBytes: rec.recopiedAfterCrashBytes,
      sentBytes: rec.sentBytes,
      verifiedBytes: this.state.countBytes(this.state.verified.count),
    };
  }
}

function mib(bytes: number): string {
  return (bytes / MiB).toFixed(1);
}
