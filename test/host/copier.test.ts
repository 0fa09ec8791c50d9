/**
 * The copier's pipeline on its own: batches written at once up to
 * batchesInFlight, reported strictly in order however their writes finish,
 * and a failed batch ending the pass with only the prefix before it
 * reported. Writes are held and let go by the test, in the order it picks.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { crc32c } from '@node-rs/crc32';
import { copyPass, type PassContext } from '../../host/mover/copier.ts';
import type { GuardedDataDestination, GuardedDataSource } from '../../host/guard-data.ts';
import { silentLog } from '../../lib/log.ts';
import { TokenBucket } from '../../lib/rates.ts';
import { Semaphore } from '../../lib/semaphore.ts';
import { FerryError, type Extent, type ExtentData, type MigrationSpec } from '../../plugins/api/index.ts';

const BATCH = 64 * 1024;
const SIZE = 6 * BATCH;

/** Writes wait until the test releases them (or fails them); the rest answers at once. */
function harness(batchesInFlight: number) {
  const share = Buffer.alloc(SIZE, 9);
  const target = Buffer.alloc(SIZE);
  const held = new Map<number, { go: () => void; fail: (err: Error) => void }>();
  let writing = 0;
  let mostWriting = 0;
  let arrived: (() => void) | undefined;
  const source = {
    listChangedExtents: async () => ({ extents: [{ offset: 0, length: SIZE }], nextOffset: SIZE }),
    readExtents: async function* ({ extents }: { extents: Extent[] }): AsyncGenerator<ExtentData> {
      for (const e of extents) {
        const data = share.subarray(e.offset, e.offset + e.length);
        yield { offset: e.offset, data, crc32c: crc32c(data) };
      }
    },
  } as unknown as GuardedDataSource;
  const destination = {
    writeExtents: async ({ data }: { data: AsyncIterable<ExtentData> }) => {
      const pieces: ExtentData[] = [];
      for await (const p of data) pieces.push(p);
      writing++;
      mostWriting = Math.max(mostWriting, writing);
      await new Promise<void>((go, fail) => {
        held.set(pieces[0]!.offset / BATCH, { go, fail });
        arrived?.();
      });
      writing--;
      for (const p of pieces) Buffer.from(p.data).copy(target, p.offset);
      return { writtenBytes: pieces.reduce((n, p) => n + p.data.length, 0) };
    },
    flushTarget: async ({ ranges }: { ranges: Extent[] }) => ({ digests: ranges.map((r) => ({ ...r, crc32c: crc32c(target.subarray(r.offset, r.offset + r.length)) })) }),
  } as unknown as GuardedDataDestination;
  const ctx: PassContext = {
    args: { migration: { id: 'm' } as MigrationSpec, log: silentLog() },
    source,
    destination,
    targetId: 'm-t',
    batchBytes: BATCH,
    batchesInFlight,
    buckets: [new TokenBucket(0)],
    memory: new Semaphore(16),
    signal: new AbortController().signal,
  };
  /** Resolves once `n` writes are held. */
  const heldCount = async (n: number) => {
    while (held.size < n) await new Promise<void>((resolve) => (arrived = resolve));
  };
  return { ctx, held, heldCount, target, share, most: () => mostWriting };
}

test('up to batchesInFlight batches are written at once, and reported in order however their writes finish', { timeout: 10_000 }, async () => {
  const h = harness(3);
  const reports: number[] = [];
  const pass = copyPass(h.ctx, { base: '', snapshot: 's1', from: 0, sizeBytes: SIZE }, (end) => void reports.push(end));
  await h.heldCount(3);
  // The third finishes first, then the second: nothing may be reported before the first is done.
  h.held.get(2)!.go();
  h.held.get(1)!.go();
  await new Promise((resolve) => setImmediate(resolve));
  assert.deepEqual(reports, [], 'a batch was reported before the one before it was on the target');
  h.held.get(0)!.go();
  await h.heldCount(6);
  for (const i of [5, 4, 3]) h.held.get(i)!.go();
  const result = await pass;
  assert.deepEqual(reports, [1, 2, 3, 4, 5, 6].map((n) => n * BATCH));
  assert.equal(h.most(), 3, 'more or fewer batches were written at once than batchesInFlight');
  assert.deepEqual(result, { bytes: SIZE, batches: 6 });
  assert.ok(h.target.equals(h.share));
});

test('a failed batch ends the pass after the batches under way settle; only the prefix before it is reported', { timeout: 10_000 }, async () => {
  const h = harness(3);
  const reports: number[] = [];
  const pass = copyPass(h.ctx, { base: '', snapshot: 's1', from: 0, sizeBytes: SIZE }, (end) => void reports.push(end));
  await h.heldCount(3);
  h.held.get(0)!.go();
  h.held.get(2)!.go();
  h.held.get(1)!.fail(new FerryError('UNAVAILABLE', 'the array went away'));
  await assert.rejects(pass, /the array went away/);
  assert.deepEqual(reports, [BATCH], 'a batch after the failed one was reported');
});
