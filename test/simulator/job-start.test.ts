/**
 * StartJob under concurrency, on a real array over real gRPC: the checks and
 * the reservation are made under the array's lock, the destination's file
 * and the job's record outside it. Where a test needs a file creation that
 * is slow or fails, it plants that in the array's own BlockStore (or
 * MetaStore), around the real call.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import type { BlockStore } from '../../simulator/blockstore.ts';
import type { MetaOp, MetaStore } from '../../simulator/metadata.ts';
import type { SimArray } from '../../simulator/index.ts';
import { dataFiles, defer, poolUsage, rejectsWith, serveArray } from './helpers.ts';
import type { SimClient } from './helpers.ts';

/** What node:test's test context offers for cleanups. */
type Cleanup = Parameters<typeof defer>[0];

const KiB = 1024;

/** StartJob of `shareId` to beta/`pool` (bronze by default). */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
function startJob(client: SimClient, jobId: string, shareId: string, extra: object = {}): Promise<any> {
  return client.call('StartJob', { jobId, shareId, destBackend: 'beta', destPool: 'bronze', writable: true, ...extra }, 10_000);
}

async function shares(client: SimClient, count: number, sizeBytes: number): Promise<void> {
  for (let i = 0; i < count; i++) await client.call('CreateShare', { shareId: `s${i}`, backend: 'alpha', pool: 'gold', sizeBytes });
}

/** Replaces the array's BlockStore.create by `planted` (which may call the real one) until the test ends. */
function plantCreate(t: Cleanup, array: SimArray, planted: (real: (fileId: string, size: number) => Promise<void>, fileId: string, size: number) => Promise<void>): void {
  const blocks = (array as unknown as { blocks: BlockStore }).blocks;
  const real = blocks.create.bind(blocks);
  blocks.create = (fileId, size) => planted(real, fileId, size);
  defer(t, () => {
    blocks.create = real;
  });
}

/** A gate the first file creation waits at: `entered` resolves when it got there, `release` lets it go on. */
function gateFirstCreate(t: Cleanup, array: SimArray): { entered: Promise<void>; release: () => void } {
  let release!: () => void;
  let enter!: () => void;
  const opened = new Promise<void>((resolve) => (release = resolve));
  const entered = new Promise<void>((resolve) => (enter = resolve));
  let first = true;
  plantCreate(t, array, async (real, fileId, size) => {
    if (first) {
      first = false;
      enter();
      await opened;
    }
    await real(fileId, size);
  });
  // Before the array closes (it waits for starts under way).
  defer(t, release);
  return { entered, release };
}

/** Tracks whether a promise has settled yet. */
function settledFlag(promise: Promise<unknown>): { settled: boolean } {
  const flag = { settled: false };
  promise.then(
    () => (flag.settled = true),
    () => (flag.settled = true),
  );
  return flag;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('StartJob under concurrency', () => {
  test('a StartJob whose destination is slow to create holds up no other StartJob, and its job is not shown until it is recorded', async (t) => {
    const { array, client } = await serveArray(t);
    await shares(client, 2, 64 * KiB);
    const gate = gateFirstCreate(t, array);
    const first = startJob(client, 'j0', 's0');
    await gate.entered;

    const second = await startJob(client, 'j1', 's1');
    assert.equal(second.state, 'JOB_STATE_COPYING', 'the second start answered while the first was still creating its destination');
    await rejectsWith(client.call('GetJob', { jobId: 'j0' }), grpc.status.NOT_FOUND, /job j0 not found/);
    assert.deepEqual((await client.call('ListJobs')).jobs.map((j: { jobId: string }) => j.jobId), ['j1']);
    assert.equal((await poolUsage(client))['beta#bronze'], 128 * KiB, 'the starting job holds its space');

    gate.release();
    assert.equal((await first).state, 'JOB_STATE_COPYING');
    assert.equal((await client.call('GetJob', { jobId: 'j0' })).jobId, 'j0', 'shown once recorded');
  });

  test('200 StartJob calls, 32 in flight, all succeed, create their destinations concurrently, and are all there after a reopen', async (t) => {
    const served = await serveArray(t);
    const { array, client } = served;
    const count = 200;
    await shares(client, count, 64 * KiB);
    let inFlight = 0;
    let most = 0;
    plantCreate(t, array, async (real, fileId, size) => {
      most = Math.max(most, ++inFlight);
      try {
        await real(fileId, size);
      } finally {
        inFlight--;
      }
    });
    let next = 0;
    const states: string[] = [];
    await Promise.all(
      Array.from({ length: 32 }, async () => {
        while (next < count) {
          const i = next++;
          states.push((await startJob(client, `j${i}`, `s${i}`)).state);
        }
      }),
    );
    assert.equal(states.length, count);
    assert.ok(states.every((s) => s === 'JOB_STATE_COPYING' || s === 'JOB_STATE_SYNCING'), `every start succeeded: ${[...new Set(states)].join(', ')}`);
    assert.ok(most > 1, `destinations were created concurrently (at most ${most} at once)`);
    assert.equal((await client.call('ListJobs')).jobs.length, count);
    assert.equal((await dataFiles(served.dataDir)).length, 2 * count, 'one source and one destination per job');

    await served.close();
    const reopened = await serveArray(t, { dataDir: served.dataDir });
    const jobs = (await reopened.client.call('ListJobs')).jobs as { jobId: string; state: string }[];
    assert.equal(jobs.length, count, 'every answered start was recorded durably');
  });

  test('more starts than the pool has room for, all at once: exactly the ones that fit succeed, the rest are RESOURCE_EXHAUSTED', async (t) => {
    const { array, client, dataDir } = await serveArray(t);
    // beta#tiny has 2 MiB: 8 shares of 256 KiB fit.
    await shares(client, 20, 256 * KiB);
    // Slow creations keep every start's file creation in flight while the others arrive.
    plantCreate(t, array, async (real, fileId, size) => {
      await sleep(100);
      await real(fileId, size);
    });
    const results = await Promise.allSettled(Array.from({ length: 20 }, (_, i) => startJob(client, `j${i}`, `s${i}`, { destPool: 'tiny' })));
    const ok = results.filter((r) => r.status === 'fulfilled');
    const refused = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected');
    assert.equal(ok.length, 8, `8 of 20 fit; ${ok.length} started`);
    for (const r of refused) assert.equal((r.reason as grpc.ServiceError).code, grpc.status.RESOURCE_EXHAUSTED, (r.reason as Error).message);
    assert.equal((await poolUsage(client))['beta#tiny'], 2048 * KiB, 'the pool is exactly full, not over');
    assert.equal((await dataFiles(dataDir)).length, 20 + 8);
  });
});

describe('a StartJob while the same job id is starting', () => {
  test('a repeat waits for the first to record the job and answers the same job; different fields are ALREADY_EXISTS', async (t) => {
    const { array, client, dataDir } = await serveArray(t);
    await shares(client, 1, 64 * KiB);
    const gate = gateFirstCreate(t, array);
    const first = startJob(client, 'j0', 's0');
    await gate.entered;
    const repeat = startJob(client, 'j0', 's0');
    const other = startJob(client, 'j0', 's0', { writable: false });
    const repeatDone = settledFlag(repeat);
    const otherDone = settledFlag(other);
    await sleep(300);
    assert.equal(repeatDone.settled, false, 'the repeat did not answer for a job not recorded yet');
    assert.equal(otherDone.settled, false, 'nor did the one with different fields');

    gate.release();
    const [a, b] = await Promise.all([first, repeat]);
    assert.equal(a.jobId, 'j0');
    assert.equal(b.jobId, 'j0');
    assert.deepEqual([a.dest, a.createdAt], [b.dest, b.createdAt], 'the same job');
    await rejectsWith(other, grpc.status.ALREADY_EXISTS, /writable/);
    assert.equal((await dataFiles(dataDir)).length, 2, 'one destination was created, not two');
  });

  test('a CancelJob waits for the start, then cancels the job it started', async (t) => {
    const { array, client, dataDir } = await serveArray(t);
    await shares(client, 1, 64 * KiB);
    const gate = gateFirstCreate(t, array);
    const first = startJob(client, 'j0', 's0');
    await gate.entered;
    const cancel = client.call('CancelJob', { jobId: 'j0' });
    const cancelDone = settledFlag(cancel);
    await sleep(300);
    assert.equal(cancelDone.settled, false, 'the cancel did not answer while the start was creating the job');

    gate.release();
    await first;
    assert.equal((await cancel).state, 'JOB_STATE_CANCELLED');
    assert.equal((await client.call('GetJob', { jobId: 'j0' })).state, 'JOB_STATE_CANCELLED');
    assert.equal((await client.call('GetShare', { shareId: 's0' })).migrating, false);
    assert.equal((await poolUsage(client))['beta#bronze'], 0);
    assert.equal((await dataFiles(dataDir)).length, 1, 'the destination is deleted');
  });
});

describe('a StartJob that fails while creating the job', () => {
  test('a failure after the destination file was created undoes the reservation and removes the file; a retry starts the job', async (t) => {
    const { array, client, dataDir } = await serveArray(t);
    await shares(client, 1, 64 * KiB);
    // As if the directory's fsync failed: the file exists, the start cannot go on.
    let fail = true;
    plantCreate(t, array, async (real, fileId, size) => {
      await real(fileId, size);
      if (fail) throw Object.assign(new Error('EIO: i/o error, fsync (planted)'), { code: 'EIO' });
    });
    await rejectsWith(startJob(client, 'j0', 's0'), grpc.status.INTERNAL);
    await rejectsWith(client.call('GetJob', { jobId: 'j0' }), grpc.status.NOT_FOUND);
    assert.equal((await client.call('GetShare', { shareId: 's0' })).migrating, false, 'the share is free again');
    assert.equal((await poolUsage(client))['beta#bronze'], 0, 'the space is free again');
    assert.deepEqual((await dataFiles(dataDir)).length, 1, 'the created destination was removed');

    fail = false;
    assert.equal((await startJob(client, 'j0', 's0')).state, 'JOB_STATE_COPYING');
  });

  test('a failure to write the record undoes the reservation and removes the file; a retry starts the job', async (t) => {
    const { array, client, dataDir } = await serveArray(t);
    await shares(client, 1, 64 * KiB);
    const store = (array as unknown as { store: MetaStore }).store;
    const write = store.write.bind(store);
    let fail = true;
    store.write = (ops: MetaOp[], options?: { sync?: boolean }) =>
      fail && ops.some((op) => op.key === 'job!j0') ? Promise.reject(new Error('IO error: planted')) : write(ops, options);
    defer(t, () => {
      store.write = write;
    });
    await rejectsWith(startJob(client, 'j0', 's0'), grpc.status.INTERNAL);
    await rejectsWith(client.call('GetJob', { jobId: 'j0' }), grpc.status.NOT_FOUND);
    assert.equal((await client.call('GetShare', { shareId: 's0' })).migrating, false);
    assert.equal((await poolUsage(client))['beta#bronze'], 0);
    assert.equal((await dataFiles(dataDir)).length, 1);

    fail = false;
    assert.equal((await startJob(client, 'j0', 's0')).state, 'JOB_STATE_COPYING');
  });
});
