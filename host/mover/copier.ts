/**
 * One pass of the host path: the extents that changed between two
 * snapshots, read from the source and written to the target in batches,
 * each batch verified on the target (flushTarget's CRC-32C of every range
 * against the CRC-32C of the bytes sent) before its end is reported as done.
 *
 * The pipeline is bounded: a migration reads one batch at a time while up
 * to `batchesInFlight` batches read before it are written and verified,
 * each on its own, and every batch in memory holds a slot of the daemon-wide
 * `memory` semaphore, so what ferryd holds does not grow with the share or
 * with the number of migrations. Bandwidth caps (the
 * migration's and the daemon's) are paid before each batch is read.
 */
import { crc32c } from '@node-rs/crc32';
import { FerryError, type Extent, type ExtentData } from '../../plugins/api/index.ts';
import type { TokenBucket } from '../../lib/rates.ts';
import type { Semaphore } from '../../lib/semaphore.ts';
import type { DataArgs, GuardedDataDestination, GuardedDataSource } from '../guard-data.ts';

/** How many changed extents one listChangedExtents page asks for. */
export const EXTENTS_PER_PAGE = 4096;

/** What a pass copies with. */
export interface PassContext {
  args: DataArgs;
  source: GuardedDataSource;
  destination: GuardedDataDestination;
  targetId: string;
  /** The most bytes one batch (one readExtents, one writeExtents) carries. */
  batchBytes: number;
  /** The migration's cap and the daemon's, each paid per batch. */
  buckets: TokenBucket[];
  /** How many of the migration's batches may be written at once (each verified on its own). */
  batchesInFlight: number;
  /** Batches in memory, daemon-wide. */
  memory: Semaphore;
  /** Aborts the pass (a pause, a cancel, the cutover's deadline, shutdown). */
  signal: AbortSignal;
}

/** What a pass is asked to copy. */
export interface PassRange {
  /** '' for a whole-share copy. */
  base: string;
  snapshot: string;
  /** Where in the changed extents to start (a resumed pass). */
  from: number;
  /** The share's size: the last page of changed extents ends there. */
  sizeBytes: number;
}

/** Called after each batch is on the target, verified: everything before `end` is done. */
export type OnBatch = (end: number, bytes: number) => Promise<void> | void;

/** What a pass copied. */
export interface PassResult {
  bytes: number;
  batches: number;
}

/** The changed extents of a pass from `from` on, grouped into batches of at most `batchBytes`. */
async function* batches(ctx: PassContext, range: PassRange): AsyncGenerator<Extent[]> {
  let batch: Extent[] = [];
  let size = 0;
  let offset = range.from;
  for (;;) {
    const page = await ctx.source.listChangedExtents(
      { ...ctx.args, baseSnapshotId: range.base, snapshotId: range.snapshot, startOffset: offset, maxExtents: EXTENTS_PER_PAGE },
      ctx.signal,
    );
    for (const extent of page.extents) {
      let at = extent.offset;
      const end = extent.offset + extent.length;
      while (at < end) {
        const length = Math.min(end - at, ctx.batchBytes - size);
        batch.push({ offset: at, length });
        size += length;
        at += length;
        if (size === ctx.batchBytes) {
          yield batch;
          batch = [];
          size = 0;
        }
      }
    }
    // The guard made sure that nextOffset moves on; the share's size ends the listing.
    if (page.nextOffset >= range.sizeBytes) break;
    offset = page.nextOffset;
  }
  if (batch.length > 0) yield batch;
}

/** Reads one batch's bytes (checked by the guard, piece by piece). */
async function read(ctx: PassContext, range: PassRange, extents: Extent[]): Promise<ExtentData[]> {
  const pieces: ExtentData[] = [];
  for await (const piece of ctx.source.readExtents({ ...ctx.args, snapshotId: range.snapshot, extents }, ctx.signal)) pieces.push(piece);
  return pieces;
}

/** The CRC-32C of each extent, folded from the pieces that cover it (the guard made sure they cover each exactly, in order). */
function rangeDigests(extents: Extent[], pieces: ExtentData[]): number[] {
  const out: number[] = [];
  let p = 0;
  for (const extent of extents) {
    let crc = 0;
    let covered = 0;
    while (covered < extent.length) {
      const piece = pieces[p++]!;
      crc = crc32c(piece.data, crc);
      covered += piece.data.length;
    }
    out.push(crc);
  }
  return out;
}

/** Writes one batch and verifies it on the target. */
async function write(ctx: PassContext, extents: Extent[], pieces: ExtentData[]): Promise<number> {
  async function* data(): AsyncGenerator<ExtentData> {
    yield* pieces;
  }
  await ctx.destination.writeExtents({ ...ctx.args, targetId: ctx.targetId, data: data() }, ctx.signal);
  const { digests } = await ctx.destination.flushTarget({ ...ctx.args, targetId: ctx.targetId, ranges: extents }, ctx.signal);
  const expected = rangeDigests(extents, pieces);
  for (const [i, digest] of digests.entries()) {
    if (digest.crc32c !== expected[i]) {
      const e = extents[i]!;
      throw new FerryError('DATA_LOSS', `the target holds other bytes than were written at ${e.offset}+${e.length} (CRC-32C ${digest.crc32c.toString(16)}, sent ${expected[i]!.toString(16)})`);
    }
  }
  return extents.reduce((n, e) => n + e.length, 0);
}

/**
 * Copies the pass's changed extents from `range.from` on. `onBatch` is
 * called in order, after each batch and every one before it are verified
 * on the target, so the end it reports is always a prefix. Rejects with the
 * first failure (the pass resumes from the last batch reported), once every
 * batch under way has settled.
 */
export async function copyPass(ctx: PassContext, range: PassRange, onBatch: OnBatch): Promise<PassResult> {
  const depth = Math.max(1, ctx.batchesInFlight);
  /** Batches being written, oldest first; each settles once it is reported, or has failed. */
  const inFlight: Promise<void>[] = [];
  let failure: { err: unknown; batch: number } | undefined;
  /** The report of the batch before: batches are reported in order, so the end reported is a prefix. */
  let reported: Promise<void> = Promise.resolve();
  let index = 0;
  const result: PassResult = { bytes: 0, batches: 0 };
  const check = () => {
    if (failure) throw failure.err;
  };
  try {
    for await (const extents of batches(ctx, range)) {
      check();
      const size = extents.reduce((n, e) => n + e.length, 0);
      for (const bucket of ctx.buckets) await bucket.take(size, ctx.signal);
      if (ctx.signal.aborted) throw ctx.signal.reason;
      while (inFlight.length >= depth) await inFlight.shift();
      check();
      await ctx.memory.acquire();
      let pieces: ExtentData[];
      try {
        pieces = await read(ctx, range, extents);
      } catch (err) {
        ctx.memory.release();
        throw err;
      }
      const batch = index++;
      const end = extents.at(-1)!.offset + extents.at(-1)!.length;
      const written = write(ctx, extents, pieces).finally(() => ctx.memory.release());
      const before = reported;
      reported = (async () => {
        const bytes = await written;
        await before;
        // A batch before this one failed: the pass resumes from there, and this one is copied again.
        if (failure && failure.batch < batch) return;
        result.bytes += bytes;
        result.batches++;
        await onBatch(end, bytes);
      })().catch((err: unknown) => {
        if (!failure || batch < failure.batch) failure = { err, batch };
      });
      inFlight.push(reported);
    }
    await reported;
    check();
  } finally {
    // A failure while reading: the writes in flight still finish (or fail) before the pass answers.
    await Promise.allSettled(inFlight);
  }
  return result;
}
