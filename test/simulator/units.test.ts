/**
 * The array's small parts on their own: bitmaps and runs, configuration
 * checks, the freeze gate, the token bucket, the copy rate meter, the mutex,
 * the metadata store's write ordering, and the copy worker's block digests
 * and progress.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, test } from 'node:test';
import { crc32 } from 'node:zlib';
import * as grpc from '@grpc/grpc-js';
import { silentLog } from '../../lib/log.ts';
import { Bitmap, toRuns } from '../../simulator/bitmap.ts';
import { BlockState } from '../../simulator/block-state.ts';
import { DEFAULT_SIMULATOR_CONFIG, SimulatorConfigError, loadSimulatorConfig, resolveSimulatorConfig } from '../../simulator/config.ts';
import { CopyPool, CopyTaskError } from '../../simulator/copy-pool.ts';
import { ShareGate } from '../../simulator/datapath.ts';
import { ArrayError } from '../../simulator/errors.ts';
import { IllegalTransitionError, canTransition, newJobRecord, tombstoneRecord, transition } from '../../simulator/job-record.ts';
import type { JobRecord } from '../../simulator/job-record.ts';
import { MetaStore } from '../../simulator/metadata.ts';
import { Mutex } from '../../simulator/mutex.ts';
import { RateMeter, TokenBucket } from '../../simulator/rates.ts';
import { workloadContent } from '../../simulator/workload.ts';
import { defer, tempDir } from './helpers.ts';

describe('Bitmap', () => {
  test('counts set bits, lists them in order and drains them', () => {
    const b = new Bitmap(100);
    assert.equal(b.set(3), true);
    assert.equal(b.set(3), false);
    b.set(64);
    b.set(99);
    assert.equal(b.count, 3);
    assert.deepEqual(b.list(0, 100, Infinity, true), [3, 64, 99]);
    assert.deepEqual(b.list(0, 10, 3, false), [0, 1, 2]);
    assert.deepEqual(b.drain(), [3, 64, 99]);
    assert.equal(b.count, 0);
    assert.equal(b.has(64), false);
  });

  test('toRuns groups consecutive blocks, capped at a run length', () => {
    assert.deepEqual(toRuns([1, 2, 3, 7, 8, 20], 10), [
      [1, 3],
      [7, 2],
      [20, 1],
    ]);
    assert.deepEqual(toRuns([0, 1, 2, 3, 4], 2), [
      [0, 2],
      [2, 2],
      [4, 1],
    ]);
  });
});

describe('configuration', () => {
  test('defaults: three backends (alpha and beta on sim-1, gamma on sim-2), 64 KiB blocks, 8 MiB chunks, CRC-32 block digests, Xen-like bounds', () => {
    const c = resolveSimulatorConfig();
    assert.deepEqual(
      c.backends.map((b) => [b.name, b.array]),
      [
        ['alpha', 'sim-1'],
        ['beta', 'sim-1'],
        ['gamma', 'sim-2'],
      ],
    );
    assert.equal(c.blockSizeBytes, 64 * 1024);
    assert.equal(c.chunkSizeBytes, 8 * 1024 * 1024);
    assert.equal(c.blockDigest, 'crc32');
    assert.equal(c.maxPasses, 30);
    assert.equal(c.maxSentFactor, 3);
    assert.ok(c.workers >= 2 && c.workers <= 4);
    assert.deepEqual(c, { ...DEFAULT_SIMULATOR_CONFIG });
  });

  test('a backend that names no array is on the first one, sim-1', () => {
    const c = resolveSimulatorConfig({ backends: [{ name: 'a', pools: [{ name: 'p', capacityBytes: 1 }] }, { name: 'b', array: 'box2', pools: [{ name: 'p', capacityBytes: 1 }] }] });
    assert.deepEqual(c.backends.map((b) => b.array), ['sim-1', 'box2']);
    assert.throws(() => resolveSimulatorConfig({ backends: [{ name: 'a', array: 'no spaces', pools: [{ name: 'p', capacityBytes: 1 }] }] }), /^SimulatorConfigError: backends\[0\]\.array must be/);
  });

  test('rejects settings that cannot work, naming them', () => {
    const bad: Array<[object, RegExp]> = [
      [{ blockSizeBytes: 0 }, /^blockSizeBytes must be a positive integer/],
      [{ chunkSizeBytes: 3000, blockSizeBytes: 1024 }, /^chunkSizeBytes \(3000\) must be a multiple of blockSizeBytes/],
      [{ backends: [] }, /^backends must be a non-empty array/],
      [{ backends: [{ name: 'a', pools: [] }] }, /^backends\[0\]\.pools/],
      [{ backends: [{ name: 'a', pools: [{ name: 'p', capacityBytes: -1 }] }] }, /^backends\[0\]\.pools\[0\]\.capacityBytes/],
      [{ backends: [{ name: 'a b', pools: [{ name: 'p', capacityBytes: 1 }] }] }, /^backends\[0\]\.name/],
      [{ arrayBandwidthBytesPerSec: -5 }, /^arrayBandwidthBytesPerSec/],
      [{ blockDigest: 'md5' }, /^blockDigest must be "crc32" or "sha256"/],
    ];
    for (const [config, message] of bad) assert.throws(() => resolveSimulatorConfig(config), (err: unknown) => err instanceof SimulatorConfigError && message.test(err.message));
  });

  test('a config file overrides what it names and keeps the rest', async (t) => {
    const dir = await tempDir(t);
    const file = path.join(dir, 'c.json');
    await writeFile(file, JSON.stringify({ blockSizeBytes: 4096, chunkSizeBytes: 65536 }));
    const c = await loadSimulatorConfig(file);
    assert.equal(c.blockSizeBytes, 4096);
    assert.equal(c.maxPasses, 30);
    await writeFile(file, '[1,2]');
    await assert.rejects(loadSimulatorConfig(file), /must hold a JSON object/);
  });
});

describe('a job record and its states', () => {
  const job = () =>
    newJobRecord({
      jobId: 'j1',
      spec: { shareId: 's1', destBackend: 'beta', destPool: 'bronze', writable: true, nondisruptive: true, preserveMetadata: true, preserveSnapshots: false, newShareType: '', maxBandwidthBytesPerSec: 0, maxDowntimeMs: 500, cutoverAction: 'ABORT' },
      source: { backend: 'alpha', pool: 'gold', fileId: 'f-1' },
      dest: { backend: 'beta', pool: 'bronze', fileId: 'f-2' },
      sizeBytes: 4096,
      blockSizeBytes: 4096,
      chunkSizeBytes: 4096,
    });

  test('allows exactly the transitions of the state diagram', () => {
    const states = ['COPYING', 'SYNCING', 'CUTTING_OVER', 'DONE', 'CANCELLED', 'FAILED'] as const;
    const legal = new Set(['COPYING>SYNCING', 'COPYING>CANCELLED', 'COPYING>FAILED', 'SYNCING>CUTTING_OVER', 'SYNCING>CANCELLED', 'SYNCING>FAILED', 'CUTTING_OVER>DONE', 'CUTTING_OVER>SYNCING', 'CUTTING_OVER>FAILED']);
    for (const from of states) for (const to of states) assert.equal(canTransition(from, to), legal.has(`${from}>${to}`), `${from} -> ${to}`);
  });

  test('a new job starts COPYING; phase 1 done is the move to SYNCING; a final state records when; each move is announced once, after it is made; an illegal move throws, changes nothing and is not announced', () => {
    const rec = job();
    const announced: string[] = [];
    const seen = { transitioned: (r: JobRecord) => announced.push(`${r.state}${r.phase1Done ? '+phase1' : ''}`) };
    assert.equal(rec.state, 'COPYING');
    assert.equal(rec.phase1Done, false);
    transition(rec, 'SYNCING', seen);
    assert.equal(rec.phase1Done, true);
    assert.ok(rec.phase1DoneAtMs > 0);
    transition(rec, 'CUTTING_OVER', seen);
    transition(rec, 'DONE', seen);
    assert.ok(rec.finishedAtMs > 0);
    assert.throws(() => transition(rec, 'SYNCING', seen), (err: unknown) => err instanceof IllegalTransitionError && /job j1: no transition from DONE to SYNCING/.test(err.message));
    assert.equal(rec.state, 'DONE');
    assert.deepEqual(announced, ['SYNCING+phase1', 'CUTTING_OVER+phase1', 'DONE+phase1']);
  });

  test('a tombstone is CANCELLED from the start, and stays so', () => {
    const rec = tombstoneRecord('j9', { blockSizeBytes: 4096, chunkSizeBytes: 65536 });
    assert.equal(rec.state, 'CANCELLED');
    assert.equal(rec.tombstone, true);
    assert.ok(rec.finishedAtMs > 0);
    assert.throws(() => transition(rec, 'COPYING', { transitioned: () => assert.fail('an illegal move is not announced') }), IllegalTransitionError);
  });
});

describe('ShareGate', () => {
  test('queues writes while frozen in wait mode, in order, and counts them in flight before waking them', async () => {
    const gate = new ShareGate();
    await gate.enter('s');
    gate.freeze('wait');
    const order: number[] = [];
    const queued = [1, 2, 3].map((i) => gate.enter('s').then(() => order.push(i)));
    let drained = false;
    const drain = gate.drained().then(() => (drained = true));
    await Promise.resolve();
    assert.equal(drained, false, 'a write admitted before the freeze is still in flight');
    gate.leave();
    await drain;
    assert.deepEqual(order, [], 'queued writes wait for the release');
    gate.release();
    await Promise.all(queued);
    assert.deepEqual(order, [1, 2, 3]);
    gate.freeze('reject');
    let drainedAgain = false;
    void gate.drained().then(() => (drainedAgain = true));
    await Promise.resolve();
    assert.equal(drainedAgain, false, 'released writes count as in flight at once');
  });

  test('rejects writes with BUSY (UNAVAILABLE) while frozen in reject mode', async () => {
    const gate = new ShareGate();
    gate.freeze('reject');
    await assert.rejects(gate.enter('s1'), (err: unknown) => err instanceof ArrayError && err.code === 'BUSY' && err.status === grpc.status.UNAVAILABLE && /s1 is cutting over; retry/.test(err.message));
  });
});

describe('the copy rate meter (throughput, dirty rate), on a clock the test moves', () => {
  const MiB = 1024 * 1024;
  /** Whether `rate` is within `share` of `expected`. */
  const near = (rate: number, expected: number, share: number) => Math.abs(rate - expected) <= expected * share;

  test('reads 1 MiB/s at every moment when a capped copy lands a whole 8 MiB chunk every 8 s', () => {
    const t0 = Date.now();
    const meter = new RateMeter(3000, t0);
    for (let chunk = 1; chunk <= 8; chunk++) {
      meter.add(8 * MiB, t0 + chunk * 8000);
      // Every 100 ms until the next chunk lands: never 0, never 2.7 MiB/s.
      for (let ms = 0; ms < 8000; ms += 100) {
        const rate = meter.rate(t0 + chunk * 8000 + ms);
        assert.ok(near(rate, MiB, 0.02), `chunk ${chunk} + ${ms} ms: ${(rate / MiB).toFixed(2)} MiB/s`);
      }
    }
  });

  test('stays within 10 % of 1 MiB/s when 256 KiB pieces land at uneven gaps', () => {
    const t0 = Date.now();
    const meter = new RateMeter(3000, t0);
    let at = t0;
    for (let i = 0; i < 200; i++) {
      at += i % 2 === 0 ? 100 : 400; // 250 ms on average
      meter.add(256 * 1024, at);
      if (i >= 8) assert.ok(near(meter.rate(at + 50), MiB, 0.1), `piece ${i}: ${(meter.rate(at + 50) / MiB).toFixed(2)} MiB/s`);
    }
  });

  test('reads a fast copy from its first lump on, and counts lumps that land in the same millisecond in full', () => {
    const t0 = Date.now();
    const meter = new RateMeter(3000, t0);
    meter.add(8 * MiB, t0 + 16);
    assert.ok(near(meter.rate(t0 + 16), 500 * MiB, 0.01), `first lump: ${(meter.rate(t0 + 16) / MiB).toFixed(1)} MiB/s`);
    // Two workers, each landing 8 MiB every 16 ms, both in the same millisecond: 1000 MiB/s.
    for (let at = t0 + 32; at <= t0 + 10_000; at += 16) {
      meter.add(8 * MiB, at);
      meter.add(8 * MiB, at);
    }
    assert.ok(near(meter.rate(t0 + 10_000), 1000 * MiB, 0.05), `${(meter.rate(t0 + 10_000) / MiB).toFixed(1)} MiB/s`);
  });

  test('holds for two usual gaps after the last lump, then falls to 0 within its time constant', () => {
    const t0 = Date.now();
    const meter = new RateMeter(3000, t0);
    for (let i = 1; i <= 40; i++) meter.add(256 * 1024, t0 + i * 250);
    const last = t0 + 40 * 250;
    assert.ok(near(meter.rate(last + 500), MiB, 0.02), 'dropped before two gaps had passed');
    const falling = meter.rate(last + 2000);
    assert.ok(falling > 0 && falling < MiB, `1.5 s into the quiet: ${falling} B/s`);
    assert.equal(meter.rate(last + 500 + 3000), 0);
    assert.equal(new RateMeter(3000, t0).rate(t0 + 1000), 0, 'a meter that saw nothing reads 0');
  });
});

describe('small parts', () => {
  test('a token bucket without a rate never waits; with one, a take within the burst does not either', async () => {
    const free = new TokenBucket(0);
    await free.take(1e12);
    const capped = new TokenBucket(1000, 1);
    await capped.take(500);
    assert.equal(capped.rate, 1000);
    const aborted = new AbortController();
    aborted.abort();
    await capped.take(1e9, aborted.signal); // An aborted take returns instead of waiting out its debt.
  });

  test('a token bucket given back what a stopped caller took and never sent serves the next take within the burst at once', async () => {
    const capped = new TokenBucket(1000, 1);
    const aborted = new AbortController();
    aborted.abort();
    await capped.take(1500, aborted.signal);
    capped.refund(1500);
    const first = await Promise.race([capped.take(500).then(() => 'at once'), new Promise((resolve) => setImmediate(() => resolve('after a wait')))]);
    assert.equal(first, 'at once');
  });

  test('the mutex runs callers one at a time, in order, also after a failure', async () => {
    const m = new Mutex();
    const log: string[] = [];
    const slow = m.run(async () => {
      await new Promise((r) => setTimeout(r, 5));
      log.push('a');
    });
    const failing = m.run(async () => {
      log.push('b');
      throw new Error('boom');
    });
    const last = m.run(async () => log.push('c'));
    await slow;
    await assert.rejects(failing, /boom/);
    await last;
    assert.deepEqual(log, ['a', 'b', 'c']);
  });

  test('the metadata store keeps the last write of a key, whatever the interleaving', async (t) => {
    const dir = await tempDir(t);
    const store = await MetaStore.open(path.join(dir, 'meta'));
    await Promise.all(Array.from({ length: 200 }, (_, i) => store.put('k', { i }, { sync: i % 50 === 0 })));
    assert.deepEqual(await store.get('k'), { i: 199 });
    await store.write([
      { key: 'a', value: 1 },
      { key: 'k', value: null },
    ]);
    assert.equal(await store.get('k'), undefined);
    assert.deepEqual(await store.entries('a'), [['a', 1]]);
    await store.close();
  });

  test('the blocks to verify next are found past unverified ones that cannot be verified yet (dirty or never copied)', (t) => {
    const pool = new CopyPool(1, silentLog());
    defer(t, () => pool.close());
    const layout = { sizeBytes: 100 * 4096, blockSizeBytes: 4096, chunkSizeBytes: 4 * 4096, srcPath: 'src', dstPath: 'dst', digest: 'crc32' as const };
    const state = new BlockState(layout, pool);
    for (let b = 0; b < 100; b++) state.hashed.set(b);
    for (let b = 0; b < 40; b++) state.dirty.set(b);
    state.hashed.clear(45);
    for (let b = 50; b < 60; b++) state.verified.set(b);
    assert.deepEqual(state.verifiable(0, 8), [40, 41, 42, 43, 44, 46, 47, 48]);
    assert.deepEqual(state.verifiable(48, 4), [48, 49, 60, 61]);
    assert.deepEqual(state.verifiable(99, 4), [99]);
    for (let b = 40; b < 100; b++) state.dirty.set(b);
    assert.deepEqual(state.verifiable(0, 8), [], 'none is left');
  });

  test('a copy worker digests every block it writes, with sha256 or crc32 as asked', async (t) => {
    const dir = await tempDir(t);
    const src = path.join(dir, 'src.img');
    const dst = path.join(dir, 'dst.img');
    const data = Buffer.concat([workloadContent('w', 1, 0, 4096), workloadContent('w', 2, 1, 2000)]);
    await writeFile(src, data);
    await writeFile(dst, Buffer.alloc(data.length));
    const pool = new CopyPool(1, silentLog());
    defer(t, () => pool.close());
    const res = await pool.copy({ src, dst, runs: [[0, 2]], blockSize: 4096, fileSize: data.length, skipZero: false, digest: 'sha256' });
    assert.equal(res.bytes, data.length);
    const hashes = Buffer.from(res.hashes);
    assert.ok(hashes.subarray(0, 32).equals(createHash('sha256').update(data.subarray(0, 4096)).digest()));
    assert.ok(hashes.subarray(32, 64).equals(createHash('sha256').update(data.subarray(4096)).digest()), 'the short last block is hashed as it is');
    const back = await pool.hash({ paths: [dst], runs: [[0, 2]], blockSize: 4096, fileSize: data.length, digest: 'sha256' });
    assert.ok(Buffer.from(back.hashes[0]!).equals(hashes));

    const crcs = Buffer.from((await pool.copy({ src, dst, runs: [[0, 2]], blockSize: 4096, fileSize: data.length, skipZero: false, digest: 'crc32' })).hashes);
    assert.equal(crcs.length, 8, 'four bytes per block');
    assert.equal(crcs.readUInt32LE(0), crc32(data.subarray(0, 4096)));
    assert.equal(crcs.readUInt32LE(4), crc32(data.subarray(4096)), 'the short last block is digested as it is');
    const crcBack = await pool.hash({ paths: [dst], runs: [[0, 2]], blockSize: 4096, fileSize: data.length, digest: 'crc32' });
    assert.ok(Buffer.from(crcBack.hashes[0]!).equals(crcs));
    await assert.rejects(pool.copy({ src: path.join(dir, 'missing'), dst, runs: [[0, 1]], blockSize: 4096, fileSize: 4096, skipZero: false, digest: 'crc32' }), /ENOENT/);
  });

  test('a worker reply with another request\'s id fails the task and the worker is replaced', async (t) => {
    const pool = new CopyPool(1, silentLog(), new URL('../fixtures/workers/wrong-id.mjs', import.meta.url));
    defer(t, () => pool.close());
    assert.equal((await pool.checksum({ path: 'fine', size: 1 })).sha256, 'sum of fine');
    await assert.rejects(pool.checksum({ path: 'wrong', size: 1 }), (err: unknown) => err instanceof CopyTaskError && /answered request 1002 while running request 2/.test(err.message));
    assert.equal((await pool.checksum({ path: 'again', size: 1 })).sha256, 'sum of again', 'a new worker takes the next task');
  });

  test('a copy task tells the bytes it landed piece by piece (1 MiB each) before its result, when asked', async (t) => {
    const dir = await tempDir(t);
    const src = path.join(dir, 'src.img');
    const dst = path.join(dir, 'dst.img');
    const size = 3 * 1024 * 1024 + 64 * 1024;
    await writeFile(src, Buffer.alloc(size, 7));
    await writeFile(dst, Buffer.alloc(size));
    const pool = new CopyPool(1, silentLog());
    defer(t, () => pool.close());
    const req = { src, dst, runs: [[0, size / 65536]] as [number, number][], blockSize: 65536, fileSize: size, skipZero: false, digest: 'crc32' as const };
    const landed: number[] = [];
    let resolved = false;
    const res = await pool.copy({ ...req, progressMs: 0 }, (bytes) => {
      assert.equal(resolved, false, 'progress after the result');
      landed.push(bytes);
    });
    resolved = true;
    // Three whole pieces are told as they land; the last (64 KiB) comes with the result.
    assert.deepEqual(landed, [1024 * 1024, 1024 * 1024, 1024 * 1024]);
    assert.equal(res.bytes, size);
    const quiet: number[] = [];
    await pool.copy(req, (bytes) => quiet.push(bytes));
    assert.deepEqual(quiet, [], 'progress without progressMs');
  });
});
