/**
 * The copy loop of one job: pass 1 (a sequential copy in chunks), later
 * passes (the blocks written meanwhile), a background verification sweep,
 * and after a restart the rebuild of the dirty set that was lost with the
 * process; and who owns the job at a time (the loop, a cancel or a
 * cutover). The cutover (cutover.ts) asks the runner for what it needs
 * through CutoverEngine, with the loop stopped and the share frozen. How
 * blocks are copied and verified is in job-copier.ts; what the job knows
 * about each block, and the worker operations on blocks, in block-state.ts.
 *
 * Dirty tracking is race-free against the workers because a write marks its
 * blocks after its pwrite completed and before it is acknowledged, and pass 1
 * persists and publishes the end of the dispatched range before a worker can
 * read a chunk: a write that lands before the worker reads is copied by it, a
 * write that lands after is marked dirty, and one that lands in between is
 * both (which is only wasteful).
 */
import type { Log } from '../lib/log.ts';
import { Flight } from './block-state.ts';
import type { BlockState } from './block-state.ts';
import type { CutoverEngine } from './cutover.ts';
import { ArrayError } from './errors.ts';
import type { Faults } from './faults.ts';
import { JobCopier } from './job-copier.ts';
import type { CopierDeps } from './job-copier.ts';
import { transition } from './job-record.ts';
import type { JobRecord, TransitionObserver } from './job-record.ts';
import type { MetaStore } from './metadata.ts';
import { keys } from './model.ts';
import { RateMeter, Wakeup, sleep } from './rates.ts';

const MiB = 1024 * 1024;
/** While syncing, wait this long for small dirty sets to gather before a pass (many tiny passes cost more than they save). */
const SYNC_PACE_MS = 50;
/** How often an idle syncing job looks around when no write wakes it. */
const IDLE_WAIT_MS = 1000;
/** Pass 1 starts an fdatasync of the destination in the background after every this many bytes copied. */
const FLUSH_EVERY_BYTES = 64 * MiB;

/** What a runner needs from the array. */
export interface RunnerDeps extends CopierDeps {
  store: MetaStore;
  faults: Faults;
  maxPasses: number;
  maxSentFactor: number;
  /** The change stream, told of phase 1 done. */
  events: TransitionObserver;
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

/** One active job's copy loop, and who owns the job (the loop, a cancel, or a cutover). */
export class JobRunner implements CutoverEngine {
  readonly rec: JobRecord;
  private readonly deps: RunnerDeps;
  private readonly copier: JobCopier;
  private readonly dirtyMeter = new RateMeter();
  private readonly wake = new Wakeup();
  /** Notified when the rebuild after a restart is done. */
  private readonly rebuilt = new Wakeup();
  private loop: Promise<void> | null = null;
  private loopAbort: AbortController | null = null;
  /** True until the dirty set lost in a restart has been rebuilt. */
  private needsRebuild: boolean;
  private precopyStopped = false;
  private budgetPass = 0;
  private budgetSent = 0;
  /** Pass 1's background flush of the destination: the one running, where it started, and the first failure. */
  private flushing: Promise<void> | null = null;
  private flushedUpTo = 0;
  private flushError: unknown = null;
  /** A cancel or a cutover that owns the job now; the other must not start. */
  private op: 'cancel' | 'cutover' | null = null;
  /** The running cutover, for callers that join it. */
  private cutoverRun: Promise<void> | null = null;

  constructor(rec: JobRecord, deps: RunnerDeps, options: { resumed: boolean }) {
    this.rec = rec;
    this.deps = deps;
    this.copier = new JobCopier(rec, deps);
    this.needsRebuild = options.resumed && rec.dispatchedEnd > 0;
    if (options.resumed && rec.dispatchedEnd === 0) rec.cursor = 0;
  }

  /** What the job knows about each block. */
  private get state(): BlockState {
    return this.copier.state;
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

  // ------------------------------------------------------------ owners

  /** The cutover running now, for callers that join it; null when none runs. */
  get runningCutover(): Promise<void> | null {
    return this.cutoverRun;
  }

  /**
   * Makes the job the cutover's and runs `attempt`, or joins the attempt
   * already running. Throws WRONG_STATE while a cancel owns the job.
   */
  cutover(attempt: () => Promise<void>): Promise<void> {
    if (this.cutoverRun) return this.cutoverRun;
    if (this.op === 'cancel') throw new ArrayError('WRONG_STATE', `job ${this.rec.jobId} is being cancelled`);
    this.op = 'cutover';
    this.cutoverRun = attempt().finally(() => {
      this.op = null;
      this.cutoverRun = null;
    });
    return this.cutoverRun;
  }

  /** Makes the job the cancel's and stops the loop. Throws WRONG_STATE while a cutover owns the job. */
  async stopForCancel(): Promise<void> {
    if (this.op === 'cutover') throw new ArrayError('WRONG_STATE', `job ${this.rec.jobId} is CUTTING_OVER; wait for DONE or SYNCING`);
    this.op = 'cancel';
    await this.stopLoop();
  }

  // ----------------------------------------------- what the cutover asks

  /** CutoverEngine: waits for a restart's rebuild of the dirty set (the cutover cannot know what the destination lacks before), then stops the loop. */
  async stopForCutover(): Promise<void> {
    while (this.needsRebuild && this.rec.state === 'CUTTING_OVER') await this.rebuilt.wait(1000);
    await this.stopLoop();
  }

  /** CutoverEngine: takes the final delta, every dirty block plus any the job holds no hash for; the dirty set is empty after. */
  takeFinalDelta(): number[] {
    const { state } = this;
    const final = new Set(state.dirty.drain());
    for (const b of state.hashed.list(0, state.count, Infinity, false)) final.add(b);
    return [...final].sort((a, b) => a - b);
  }

  /** CutoverEngine: the blocks not verified yet. */
  unverified(): number[] {
    return this.state.verified.list(0, this.state.count, Infinity, false);
  }

  /** CutoverEngine: verifies `blocks` against their hashes (no retry, no marking: the cutover decides). */
  verify(blocks: number[], signal: AbortSignal): Promise<{ bytes: number; mismatched: number[] }> {
    return this.state.verify(blocks, signal);
  }

  /** CutoverEngine: puts blocks back into the dirty set (an attempt that rolled back). */
  markDirty(blocks: Iterable<number>): void {
    for (const b of blocks) this.state.dirty.set(b);
  }

  /** CutoverEngine: copies a list of blocks (see JobCopier.copyBlocks). */
  copyBlocks(blocks: number[], options: { throttle: boolean; signal?: AbortSignal }): Promise<{ bytes: number; leftover: number[] }> {
    return this.copier.copyBlocks(blocks, options);
  }

  /** CutoverEngine: verifies every block that can be verified now (see JobCopier.verifyBacklog). */
  verifyBacklog(signal: AbortSignal): Promise<number> {
    return this.copier.verifyBacklog(signal);
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
      if (this.rec.phase1Done && !signal.aborted && (await this.copier.verifySweep(signal))) worked = true;
      if (!worked) await this.wake.wait(IDLE_WAIT_MS, signal);
    }
  }

  /** While syncing, let small dirty sets gather for SYNC_PACE_MS, verifying the destination meanwhile. */
  private async pace(signal: AbortSignal): Promise<void> {
    const until = Date.now() + SYNC_PACE_MS;
    while (Date.now() < until && !signal.aborted && (await this.copier.verifySweep(signal)));
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
      const to = Math.min(this.blockCount, from + this.copier.taskBlocks());
      await this.copier.throttle(this.state.countBytes(to) - this.state.countBytes(from), signal);
      if (signal.aborted) break;
      await flight.slot(this.state.parallelism);
      if (signal.aborted || flight.error) break;
      // Publish, then persist, then hand to a worker: see the note at the top of this file.
      rec.dispatchedEnd = to;
      await this.save();
      const entry = { end: to, done: false };
      pending.push(entry);
      flight.add(
        this.copier.copyRuns([[from, to - from]], { firstPass: true }).then(async (bytes) => {
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
    const { bytes, leftover } = await this.copier.copyBlocks(blocks, { throttle: true, signal });
    for (const b of leftover) this.state.dirty.set(b);
    // Flush after every pass, so that the cutover's fdatasync only has the final delta to write.
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
    transition(rec, 'SYNCING', this.deps.events); // Phase 1 done.
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
    const copiedBytes = this.copier.copiedBytes();
    const dirtyBytes = this.dirtyBytes();
    const dirtyRate = this.dirtyMeter.rate();
    const throughput = this.copier.throughputRate();
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

/** Progress of a job without a runner (finished, or a tombstone). */
export function finishedProgress(rec: JobRecord): ProgressView {
  const done = rec.state === 'DONE';
  return {
    totalBytes: rec.sizeBytes,
    copiedBytes: done ? rec.sizeBytes : Math.min(rec.sizeBytes, rec.cursor * rec.blockSizeBytes),
    dirtyBytes: 0,
    dirtyRateBytesPerSec: 0,
    throughputBytesPerSec: 0,
    pass: rec.pass,
    etaSeconds: 0,
    warning: rec.warning,
    recopiedAfterCrashBytes: rec.recopiedAfterCrashBytes,
    sentBytes: rec.sentBytes,
    verifiedBytes: done ? rec.sizeBytes : 0,
  };
}
