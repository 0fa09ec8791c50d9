/**
 * The cutover (phase 2) of one job, in two stages.
 *
 * Catching up, unfrozen: the copy loop stops; what the background sweep has
 * not verified yet is verified; the dirty set is copied again in passes for
 * as long as each pass shrinks it well, until it is what a small share of
 * the window copies. Writes keep landing on the source meanwhile. However
 * soon after PHASE1_DONE the cutover is asked for (then nothing is verified
 * yet, and the dirty set may be half a window's worth), the bulk work is
 * done here and not while writes wait.
 *
 * The freeze, against the window's deadline: freeze writes -> wait for
 * writes in flight -> copy the final dirty blocks -> fdatasync the
 * destination -> verify what is unverified (the final delta) -> COMMIT
 * POINT (one synced metadata batch moves the share to its destination) ->
 * release the waiting writes onto the destination -> delete the source.
 *
 * Under CUTOVER_ACTION_ABORT the freeze ends at the deadline whatever step
 * is running: the gate is released at once (writes resume on the source),
 * the step's work in flight settles unfrozen, the final delta goes back into
 * the dirty set, and the job returns to SYNCING. Only the synced commit
 * batch is never cut short: once begun it may already be durable. Under
 * CUTOVER_ACTION_FORCE the freeze finishes however long it takes.
 *
 * Before the commit point the source is authoritative, so anything that
 * goes wrong rolls back: the window running out under ABORT, a verification
 * that fails twice, an I/O error. After the commit point everything rolls
 * forward, also across a restart.
 */
import { performance } from 'node:perf_hooks';
import type { Log } from '../lib/log.ts';
import type { BlockStore } from './blockstore.ts';
import type { ShareGate } from './datapath.ts';
import type { Faults } from './faults.ts';
import { transition } from './job-record.ts';
import type { JobRecord, TransitionObserver } from './job-record.ts';
import type { MetaStore } from './metadata.ts';
import type { Pools } from './pools.ts';
import { keys } from './model.ts';
import type { CatchUpMeasurements, ShareRecord } from './model.ts';
import { sleep } from './rates.ts';

/** Catching up makes at most this many passes. */
const CATCH_UP_PASSES = 10;
/** Catching up stops once a pass leaves more than this share of the dirty set it copied: the writes keep pace with the copy. */
const CATCH_UP_SHRINK = 0.75;
/** Catching up is done once the dirty set is what this share of the window copies at the measured copy rate. */
const CATCH_UP_WINDOW_SHARE = 0.02;

/** Thrown inside the cutover to roll it back to SYNCING. */
class CutoverAbort extends Error {
  override name = 'CutoverAbort';
}

/** What the cutover asks of the job's copy engine (its JobRunner), with the copy loop stopped. */
export interface CutoverEngine {
  readonly rec: JobRecord;
  /** Persists the job record. */
  save(sync: boolean): Promise<void>;
  /** Waits until the job knows what the destination lacks (after a restart), then stops the copy loop. */
  stopForCutover(): Promise<void>;
  /** Starts the copy loop again (after an attempt rolled back). */
  startLoop(): void;
  /** Dirty bytes now. */
  dirtyBytes(): number;
  /** Copies the dirty set once, throttled; resolves with the bytes copied. */
  dirtyPass(signal: AbortSignal): Promise<number>;
  /** Verifies whatever can be verified now, at the slow-disk fault's pace only; resolves with the bytes verified. */
  verifyBacklog(signal: AbortSignal): Promise<number>;
  /** Takes every dirty block and every block without a hash, sorted; the dirty set is empty after. */
  takeFinalDelta(): number[];
  /** Copies blocks; with `throttle`, under the caps. Stops dispatching when `signal` aborts and returns what it did not reach. */
  copyBlocks(blocks: number[], options: { throttle: boolean; signal?: AbortSignal }): Promise<{ bytes: number; leftover: number[] }>;
  /** The blocks not verified yet. */
  unverified(): number[];
  /** Verifies blocks against their copy hashes. */
  verify(blocks: number[], signal: AbortSignal): Promise<{ bytes: number; mismatched: number[] }>;
  /** Puts blocks back into the dirty set. */
  markDirty(blocks: Iterable<number>): void;
}

/** What the cutover needs from the array. */
export interface CutoverDeps {
  gate: ShareGate;
  share: ShareRecord;
  store: MetaStore;
  blocks: BlockStore;
  faults: Faults;
  log: Log;
  /** Capacity accounting: the switch moves the share's space and the job's. */
  pools: Pools;
  /** Aborted when the array closes: catching up stops, and the restart rolls the attempt back to SYNCING. */
  closing: AbortSignal;
  /** Deletes the source and marks the job DONE (also used when a restart finds a switched job). */
  finish(): Promise<void>;
  /** The change stream, told of the attempt's transitions. */
  events: TransitionObserver;
}

/**
 * Runs one cutover attempt. Resolves when the job is DONE or back in
 * SYNCING after an abort (or, if the array closes while catching up, with
 * the job left CUTTING_OVER for the restart to roll back); rejects (with
 * the gate released and the source authoritative) on an unexpected failure
 * before the commit point, which the caller turns into a failed job.
 */
export async function runCutover(runner: CutoverEngine, deps: CutoverDeps): Promise<void> {
  const { rec } = runner;
  const { gate, share, log } = deps;
  const attempt = rec.cutoverAttempts + 1;
  rec.cutoverAttempts = attempt;
  transition(rec, 'CUTTING_OVER', deps.events);
  await runner.save(true);

  await runner.stopForCutover();
  if (rec.state !== 'CUTTING_OVER') throw new Error(`job ${rec.jobId} failed before its cutover could freeze the share`);

  const caughtUp = await catchUp(runner, deps.closing);
  if (deps.closing.aborted) return;
  log.info({ job: rec.jobId, attempt, ...caughtUp, dirtyBytes: runner.dirtyBytes() }, 'cutover: caught up; freezing');

  const clock = new FreezeClock(rec.spec.maxDowntimeMs, rec.spec.cutoverAction === 'ABORT');
  // Every block this attempt copied or found wrong while frozen: given back to the dirty set if it rolls back.
  const touched: number[] = [];
  let finalDeltaBytes = 0;
  let verifiedBytes = 0;
  gate.freeze(rec.spec.nondisruptive ? 'wait' : 'reject');
  try {
    // Not awaited after an abort: once writes flow again, none in flight may never be true for long.
    await clock.run('waiting for writes in flight', () => gate.drained(), { settle: false });

    // The final delta: what is dirty, plus anything we hold no hash for (nothing, unless a restart intervened).
    const final = runner.takeFinalDelta();
    touched.push(...final);
    const delay = deps.faults.value.cutoverDelayMs;
    const copied = await clock.run('copying the final delta', async (signal) => {
      // The injected slow cutover: the final copy takes this much longer, after the dirty set was taken. Like an
      // fdatasync or a worker task in flight, it does not stop at the deadline: the freeze must end without it.
      if (delay > 0) await sleep(delay);
      return runner.copyBlocks(final, { throttle: false, signal });
    });
    finalDeltaBytes = copied.bytes;
    await clock.run('flushing the destination', () => deps.blocks.sync(rec.dest.fileId));

    // Catching up verified everything else, so this is the final delta.
    const unverified = runner.unverified();
    const first = await clock.run('verifying the destination', (signal) => runner.verify(unverified, signal));
    verifiedBytes += first.bytes;
    if (first.mismatched.length > 0) {
      log.warn({ job: rec.jobId, blocks: first.mismatched.length }, 'cutover: destination blocks failed verification; copying them again');
      touched.push(...first.mismatched);
      await clock.run('copying blocks that failed verification', (signal) => runner.copyBlocks(first.mismatched, { throttle: false, signal }));
      await clock.run('flushing the destination', () => deps.blocks.sync(rec.dest.fileId));
      const second = await clock.run('verifying the destination again', (signal) => runner.verify(first.mismatched, signal));
      verifiedBytes += second.bytes;
      if (second.mismatched.length > 0) {
        throw new CutoverAbort(`verification failed: ${second.mismatched.length} destination blocks differ from what was copied, twice; writes resumed on the source`);
      }
    }
    await deps.faults.crashIfAt('CUTOVER_BEFORE_SWITCH');
    clock.check('about to commit');
  } catch (err) {
    clock.stop();
    gate.release();
    // The freeze is over; what a cut-short step still has in flight must settle before the loop copies again.
    await clock.settled();
    runner.markDirty(touched);
    if (!(err instanceof CutoverAbort)) throw err;
    transition(rec, 'SYNCING', deps.events);
    rec.lastAbortReason = err.message;
    rec.lastAbortAttempt = attempt;
    await runner.save(true);
    runner.startLoop();
    log.warn({ job: rec.jobId, attempt, reason: err.message }, 'cutover aborted');
    return;
  }
  clock.stop();

  // COMMIT POINT: one synced batch moves the share and records the switch.
  share.backend = rec.dest.backend;
  share.pool = rec.dest.pool;
  share.fileId = rec.dest.fileId;
  if (!rec.spec.preserveMetadata) share.metadata = {};
  if (!rec.spec.preserveSnapshots) share.snapshots = 0;
  if (rec.spec.newShareType) share.shareType = rec.spec.newShareType;
  rec.switched = true;
  deps.pools.noteShare(share.shareId);
  deps.pools.noteJob(rec.jobId, rec);
  rec.pendingDelete = rec.source.fileId;
  rec.cutover = { freezeMs: clock.elapsed(), finalDeltaBytes, verifiedBytes, caughtUp };
  await deps.store.write(
    [
      { key: keys.share(share.shareId), value: share },
      { key: keys.job(rec.jobId), value: rec },
    ],
    { sync: true },
  );
  rec.cutover.freezeMs = clock.elapsed();
  gate.release();
  log.info({ job: rec.jobId, attempt, ...rec.cutover }, 'cutover committed');

  await deps.faults.crashIfAt('CUTOVER_AFTER_SWITCH');
  await deps.finish();
}

/**
 * Before the freeze: verify what the sweep has not, then copy the dirty set
 * while each pass shrinks it well, down to what CATCH_UP_WINDOW_SHARE of the
 * window copies. Each pass's blocks are verified right after it. When the
 * writes keep pace with the copy this stops early, and the freeze (bounded
 * by the window) decides.
 */
async function catchUp(runner: CutoverEngine, signal: AbortSignal): Promise<CatchUpMeasurements> {
  const { rec } = runner;
  const started = performance.now();
  const small = Math.max(rec.blockSizeBytes, (rec.copyRateBps * rec.spec.maxDowntimeMs * CATCH_UP_WINDOW_SHARE) / 1000);
  let verifiedBytes = await runner.verifyBacklog(signal);
  let copiedBytes = 0;
  let passes = 0;
  let before = runner.dirtyBytes();
  while (before > small && passes < CATCH_UP_PASSES && !signal.aborted) {
    copiedBytes += await runner.dirtyPass(signal);
    passes++;
    verifiedBytes += await runner.verifyBacklog(signal);
    const after = runner.dirtyBytes();
    if (after > before * CATCH_UP_SHRINK) break;
    before = after;
  }
  return { ms: performance.now() - started, passes, copiedBytes, verifiedBytes };
}

/**
 * The clock of one freeze. Under ABORT it fires at the window's deadline:
 * the step then running is abandoned (its work is told to stop dispatching
 * and is awaited later, unfrozen) and the attempt rolls back. Without a
 * deadline (FORCE) steps simply run to their end.
 */
class FreezeClock {
  private readonly t0 = performance.now();
  private readonly windowMs: number;
  private readonly expiry = new AbortController();
  private readonly expired: Promise<never>;
  private readonly timer: NodeJS.Timeout | undefined;
  private step = 'freezing';
  /** The abort, made when the deadline fired (so it names the step and the time of that moment). */
  private reason: CutoverAbort | null = null;
  private readonly running: Array<Promise<unknown>> = [];

  constructor(windowMs: number, bounded: boolean) {
    this.windowMs = windowMs;
    this.expired = new Promise<never>((_, reject) => this.expiry.signal.addEventListener('abort', () => reject(this.reason), { once: true }));
    this.expired.catch(() => undefined);
    if (bounded) {
      this.timer = setTimeout(() => {
        this.reason = this.abortNow();
        this.expiry.abort();
      }, windowMs);
    }
  }

  /** Milliseconds since the freeze began. */
  elapsed(): number {
    return performance.now() - this.t0;
  }

  /**
   * Runs one step: resolves with its result, or throws the abort the moment
   * the deadline fires. The work goes on, told by its signal to stop
   * dispatching; `settled` waits for it unless `settle` is false.
   */
  async run<T>(step: string, work: (signal: AbortSignal) => Promise<T>, options: { settle: boolean } = { settle: true }): Promise<T> {
    this.check(step);
    const pending = work(this.expiry.signal);
    if (options.settle) this.running.push(pending.catch(() => undefined));
    const result = await Promise.race([pending, this.expired]);
    this.check(step);
    return result;
  }

  /** Throws the abort if the deadline has fired; otherwise records `step` as the one running. */
  check(step: string): void {
    if (this.reason) throw this.reason;
    this.step = step;
  }

  /** No deadline from here on (the commit point, or the end). */
  stop(): void {
    clearTimeout(this.timer);
  }

  /** Resolves once the work of every step has ended, abandoned steps included. */
  async settled(): Promise<void> {
    await Promise.all(this.running);
  }

  private abortNow(): CutoverAbort {
    return new CutoverAbort(`cutover exceeded its ${this.windowMs} ms window (${this.elapsed().toFixed(1)} ms frozen, while ${this.step}); writes resumed on the source`);
  }
}
