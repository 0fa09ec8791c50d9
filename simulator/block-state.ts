/**
 * What a job knows about each block of its share, and the worker-thread
 * operations that change it: copy (source -> destination, keeping a digest
 * per block written), verify (read the destination back against those
 * hashes), and compare (hash both sides, to rebuild the dirty set after a
 * restart).
 *
 * Per block: dirty (written on the source since it was copied), copied
 * (pass 1's progress), hashed (we know what the destination should hold),
 * verified (the destination was read back and matched), in flight (a worker
 * is copying it), and a generation bumped by every write and every copy:
 * a hash computed by a worker is only trusted if the generation did not
 * move while it worked.
 */
import { Bitmap, toRuns } from './bitmap.ts';
import type { CopyPool } from './copy-pool.ts';
import { DIGEST_BYTES } from './copy-protocol.ts';
import type { BlockDigest, Runs } from './copy-protocol.ts';

/** Tasks kept in flight per worker: a second one queued means a worker never waits for the main thread to dispatch. */
export const QUEUE_PER_WORKER = 2;

/** How often a copy task tells the bytes it landed so far (progress and throughput move within a chunk). */
export const LANDED_EVERY_MS = 50;

/** Worker tasks in flight, at most `max` at once; remembers the first failure. */
export class Flight {
  private readonly tasks = new Set<Promise<void>>();
  /** The first failure of any task. */
  error: unknown = null;

  /** Tracks a task. */
  add(task: Promise<void>): void {
    const tracked: Promise<void> = task
      .catch((err: unknown) => {
        this.error ??= err;
      })
      .finally(() => this.tasks.delete(tracked));
    this.tasks.add(tracked);
  }

  /** Resolves once fewer than `max` tasks are in flight. */
  async slot(max: number): Promise<void> {
    while (this.tasks.size >= max) await Promise.race(this.tasks);
  }

  /** Resolves when every task has settled; rejects with the first failure. */
  async drain(): Promise<void> {
    while (this.tasks.size > 0) await Promise.all([...this.tasks]);
    if (this.error) throw this.error;
  }
}

/** Where a job's data is and how it is cut up. */
export interface BlockLayout {
  sizeBytes: number;
  blockSizeBytes: number;
  chunkSizeBytes: number;
  srcPath: string;
  dstPath: string;
  /** How blocks are digested for verification. */
  digest: BlockDigest;
}

/** The per-block state of one job. */
export class BlockState {
  /** Blocks in the share. */
  readonly count: number;
  /** Blocks per worker task. */
  readonly chunkBlocks: number;
  readonly dirty: Bitmap;
  readonly copied: Bitmap;
  readonly hashed: Bitmap;
  readonly verified: Bitmap;
  private readonly inflight: Bitmap;
  private readonly hashes: Buffer;
  /** Bytes per entry of `hashes`. */
  private readonly hashBytes: number;
  private readonly gen: Uint32Array;
  private readonly layout: BlockLayout;
  private readonly pool: CopyPool;

  constructor(layout: BlockLayout, pool: CopyPool) {
    this.layout = layout;
    this.pool = pool;
    this.count = Math.ceil(layout.sizeBytes / layout.blockSizeBytes);
    this.chunkBlocks = Math.max(1, Math.floor(layout.chunkSizeBytes / layout.blockSizeBytes));
    this.dirty = new Bitmap(this.count);
    this.copied = new Bitmap(this.count);
    this.hashed = new Bitmap(this.count);
    this.verified = new Bitmap(this.count);
    this.inflight = new Bitmap(this.count);
    this.hashBytes = DIGEST_BYTES[layout.digest];
    this.hashes = Buffer.alloc(this.count * this.hashBytes);
    this.gen = new Uint32Array(this.count);
  }

  /** Tasks to keep in flight for one job. */
  get parallelism(): number {
    return this.pool.size * QUEUE_PER_WORKER;
  }

  /** The bytes of block `b` (the last one may be short). */
  blockBytes(b: number): number {
    return Math.min(this.layout.blockSizeBytes, this.layout.sizeBytes - b * this.layout.blockSizeBytes);
  }

  /** The bytes of some blocks. */
  bytesOf(blocks: Iterable<number>): number {
    let n = 0;
    for (const b of blocks) n += this.blockBytes(b);
    return n;
  }

  /** Bytes of `n` blocks, clipped to the share's size. */
  countBytes(n: number): number {
    return Math.min(this.layout.sizeBytes, n * this.layout.blockSizeBytes);
  }

  /** Packs ascending blocks into worker tasks of at most `maxBlocks` (default: one chunk) each. */
  tasks(blocks: readonly number[], maxBlocks = this.chunkBlocks): Runs[] {
    return groupRuns(toRuns(blocks, maxBlocks), maxBlocks);
  }

  /**
   * A write landed on the source at [offset, offset + length): bump the
   * generations, clear verification, and mark dirty the blocks below
   * `dispatchedEnd` (pass 1 copies the others later anyway). Returns the
   * bytes newly dirtied.
   */
  written(offset: number, length: number, dispatchedEnd: number): number {
    const bs = this.layout.blockSizeBytes;
    const first = Math.floor(offset / bs);
    const last = Math.min(this.count - 1, Math.floor((offset + length - 1) / bs));
    let newly = 0;
    for (let b = first; b <= last; b++) {
      this.gen[b]!++;
      this.verified.clear(b);
      if (b < dispatchedEnd && this.dirty.set(b)) newly += this.blockBytes(b);
    }
    return newly;
  }

  /**
   * Copies `runs` in one worker task and records the hash of every block
   * written. Resolves with the bytes read; `onLanded`, when given, is told
   * bytes as they land before that (the blocks count as copied only at the end).
   */
  async copy(runs: Runs, skipZero: boolean, onLanded?: (bytes: number) => void): Promise<number> {
    const blocks = expand(runs);
    for (const b of blocks) {
      this.inflight.set(b);
      this.gen[b]!++;
    }
    try {
      const { sizeBytes, blockSizeBytes, srcPath, dstPath, digest } = this.layout;
      const req = { src: srcPath, dst: dstPath, runs, blockSize: blockSizeBytes, fileSize: sizeBytes, skipZero, digest };
      const res = await (onLanded ? this.pool.copy({ ...req, progressMs: LANDED_EVERY_MS }, onLanded) : this.pool.copy(req));
      const hashes = Buffer.from(res.hashes);
      const n = this.hashBytes;
      blocks.forEach((b, i) => {
        hashes.copy(this.hashes, b * n, i * n, (i + 1) * n);
        this.hashed.set(b);
        this.verified.clear(b);
        this.copied.set(b);
        this.gen[b]!++;
      });
      return res.bytes;
    } finally {
      for (const b of blocks) this.inflight.clear(b);
    }
  }

  /**
   * Reads `blocks` back from the destination and compares them with the
   * hashes kept from the copy. Matching blocks become verified; blocks
   * touched meanwhile are skipped; the others are returned. Stops
   * dispatching when `signal` aborts (the tasks in flight finish).
   */
  async verify(blocks: readonly number[], signal?: AbortSignal): Promise<{ bytes: number; mismatched: number[] }> {
    const flight = new Flight();
    const mismatched: number[] = [];
    let bytes = 0;
    for (const runs of this.tasks(blocks)) {
      if (signal?.aborted) break;
      await flight.slot(this.parallelism);
      if (flight.error || signal?.aborted) break;
      flight.add(
        this.hashTask(runs, [this.layout.dstPath]).then(({ list, gens, hashes: [got] }) => {
          const n = this.hashBytes;
          list.forEach((b, i) => {
            if (this.gen[b] !== gens[i] || !this.hashed.has(b)) return;
            if (got!.compare(this.hashes, b * n, (b + 1) * n, i * n, (i + 1) * n) === 0) {
              this.verified.set(b);
              bytes += this.blockBytes(b);
            } else {
              mismatched.push(b);
            }
          });
        }),
      );
    }
    await flight.drain();
    return { bytes, mismatched };
  }

  /**
   * Hashes source and destination over `runs`. Blocks that match become
   * copied, hashed and verified (unless a write touched them meanwhile: it
   * marked them dirty itself); blocks that differ become dirty. Resolves with
   * the bytes newly marked dirty.
   */
  async compare(runs: Runs): Promise<number> {
    const { list, gens, hashes } = await this.hashTask(runs, [this.layout.srcPath, this.layout.dstPath]);
    const [src, dst] = hashes as [Buffer, Buffer];
    let differing = 0;
    const n = this.hashBytes;
    list.forEach((b, i) => {
      this.copied.set(b);
      const at = i * n;
      if (src.compare(dst, at, at + n, at, at + n) !== 0) {
        if (this.dirty.set(b)) differing += this.blockBytes(b);
      } else if (this.gen[b] === gens[i]) {
        src.copy(this.hashes, b * n, at, at + n);
        this.hashed.set(b);
        this.verified.set(b);
      }
    });
    return differing;
  }

  /**
   * Up to `limit` blocks from `from` on that could be verified now (hashed,
   * not verified, not dirty, not in flight). Scans on past unverified blocks
   * that cannot be verified yet, so an empty answer means there is none.
   */
  verifiable(from: number, limit: number): number[] {
    const out: number[] = [];
    for (let at = from; out.length < limit && at < this.count; ) {
      const unverified = this.verified.list(at, this.count, limit, false);
      if (unverified.length === 0) break;
      for (const b of unverified) if (out.length < limit && this.hashed.has(b) && !this.dirty.has(b) && !this.inflight.has(b)) out.push(b);
      at = unverified[unverified.length - 1]! + 1;
    }
    return out;
  }


  private async hashTask(runs: Runs, paths: string[]): Promise<{ list: number[]; gens: number[]; hashes: Buffer[] }> {
    const list = expand(runs);
    const gens = list.map((b) => this.gen[b]!);
    const res = await this.pool.hash({ paths, runs, blockSize: this.layout.blockSizeBytes, fileSize: this.layout.sizeBytes, digest: this.layout.digest });
    return { list, gens, hashes: res.hashes.map((h) => Buffer.from(h)) };
  }
}

/** Every block index of `runs`, in order. */
export function expand(runs: Runs): number[] {
  const out: number[] = [];
  for (const [start, count] of runs) for (let b = start; b < start + count; b++) out.push(b);
  return out;
}

/** Packs runs into groups of at most `maxBlocks` blocks (one worker task each). */
export function groupRuns(runs: Runs, maxBlocks: number): Runs[] {
  const groups: Runs[] = [];
  let current: Runs = [];
  let size = 0;
  for (const run of runs) {
    if (size + run[1] > maxBlocks && current.length > 0) {
      groups.push(current);
      current = [];
      size = 0;
    }
    current.push(run);
    size += run[1];
  }
  if (current.length > 0) groups.push(current);
  return groups;
}
