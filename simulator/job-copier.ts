/**
 * How one job copies and checks blocks: worker tasks of runs of blocks,
 * under the job's, the array's and the slow-disk fault's bandwidth caps,
 * and verification of what landed against the hashes taken while copying.
 * The job's runner (job-runner.ts) decides what to copy when; the cutover
 * uses the same operations, unthrottled, while the share is frozen. What
 * the job knows about each block, and the worker operations on blocks,
 * are in block-state.ts.
 */
import type { Log } from '../lib/log.ts';
import { BlockState, Flight, expand } from './block-state.ts';
import type { BlockStore } from './blockstore.ts';
import type { CopyPool } from './copy-pool.ts';
import type { BlockDigest, Runs } from './copy-protocol.ts';
import type { Faults } from './faults.ts';
import type { JobRecord } from './job-record.ts';
import { RateMeter, TokenBucket } from './rates.ts';

/**
 * Under a bandwidth cap a worker task carries about this much of the cap's
 * rate (at most a chunk): the cap is paid before a task is handed out, so
 * with whole 8 MiB chunks at 1 MiB/s nothing would land for 8 s, then all of it.
 */
const PACE_MS = 250;

/** What a copier needs from the array. */
export interface CopierDeps {
  blocks: BlockStore;
  pool: CopyPool;
  faults: Faults;
  log: Log;
  /** How blocks are digested for verification. */
  blockDigest: BlockDigest;
  /** The array-wide cap. */
  arrayBucket: TokenBucket;
  /** The slow-disk fault's cap. */
  diskBucket: TokenBucket;
}

/** The copy and verification operations of one job. */
export class JobCopier {
  /** What the job knows about each block. */
  readonly state: BlockState;
  private readonly rec: JobRecord;
  private readonly deps: CopierDeps;
  private readonly bucket: TokenBucket;
  private readonly throughput = new RateMeter();
  /** Bytes that pass-1 tasks still in flight have landed: copied, though their blocks are marked so only when the task ends. */
  private landing = 0;
  private verifyCursor = 0;

  constructor(rec: JobRecord, deps: CopierDeps) {
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
  }

  private get log(): Log {
    return this.deps.log;
  }

  /** Bytes copied so far: blocks marked copied, plus what pass-1 tasks in flight have landed. */
  copiedBytes(): number {
    return Math.min(this.rec.sizeBytes, this.state.countBytes(this.state.copied.count) + this.landing);
  }

  /** Bytes per second landing on the destination, measured. */
  throughputRate(): number {
    return this.throughput.rate();
  }

  /**
   * Copies `runs` in one worker task, counting the bytes sent as they land.
   * Pass 1 (`firstPass`) skips zero runs, and its landed bytes count as
   * copied while the task runs.
   */
  async copyRuns(runs: Runs, options: { firstPass: boolean }): Promise<number> {
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
  taskBlocks(): number {
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
  async verifySweep(signal: AbortSignal): Promise<boolean> {
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

  /** Waits until every cap lets `bytes` through; when `signal` aborts, gives them back. */
  async throttle(bytes: number, signal: AbortSignal): Promise<void> {
    this.deps.diskBucket.setRate(this.deps.faults.value.copyBandwidthBytesPerSec);
    await this.bucket.take(bytes, signal);
    await this.deps.arrayBucket.take(bytes, signal);
    await this.deps.diskBucket.take(bytes, signal);
    // Stopped: the caller sends nothing. Without the refund the cutover's first catch-up pass, right after the loop
    // stops, waited out the debt of a sweep batch that was never read (~0.3 s at 50 MiB/s).
    if (signal.aborted) for (const bucket of [this.bucket, this.deps.arrayBucket, this.deps.diskBucket]) bucket.refund(bytes);
  }
}
