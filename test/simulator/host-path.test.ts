/**
 * The host data path of the array and of its driver, over real gRPC on a
 * real array: a second array a job cannot reach, copy-on-write snapshots
 * (point in time under concurrent writes, changed extents, streamed reads
 * with CRC-32C), freezes with a lease, targets (CRC-checked writes,
 * checksums, promote, discard, retire), and a whole move of a share from
 * sim-1 to sim-2 while a workload writes to it.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { crc32c } from '@node-rs/crc32';
import { silentLog } from '../../lib/log.ts';
import { FerryError } from '../../plugins/api/index.ts';
import type { DataCall, Driver, Extent, ExtentData, MigrationSpec } from '../../plugins/api/index.ts';
import { arrayCodeOf } from '../../plugins/simulator/client.ts';
import { createDriver } from '../../plugins/simulator/index.ts';
import { TWO_ARRAYS, dataFiles, defer, filledShare, pattern, rejectsWith, serveArray, sha256 } from './helpers.ts';

const KiB = 1024;
const MiB = 1024 * KiB;
const BLOCK = 4 * KiB;

async function driverFor(t: { after(fn: () => unknown): void }, endpoint: string, backend: string): Promise<Driver> {
  const driver = await createDriver({ backend, options: { endpoint }, daemonAddress: 'unused:1', log: silentLog() });
  defer(t, () => driver.close?.());
  return driver;
}

function spec(shareId: string, extra: Partial<MigrationSpec> = {}): MigrationSpec {
  return {
    id: `m-${shareId}`,
    source: { backend: 'alpha', shareId },
    destination: { backend: 'gamma', pool: 'iron' },
    writable: true,
    nondisruptive: true,
    preserveMetadata: true,
    preserveSnapshots: false,
    newShareType: '',
    maxBandwidthBytesPerSec: 0,
    maxDowntimeMs: 500,
    cutoverAction: 'abort',
    dataPath: 'host',
    ...extra,
  };
}

function dataCall(migration: MigrationSpec, signal = new AbortController().signal): DataCall {
  return { migration, signal, log: silentLog() };
}

async function rejectsCode(promise: Promise<unknown>, code: string, message?: RegExp): Promise<FerryError> {
  let caught: unknown;
  await assert.rejects(promise, (err: unknown) => {
    caught = err;
    assert.ok(err instanceof FerryError, `a FerryError, got ${String(err)}`);
    assert.equal(err.code, code, err.message);
    if (message) assert.match(err.message, message);
    return true;
  });
  return caught as FerryError;
}

/** Reads extents of a snapshot through the driver, checking each piece's size, CRC and place; answers the bytes. */
async function readSnapshot(driver: Driver, m: MigrationSpec, snapshotId: string, extents: Extent[]): Promise<Buffer> {
  const parts: Buffer[] = [];
  let want = 0;
  let extent = 0;
  let at = extents[0]?.offset ?? 0;
  for await (const piece of driver.dataSource!.readExtents({ ...dataCall(m), snapshotId, extents })) {
    assert.ok(piece.data.length > 0 && piece.data.length <= MiB, `a piece of ${piece.data.length} bytes`);
    assert.equal(piece.crc32c, crc32c(Buffer.from(piece.data)), `the CRC-32C of the piece at ${piece.offset}`);
    assert.equal(piece.offset, at, 'pieces cover the extents in order, exactly');
    parts.push(Buffer.from(piece.data));
    at += piece.data.length;
    want += piece.data.length;
    if (at === extents[extent]!.offset + extents[extent]!.length) at = extents[++extent]?.offset ?? at;
  }
  assert.equal(extent, extents.length, 'every extent was read to its end');
  assert.equal(want, extents.reduce((n, e) => n + e.length, 0));
  return Buffer.concat(parts);
}

/** Every changed extent between two snapshots, page by page (`pageSize` extents a page). */
async function changedExtents(driver: Driver, m: MigrationSpec, baseSnapshotId: string, snapshotId: string, size: number, pageSize = 1000): Promise<Extent[]> {
  const out: Extent[] = [];
  let startOffset = 0;
  for (;;) {
    const page = await driver.dataSource!.listChangedExtents({ ...dataCall(m), baseSnapshotId, snapshotId, startOffset, maxExtents: pageSize });
    assert.ok(page.extents.length <= pageSize);
    out.push(...page.extents);
    assert.ok(page.nextOffset > startOffset || page.extents.length === 0, 'each page moves on');
    startOffset = page.nextOffset;
    if (startOffset >= size) return out;
  }
}

/** The blocks `extents` cover. */
function blocksOf(extents: Extent[]): Set<number> {
  const out = new Set<number>();
  for (const e of extents) for (let b = Math.floor(e.offset / BLOCK); b * BLOCK < e.offset + e.length; b++) out.add(b);
  return out;
}

async function* pieces(content: Buffer, offset: number, length: number, corrupt = -1): AsyncGenerator<ExtentData> {
  for (let at = offset, i = 0; at < offset + length; at += MiB, i++) {
    const data = content.subarray(at, Math.min(offset + length, at + MiB));
    yield { offset: at, data, crc32c: i === corrupt ? crc32c(data) ^ 1 : crc32c(data) };
  }
}

describe('a second array', () => {
  test('ListBackends names each backend\'s array; a job to another array is refused FAILED_PRECONDITION naming both; the driver calls it unreachable', async (t) => {
    const { client, address } = await serveArray(t, { config: TWO_ARRAYS });
    const { backends } = await client.call('ListBackends');
    assert.deepEqual(backends.map((b: { name: string; array: string }) => [b.name, b.array]), [['alpha', 'sim-1'], ['beta', 'sim-1'], ['gamma', 'sim-2']]);
    await client.call('CreateShare', { shareId: 's1', backend: 'alpha', pool: 'gold', sizeBytes: MiB });
    const err = await rejectsWith(client.call('StartJob', { jobId: 'j1', shareId: 's1', destBackend: 'gamma', destPool: 'iron' }), grpc.status.FAILED_PRECONDITION, /gamma is on array sim-2.*s1 on array sim-1/);
    assert.equal(arrayCodeOf(err), 'OTHER_ARRAY');

    const driver = await driverFor(t, address, 'alpha');
    await rejectsCode(driver.start({ ...dataCall(spec('s1', { dataPath: 'driver' })), checkpoint: null }), 'FAILED_PRECONDITION', /sim-2/);
    const check = await driver.checkCompatibility(dataCall(spec('s1', { dataPath: 'driver' })));
    assert.equal(check.destinationReachable, false);
    assert.deepEqual(check.reasons, []);
    assert.equal(check.destinationFreeBytes, 64 * MiB);
    // The destination's own driver answers for its pools: no NOT_FOUND from the source's.
    const noPool = await driver.checkCompatibility(dataCall(spec('s1', { dataPath: 'driver', destination: { backend: 'gamma', pool: 'lead' } })));
    assert.equal(noPool.destinationReachable, false);
    assert.ok(driver.dataSource && driver.dataDestination, 'the driver offers both halves of the host path');
  });
});

describe('snapshots', () => {
  test('a snapshot taken while writers write holds, for every block, a version between the last acknowledged before the call and the last issued before the answer', async (t) => {
    const { client, address } = await serveArray(t, { config: TWO_ARRAYS });
    const size = 2 * MiB;
    const blocks = size / BLOCK;
    await client.call('CreateShare', { shareId: 's1', backend: 'alpha', pool: 'gold', sizeBytes: size });
    const driver = await driverFor(t, address, 'alpha');
    const m = spec('s1');
    const acked = new Array<number>(blocks).fill(0);
    const issued = new Array<number>(blocks).fill(0);
    const content = (b: number, v: number) => (v === 0 ? Buffer.alloc(BLOCK) : pattern(`${b}:${v}`, BLOCK));
    let stop = false;
    let writes = 0;
    // Eight lanes, each on its own blocks, so a block never has two writes in flight.
    const lanes = Array.from({ length: 8 }, async (_, lane) => {
      for (let i = 0; !stop; i++) {
        const b = lane + 8 * ((i * 7 + lane) % (blocks / 8));
        const v = ++issued[b]!;
        await client.call('WriteShare', { shareId: 's1', offset: b * BLOCK, data: content(b, v) });
        acked[b] = v;
        writes++;
      }
    });
    const until = async (n: number) => {
      while (writes < n) await client.call('GetShare', { shareId: 's1' });
    };
    await until(200);
    const low = [...acked];
    await driver.dataSource!.createSnapshot({ ...dataCall(m), snapshotId: 'm-s1-s1' });
    const high = [...issued];
    await until(writes + 400);
    stop = true;
    await Promise.all(lanes);
    const snap = await readSnapshot(driver, m, 'm-s1-s1', [{ offset: 0, length: size }]);
    for (let b = 0; b < blocks; b++) {
      const got = snap.subarray(b * BLOCK, (b + 1) * BLOCK);
      let found = -1;
      for (let v = low[b]!; v <= high[b]! && found < 0; v++) if (got.equals(content(b, v))) found = v;
      assert.ok(found >= 0, `block ${b} holds a version in [${low[b]}, ${high[b]}] (it was written up to ${issued[b]})`);
    }
  });

  test('changed extents cover exactly the blocks written between two snapshots; the whole share without a base; paged; NOT_FOUND once deleted', async (t) => {
    const { client, address } = await serveArray(t, { config: TWO_ARRAYS });
    const size = 3 * MiB + 1000;
    const content = await filledShare(client, 's1', size);
    const driver = await driverFor(t, address, 'alpha');
    const m = spec('s1');
    const info = await driver.dataSource!.createSnapshot({ ...dataCall(m), snapshotId: 'm-s1-s1' });
    assert.deepEqual(info, { sizeBytes: size, metadata: {}, shareType: 'default', blockSizeBytes: BLOCK });
    assert.deepEqual(await changedExtents(driver, m, '', 'm-s1-s1', size), [{ offset: 0, length: size }]);

    // Writes of every shape: inside one block, across two, a run, and the short last block.
    const writes: Array<[number, number]> = [[100, 10], [BLOCK * 10 - 5, 10], [BLOCK * 40, BLOCK * 6], [size - 7, 7], [BLOCK * 40, 1]];
    const expected = new Set<number>();
    for (const [offset, length] of writes) {
      await client.call('WriteShare', { shareId: 's1', offset, data: pattern(`w${offset}`, length) });
      for (let b = Math.floor(offset / BLOCK); b * BLOCK < offset + length; b++) expected.add(b);
    }
    await driver.dataSource!.createSnapshot({ ...dataCall(m), snapshotId: 'm-s1-s2' });
    const changed = await changedExtents(driver, m, 'm-s1-s1', 'm-s1-s2', size);
    assert.deepEqual([...blocksOf(changed)].sort((a, b) => a - b), [...expected].sort((a, b) => a - b));
    assert.deepEqual(changed.at(-1), { offset: Math.floor((size - 7) / BLOCK) * BLOCK, length: size - Math.floor((size - 7) / BLOCK) * BLOCK }, 'clipped at the end');
    assert.deepEqual(await changedExtents(driver, m, 'm-s1-s1', 'm-s1-s2', size, 1), changed, 'one extent a page gives the same');
    await rejectsCode(driver.dataSource!.listChangedExtents({ ...dataCall(m), baseSnapshotId: 'm-s1-s2', snapshotId: 'm-s1-s2', startOffset: 0, maxExtents: 10 }), 'DRIVER_ERROR', /taken after/);

    // The first snapshot still reads what was there before it.
    assert.equal(sha256(await readSnapshot(driver, m, 'm-s1-s1', [{ offset: 0, length: size }])), sha256(content));
    await rejectsCode(driver.dataSource!.listChangedExtents({ ...dataCall(m), baseSnapshotId: 'm-s1-s2', snapshotId: 'm-s1-s1', startOffset: 0, maxExtents: 10 }), 'DRIVER_ERROR', /taken after/);
    await driver.dataSource!.deleteSnapshot({ ...dataCall(m), snapshotId: 'm-s1-s1' });
    await driver.dataSource!.deleteSnapshot({ ...dataCall(m), snapshotId: 'm-s1-s1' });
    await rejectsCode(driver.dataSource!.listChangedExtents({ ...dataCall(m), baseSnapshotId: 'm-s1-s1', snapshotId: 'm-s1-s2', startOffset: 0, maxExtents: 10 }), 'NOT_FOUND', /m-s1-s1/);
    await rejectsCode(readSnapshot(driver, m, 'm-s1-s1', [{ offset: 0, length: 10 }]), 'NOT_FOUND');
    await rejectsWith(client.call('StartJob', { jobId: 'j1', shareId: 's1', destBackend: 'beta', destPool: 'bronze' }), grpc.status.FAILED_PRECONDITION, /has snapshots/);
  });

  test('reads stream each extent in pieces of at most 1 MiB with their CRC-32C; breaking out or aborting stops the stream', async (t) => {
    const served = await serveArray(t, { config: TWO_ARRAYS });
    const { client, address, array } = served;
    const size = 64 * MiB;
    await client.call('CreateShare', { shareId: 's1', backend: 'alpha', pool: 'gold', sizeBytes: size });
    const head = pattern('head', 3 * MiB + 5);
    await client.call('WriteShare', { shareId: 's1', offset: 0, data: head.subarray(0, MiB) });
    await client.call('WriteShare', { shareId: 's1', offset: MiB, data: head.subarray(MiB, 2 * MiB) });
    await client.call('WriteShare', { shareId: 's1', offset: 2 * MiB, data: head.subarray(2 * MiB, 3 * MiB) });
    await client.call('WriteShare', { shareId: 's1', offset: 3 * MiB, data: head.subarray(3 * MiB) });
    const driver = await driverFor(t, address, 'alpha');
    const m = spec('s1');
    await driver.dataSource!.createSnapshot({ ...dataCall(m), snapshotId: 'm-s1-s1' });
    const got = await readSnapshot(driver, m, 'm-s1-s1', [{ offset: 2 * MiB + 5, length: MiB }, { offset: 7, length: 2 * MiB + 3 }]);
    assert.ok(got.equals(Buffer.concat([head.subarray(2 * MiB + 5, 3 * MiB + 5), head.subarray(7, 2 * MiB + 10)])));

    // The array's reads of the snapshot, counted; from the third on they wait for `go`, so the stream stalls there.
    let reads = 0;
    let go!: () => void;
    const gate = new Promise<void>((resolve) => (go = resolve));
    const read = array.snapshots.read.bind(array.snapshots);
    array.snapshots.read = async (...args) => {
      if (++reads > 2) await gate;
      return read(...args);
    };
    const whole = [{ offset: 0, length: size }];
    for await (const piece of driver.dataSource!.readExtents({ ...dataCall(m), snapshotId: 'm-s1-s1', extents: whole })) {
      assert.equal(piece.offset, 0);
      break;
    }
    // The cancel went out on the connection before this call, so the array has seen it when this answers.
    await client.call('GetShare', { shareId: 's1' });
    const seen = reads;
    go();
    await client.call('GetShare', { shareId: 's1' });
    assert.equal(reads, seen, 'the array read nothing more once the stalled read finished: the stream was cancelled');
    array.snapshots.read = read;

    const abort = new AbortController();
    const iterator = driver.dataSource!.readExtents({ ...dataCall(m, abort.signal), snapshotId: 'm-s1-s1', extents: whole })[Symbol.asyncIterator]();
    await iterator.next();
    abort.abort();
    await rejectsCode((async () => {
      for (;;) if ((await iterator.next()).done) return;
    })(), 'DEADLINE_EXCEEDED', /aborted/);
  });
});

describe('freezes', () => {
  test('a nondisruptive freeze holds new writes until release; a disruptive one fails them UNAVAILABLE; a lease thaws by itself; only its holder renews or releases it', async (t) => {
    const { client, address } = await serveArray(t, { config: TWO_ARRAYS });
    await client.call('CreateShare', { shareId: 's1', backend: 'alpha', pool: 'gold', sizeBytes: MiB });
    const driver = await driverFor(t, address, 'alpha');
    const m = spec('s1');
    await driver.dataSource!.freezeWrites({ ...dataCall(m), leaseMs: 60_000 });
    let landed = false;
    const write = client.call('WriteShare', { shareId: 's1', offset: 0, data: pattern('held', 100) }).then(() => (landed = true));
    await driver.dataSource!.freezeWrites({ ...dataCall(m), leaseMs: 60_000 });
    const before = await client.call('ReadShare', { shareId: 's1', offset: 0, length: 100 });
    assert.equal(landed, false, 'the write waits');
    assert.ok(before.data.equals(Buffer.alloc(100)), 'and has not landed');
    await rejectsWith(client.call('FreezeShare', { shareId: 's1', holder: 'someone-else', leaseMs: 1000 }), grpc.status.FAILED_PRECONDITION, /frozen by m-s1/);
    await rejectsWith(client.call('ReleaseShare', { shareId: 's1', holder: 'someone-else' }), grpc.status.FAILED_PRECONDITION, /frozen by m-s1/);
    await driver.dataSource!.releaseWrites({ ...dataCall(m), committed: false });
    await write;
    assert.ok((await client.call('ReadShare', { shareId: 's1', offset: 0, length: 100 })).data.equals(pattern('held', 100)));
    await driver.dataSource!.releaseWrites({ ...dataCall(m), committed: false });

    const disruptive = spec('s1', { nondisruptive: false });
    await driver.dataSource!.freezeWrites({ ...dataCall(disruptive), leaseMs: 60_000 });
    await rejectsWith(client.call('WriteShare', { shareId: 's1', offset: 0, data: Buffer.alloc(10) }), grpc.status.UNAVAILABLE, /retry/);
    await driver.dataSource!.releaseWrites({ ...dataCall(disruptive), committed: false });

    // A holder that never releases: the lease runs out and the waiting write lands.
    await driver.dataSource!.freezeWrites({ ...dataCall(m), leaseMs: 50 });
    await client.call('WriteShare', { shareId: 's1', offset: 0, data: pattern('thawed', 10) });
    assert.ok((await client.call('ReadShare', { shareId: 's1', offset: 0, length: 10 })).data.equals(pattern('thawed', 10)));
    await rejectsWith(client.call('FreezeShare', { shareId: 's1', holder: 'h', leaseMs: 0 }), grpc.status.INVALID_ARGUMENT, /lease_ms/);
  });
});

describe('targets', () => {
  test('create is idempotent and counts in its pool, NO_SPACE without room; a piece with a wrong CRC-32C is DATA_LOSS and not written; checksums are of what was written', async (t) => {
    const { client, address } = await serveArray(t, { config: TWO_ARRAYS });
    const dest = await driverFor(t, address, 'gamma');
    const m = spec('s1');
    const size = 5 * MiB + 3;
    const create = () => dest.dataDestination!.createTarget({ ...dataCall(m), targetId: 'm-s1-t', sizeBytes: size, metadata: { a: 'b' }, shareType: 'fast' });
    assert.deepEqual(await create(), { promoted: false });
    assert.deepEqual(await create(), { promoted: false });
    const pool = (await client.call('ListBackends')).backends.find((b: { name: string }) => b.name === 'gamma').pools[0];
    assert.equal(pool.usedBytes, size, 'the target holds its size in the pool');
    assert.deepEqual((await client.call('ListShares')).shares, [], 'a target is no share');
    await rejectsCode(dest.dataDestination!.createTarget({ ...dataCall(m), targetId: 'm-big-t', sizeBytes: 64 * MiB, metadata: {}, shareType: '' }), 'RESOURCE_EXHAUSTED', /lacks room/);

    const content = pattern('target', size);
    await rejectsCode(dest.dataDestination!.writeExtents({ ...dataCall(m), targetId: 'm-s1-t', data: pieces(content, 0, size, 2) }), 'DATA_LOSS', /CRC-32C/);
    const ranges = [{ offset: 0, length: 2 * MiB }, { offset: 2 * MiB, length: MiB }, { offset: 3 * MiB, length: size - 3 * MiB }];
    const { digests: partial } = await dest.dataDestination!.flushTarget({ ...dataCall(m), targetId: 'm-s1-t', ranges });
    assert.equal(partial[0]!.crc32c, crc32c(content.subarray(0, 2 * MiB)), 'the pieces before the bad one were written');
    assert.equal(partial[1]!.crc32c, crc32c(Buffer.alloc(MiB)), 'nothing of the bad piece was');
    assert.deepEqual(await dest.dataDestination!.writeExtents({ ...dataCall(m), targetId: 'm-s1-t', data: pieces(content, 0, size) }), { writtenBytes: size });
    const { digests } = await dest.dataDestination!.flushTarget({ ...dataCall(m), targetId: 'm-s1-t', ranges });
    assert.deepEqual(digests, ranges.map((r) => ({ ...r, crc32c: crc32c(content.subarray(r.offset, r.offset + r.length)) })));

    await dest.dataDestination!.discardTarget({ ...dataCall(m), targetId: 'm-s1-t' });
    await dest.dataDestination!.discardTarget({ ...dataCall(m), targetId: 'm-s1-t' });
    await rejectsCode(dest.dataDestination!.flushTarget({ ...dataCall(m), targetId: 'm-s1-t', ranges }), 'NOT_FOUND');
    const after = (await client.call('ListBackends')).backends.find((b: { name: string }) => b.name === 'gamma').pools[0];
    assert.equal(after.usedBytes, 0, 'a discarded target frees its pool');
  });

  test('a whole move from sim-1 to sim-2 under a workload: snapshots, deltas, freeze, promote, release, retire; the share keeps its id, reads and checksums at its new place, and no acknowledged write is lost', async (t) => {
    const { client, address, dataDir } = await serveArray(t, { config: TWO_ARRAYS });
    const size = 4 * MiB;
    await filledShare(client, 's1', size);
    await client.call('CreateShare', { shareId: 'other', backend: 'alpha', pool: 'gold', sizeBytes: MiB });
    const filesBefore = (await dataFiles(dataDir)).length;
    const source = await driverFor(t, address, 'alpha');
    const dest = await driverFor(t, address, 'gamma');
    const m = spec('s1');
    const wl = await client.call('StartWorkload', { shareId: 's1', rateBytesPerSec: 4 * MiB, blockSize: BLOCK, concurrency: 4, pattern: 'WRITE_PATTERN_RANDOM', seed: 7 });
    const copy = async (base: string, snap: string) => {
      const extents = await changedExtents(source, m, base, snap, size);
      const data = source.dataSource!.readExtents({ ...dataCall(m), snapshotId: snap, extents });
      await dest.dataDestination!.writeExtents({ ...dataCall(m), targetId: 'm-s1-t', data });
      return extents;
    };
    const info = await source.dataSource!.createSnapshot({ ...dataCall(m), snapshotId: 'm-s1-s1' });
    await dest.dataDestination!.createTarget({ ...dataCall(m), targetId: 'm-s1-t', sizeBytes: info.sizeBytes, metadata: info.metadata, shareType: info.shareType });
    await copy('', 'm-s1-s1');
    await source.dataSource!.createSnapshot({ ...dataCall(m), snapshotId: 'm-s1-s2' });
    await copy('m-s1-s1', 'm-s1-s2');
    await source.dataSource!.freezeWrites({ ...dataCall(m), leaseMs: 30_000 });
    await source.dataSource!.createSnapshot({ ...dataCall(m), snapshotId: 'm-s1-s3' });
    const last = await copy('m-s1-s2', 'm-s1-s3');
    const { digests } = await dest.dataDestination!.flushTarget({ ...dataCall(m), targetId: 'm-s1-t', ranges: last });
    const expected = await readSnapshot(source, m, 'm-s1-s3', last);
    let at = 0;
    for (const d of digests) {
      assert.equal(d.crc32c, crc32c(expected.subarray(at, at + d.length)));
      at += d.length;
    }
    const frozenContent = await readSnapshot(source, m, 'm-s1-s3', [{ offset: 0, length: size }]);
    await dest.dataDestination!.promoteTarget({ ...dataCall(m), targetId: 'm-s1-t' });
    await dest.dataDestination!.promoteTarget({ ...dataCall(m), targetId: 'm-s1-t' });
    const moved = await client.call('GetShare', { shareId: 's1' });
    assert.deepEqual([moved.backend, moved.pool], ['gamma', 'iron']);
    assert.equal((await client.call('ChecksumShare', { shareId: 's1' })).sha256, sha256(frozenContent), 'the target is the share as it was frozen');
    assert.deepEqual(await dest.dataDestination!.createTarget({ ...dataCall(m), targetId: 'm-s1-t', sizeBytes: size, metadata: {}, shareType: '' }), { promoted: true });
    await rejectsCode(dest.dataDestination!.discardTarget({ ...dataCall(m), targetId: 'm-s1-t' }), 'FAILED_PRECONDITION', /promoted/);
    await source.dataSource!.releaseWrites({ ...dataCall(m), committed: true });
    // The snapshots still read from the former place until it retires.
    assert.equal(sha256(await readSnapshot(source, m, 'm-s1-s3', [{ offset: 0, length: size }])), sha256(frozenContent));
    await source.dataSource!.retireSource(dataCall(m));
    await source.dataSource!.retireSource(dataCall(m));
    await rejectsCode(readSnapshot(source, m, 'm-s1-s1', [{ offset: 0, length: 1 }]), 'NOT_FOUND');

    // The workload kept writing, now to the new place.
    const before = (await client.call('GetWorkload', { workloadId: wl.workloadId })).writesAcked;
    while ((await client.call('GetWorkload', { workloadId: wl.workloadId })).writesAcked < before + 20) {
      // Until it has written on the new place.
    }
    const stopped = await client.call('StopWorkload', { workloadId: wl.workloadId });
    assert.equal(stopped.writesFailed, 0, stopped.lastError);
    const verify = await client.call('VerifyWorkload', { workloadId: wl.workloadId });
    assert.equal(verify.lost, 0, `lost blocks at ${verify.lostOffsets}`);
    assert.ok(verify.checked > 0);
    assert.equal((await dataFiles(dataDir)).length, filesBefore, 'the former place and the snapshot side files are gone; the target is the share\'s file');
    const bronze = (await client.call('ListBackends')).backends.find((b: { name: string }) => b.name === 'alpha').pools[0];
    assert.equal(bronze.usedBytes, MiB, 'the former place no longer counts in its pool');
  });
});
