/**
 * Migration jobs on a real array (real files, LevelDB, worker threads, gRPC):
 * the copy under a concurrent workload, the cutover and its window, cancel
 * at each phase, read-only migrations, capacity reservations, idempotency,
 * non-convergence, and a reopen in the middle of a job.
 */
import assert from 'node:assert/strict';
import { unlink } from 'node:fs/promises';
import path from 'node:path';
import { describe, test } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { TEST_CONFIG, dataFiles, filledShare, pattern, phase1Done, rejectsWith, serveArray, sha256, waitForJob } from './helpers.ts';
import type { SimClient } from './helpers.ts';
import type { BlockStore } from '../../simulator/blockstore.ts';

const KiB = 1024;
const MiB = 1024 * KiB;

/** StartJob to beta/bronze, writable and nondisruptive unless `extra` says otherwise. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
function startJob(client: SimClient, jobId: string, shareId: string, extra: object = {}): Promise<any> {
  return client.call('StartJob', { jobId, shareId, destBackend: 'beta', destPool: 'bronze', writable: true, nondisruptive: true, ...extra });
}

async function checksum(client: SimClient, shareId: string): Promise<string> {
  return (await client.call('ChecksumShare', { shareId })).sha256;
}

async function poolUsed(client: SimClient, backend: string, pool: string): Promise<number> {
  const { backends } = await client.call('ListBackends');
  return backends.find((b: { name: string }) => b.name === backend).pools.find((p: { name: string }) => p.name === pool).usedBytes;
}

describe('copy and cutover', () => {
  test('under a random-write workload every acknowledged write survives, and source and destination checksums are equal', async (t) => {
    const { client, dataDir } = await serveArray(t);
    await filledShare(client, 's1', 4 * MiB);
    const wl = await client.call('StartWorkload', { shareId: 's1', rateBytesPerSec: 4 * MiB, blockSize: 4 * KiB, pattern: 'WRITE_PATTERN_RANDOM', seed: 7, concurrency: 4 });
    const started = await startJob(client, 'j1', 's1', { maxBandwidthBytesPerSec: 4 * MiB });
    assert.equal(started.state, 'JOB_STATE_COPYING');
    assert.equal((await client.call('GetShare', { shareId: 's1' })).migrating, true);

    const synced = await phase1Done(client, 'j1');
    assert.ok(synced.phase1DoneAt.seconds > 0, 'phase1_done_at is set');
    // Writes landing behind the copy were tracked: the job sends more than the share's size.
    await waitForJob(client, 'j1', (j) => j.progress.sentBytes > j.progress.totalBytes, 'dirty blocks copied again');

    const stopped = await client.call('StopWorkload', { workloadId: wl.workloadId });
    assert.ok(stopped.writesAcked > 0);
    assert.equal(stopped.writesFailed, 0);
    const before = await checksum(client, 's1');
    const done = await client.call('CutoverJob', { jobId: 'j1' });
    assert.equal(done.state, 'JOB_STATE_DONE', done.lastAbortReason);
    assert.ok(done.cutover.freezeMs > 0);
    assert.equal(done.cutover.verifiedBytes, done.cutover.finalDeltaBytes, 'the freeze verified its final delta only; the rest was verified before it');

    const share = await client.call('GetShare', { shareId: 's1' });
    assert.deepEqual([share.backend, share.pool, share.migrating], ['beta', 'bronze', false]);
    assert.equal(await checksum(client, 's1'), before);
    const verify = await client.call('VerifyWorkload', { workloadId: wl.workloadId });
    assert.ok(verify.checked > 0);
    assert.equal(verify.lost, 0, `lost at ${verify.lostOffsets}`);
    assert.equal((await dataFiles(dataDir)).length, 1, 'the source file is deleted');
    assert.equal(await poolUsed(client, 'alpha', 'gold'), 0, 'the source pool is released');
    assert.equal(await poolUsed(client, 'beta', 'bronze'), 4 * MiB);
  });

  test('writes keep landing through a nondisruptive cutover under load, and none is lost', async (t) => {
    const { client } = await serveArray(t);
    await filledShare(client, 's1', 2 * MiB);
    const wl = await client.call('StartWorkload', { shareId: 's1', rateBytesPerSec: 4 * MiB, blockSize: 8 * KiB, pattern: 'WRITE_PATTERN_HOTSPOT', seed: 3, concurrency: 4 });
    await startJob(client, 'j1', 's1');
    await phase1Done(client, 'j1');
    const done = await client.call('CutoverJob', { jobId: 'j1' });
    assert.equal(done.state, 'JOB_STATE_DONE', done.lastAbortReason);
    // The workload follows the share to its destination.
    const acked = (await client.call('GetWorkload', { workloadId: wl.workloadId })).writesAcked;
    const until = Date.now() + 10_000;
    while ((await client.call('GetWorkload', { workloadId: wl.workloadId })).writesAcked < acked + 20) {
      assert.ok(Date.now() < until, 'the workload stopped writing after the cutover: fewer than 20 more writes acknowledged within 10 s');
      await new Promise((r) => setTimeout(r, 10));
    }
    const stopped = await client.call('StopWorkload', { workloadId: wl.workloadId });
    assert.equal(stopped.writesFailed, 0, stopped.lastError);
    const verify = await client.call('VerifyWorkload', { workloadId: wl.workloadId });
    assert.ok(verify.checked > 0);
    assert.equal(verify.lost, 0, `lost at ${verify.lostOffsets}`);
  });

  test('a write issued while frozen waits (nondisruptive) and lands at the destination', async (t) => {
    const { client } = await serveArray(t);
    await filledShare(client, 's1', MiB);
    await startJob(client, 'j1', 's1', { cutoverAction: 'CUTOVER_ACTION_FORCE', maxDowntimeMs: 10 });
    await phase1Done(client, 'j1');
    await client.call('SetFaults', { cutoverDelayMs: 600 });
    const cutting = await client.call('CutoverJob', { jobId: 'j1', waitMs: 1 });
    assert.equal(cutting.state, 'JOB_STATE_CUTTING_OVER');
    await waitForJob(client, 'j1', (j) => j.frozen, 'frozen');
    const data = pattern('late', 4 * KiB);
    await client.call('WriteShare', { shareId: 's1', offset: 8 * KiB, data });
    // The write was held until the share had moved: when it returns, the share lives at the destination.
    const share = await client.call('GetShare', { shareId: 's1' });
    assert.deepEqual([share.backend, share.pool], ['beta', 'bronze']);
    const done = await client.call('CutoverJob', { jobId: 'j1' });
    assert.equal(done.state, 'JOB_STATE_DONE');
    assert.ok(done.cutover.freezeMs >= 600, 'the freeze included the injected delay');
    const { data: read } = await client.call('ReadShare', { shareId: 's1', offset: 8 * KiB, length: 4 * KiB });
    assert.ok(Buffer.from(read).equals(data));
  });

  test('a write issued while frozen fails UNAVAILABLE for a disruptive migration', async (t) => {
    const { client } = await serveArray(t);
    await filledShare(client, 's1', MiB);
    await startJob(client, 'j1', 's1', { nondisruptive: false, cutoverAction: 'CUTOVER_ACTION_FORCE', maxDowntimeMs: 10 });
    await phase1Done(client, 'j1');
    await client.call('SetFaults', { cutoverDelayMs: 600 });
    await client.call('CutoverJob', { jobId: 'j1', waitMs: 1 });
    await waitForJob(client, 'j1', (j) => j.frozen, 'frozen');
    await rejectsWith(client.call('WriteShare', { shareId: 's1', offset: 0, data: Buffer.alloc(10) }), grpc.status.UNAVAILABLE, /cutting over; retry/);
    const done = await client.call('CutoverJob', { jobId: 'j1' });
    assert.equal(done.state, 'JOB_STATE_DONE');
    await client.call('WriteShare', { shareId: 's1', offset: 0, data: Buffer.alloc(10) });
  });

  test('metadata, snapshots and share type move as the job says', async (t) => {
    const { client } = await serveArray(t);
    await client.call('CreateShare', { shareId: 'm1', backend: 'alpha', pool: 'gold', sizeBytes: MiB, metadata: { k: 'v' }, snapshots: 3 });
    await startJob(client, 'j1', 'm1', { preserveMetadata: false, preserveSnapshots: true, newShareType: 'fast' });
    await phase1Done(client, 'j1');
    await client.call('CutoverJob', { jobId: 'j1' });
    const moved = await client.call('GetShare', { shareId: 'm1' });
    assert.deepEqual(moved.metadata, {});
    assert.equal(moved.snapshots, 3);
    assert.equal(moved.shareType, 'fast');

    await client.call('CreateShare', { shareId: 'm2', backend: 'alpha', pool: 'gold', sizeBytes: MiB, metadata: { k: 'v' }, snapshots: 3 });
    await startJob(client, 'j2', 'm2', { preserveMetadata: true, preserveSnapshots: false });
    await phase1Done(client, 'j2');
    await client.call('CutoverJob', { jobId: 'j2' });
    const kept = await client.call('GetShare', { shareId: 'm2' });
    assert.deepEqual(kept.metadata, { k: 'v' });
    assert.equal(kept.snapshots, 0);
    assert.equal(kept.shareType, 'default');
  });

  test('CutoverJob repeated after DONE returns the same DONE job', async (t) => {
    const { client } = await serveArray(t);
    await filledShare(client, 's1', MiB);
    await startJob(client, 'j1', 's1');
    await phase1Done(client, 'j1');
    const first = await client.call('CutoverJob', { jobId: 'j1' });
    const second = await client.call('CutoverJob', { jobId: 'j1' });
    const third = await client.call('CutoverJob', { jobId: 'j1' });
    assert.equal(first.state, 'JOB_STATE_DONE');
    assert.deepEqual(second.cutover, first.cutover);
    assert.deepEqual(third.cutover, first.cutover);
    assert.equal(third.cutoverAttempts, 1);
  });
});

describe('the cutover window', () => {
  test('ABORT: a freeze past the window rolls back, writes resume on the source, and a later cutover succeeds', async (t) => {
    const { client, dataDir } = await serveArray(t);
    const content = await filledShare(client, 's1', MiB);
    await startJob(client, 'j1', 's1', { maxDowntimeMs: 250, cutoverAction: 'CUTOVER_ACTION_ABORT' });
    await phase1Done(client, 'j1');
    await client.call('SetFaults', { cutoverDelayMs: 600 });
    const aborted = await client.call('CutoverJob', { jobId: 'j1' });
    assert.equal(aborted.state, 'JOB_STATE_SYNCING');
    assert.match(aborted.lastAbortReason, /exceeded its 250 ms window/);
    assert.equal(aborted.lastAbortAttempt, 1);
    assert.equal(aborted.cutoverAttempts, 1);
    assert.equal(aborted.frozen, false);
    const share = await client.call('GetShare', { shareId: 's1' });
    assert.deepEqual([share.backend, share.pool, share.migrating], ['alpha', 'gold', true]);
    assert.equal((await dataFiles(dataDir)).length, 2, 'source and destination both remain');

    // Writes resume on the source and are carried over by the next cutover.
    const data = pattern('after-abort', 4 * KiB);
    await client.call('WriteShare', { shareId: 's1', offset: 12 * KiB, data });
    data.copy(content, 12 * KiB);
    await client.call('ClearFaults');
    const done = await client.call('CutoverJob', { jobId: 'j1' });
    assert.equal(done.state, 'JOB_STATE_DONE', done.lastAbortReason);
    assert.equal(done.cutoverAttempts, 2);
    assert.equal(await checksum(client, 's1'), sha256(content));
  });

  test('FORCE: a freeze past the window finishes anyway', async (t) => {
    const { client } = await serveArray(t);
    const content = await filledShare(client, 's1', MiB);
    await startJob(client, 'j1', 's1', { maxDowntimeMs: 50, cutoverAction: 'CUTOVER_ACTION_FORCE' });
    await phase1Done(client, 'j1');
    await client.call('SetFaults', { cutoverDelayMs: 300 });
    const done = await client.call('CutoverJob', { jobId: 'j1' });
    assert.equal(done.state, 'JOB_STATE_DONE');
    assert.equal(done.lastAbortReason, '');
    assert.ok(done.cutover.freezeMs > 50);
    assert.equal(await checksum(client, 's1'), sha256(content));
  });
});

describe('cancel', () => {
  /** Checks what a cancel must leave: the source untouched and writable where it was, no destination, no reservation. */
  async function assertCancelled(client: SimClient, dataDir: string, jobId: string, sourceSum: string): Promise<void> {
    const job = await client.call('GetJob', { jobId });
    assert.equal(job.state, 'JOB_STATE_CANCELLED');
    const share = await client.call('GetShare', { shareId: 's1' });
    assert.deepEqual([share.backend, share.pool, share.migrating, share.readOnly], ['alpha', 'gold', false, false]);
    assert.equal(await checksum(client, 's1'), sourceSum, 'the source is untouched');
    assert.equal((await dataFiles(dataDir)).length, 1, 'no destination file is left');
    assert.equal(await poolUsed(client, 'beta', 'bronze'), 0, 'the reservation is released');
    for (let i = 0; i < 3; i++) assert.equal((await client.call('CancelJob', { jobId })).state, 'JOB_STATE_CANCELLED');
    await rejectsWith(client.call('CutoverJob', { jobId }), grpc.status.FAILED_PRECONDITION, /CANCELLED/);
    await client.call('WriteShare', { shareId: 's1', offset: 0, data: Buffer.alloc(1) });
  }

  test('while copying', async (t) => {
    const { client, dataDir } = await serveArray(t);
    const content = await filledShare(client, 's1', 4 * MiB);
    await startJob(client, 'j1', 's1', { maxBandwidthBytesPerSec: MiB, writable: false });
    const copying = await waitForJob(client, 'j1', (j) => j.progress.copiedBytes > 0, 'copying');
    assert.equal(copying.state, 'JOB_STATE_COPYING');
    const cancelled = await client.call('CancelJob', { jobId: 'j1' });
    assert.equal(cancelled.state, 'JOB_STATE_CANCELLED');
    await assertCancelled(client, dataDir, 'j1', sha256(content));
  });

  test('while syncing', async (t) => {
    const { client, dataDir } = await serveArray(t);
    const content = await filledShare(client, 's1', MiB);
    await startJob(client, 'j1', 's1');
    await phase1Done(client, 'j1');
    await client.call('CancelJob', { jobId: 'j1' });
    await assertCancelled(client, dataDir, 'j1', sha256(content));
  });

  test('after an aborted cutover', async (t) => {
    const { client, dataDir } = await serveArray(t);
    const content = await filledShare(client, 's1', MiB);
    await startJob(client, 'j1', 's1', { maxDowntimeMs: 20 });
    await phase1Done(client, 'j1');
    await client.call('SetFaults', { cutoverDelayMs: 100 });
    assert.equal((await client.call('CutoverJob', { jobId: 'j1' })).state, 'JOB_STATE_SYNCING');
    await client.call('CancelJob', { jobId: 'j1' });
    await assertCancelled(client, dataDir, 'j1', sha256(content));
  });

  test('during a cutover it is FAILED_PRECONDITION, and after DONE too', async (t) => {
    const { client } = await serveArray(t);
    await filledShare(client, 's1', MiB);
    await startJob(client, 'j1', 's1', { cutoverAction: 'CUTOVER_ACTION_FORCE', maxDowntimeMs: 10 });
    await phase1Done(client, 'j1');
    await client.call('SetFaults', { cutoverDelayMs: 300 });
    assert.equal((await client.call('CutoverJob', { jobId: 'j1', waitMs: 1 })).state, 'JOB_STATE_CUTTING_OVER');
    await rejectsWith(client.call('CancelJob', { jobId: 'j1' }), grpc.status.FAILED_PRECONDITION, /CUTTING_OVER/);
    assert.equal((await client.call('CutoverJob', { jobId: 'j1' })).state, 'JOB_STATE_DONE');
    await rejectsWith(client.call('CancelJob', { jobId: 'j1' }), grpc.status.FAILED_PRECONDITION, /DONE/);
  });

  test('of a job id never seen answers CANCELLED, and a late StartJob with that id starts nothing', async (t) => {
    const { client, dataDir } = await serveArray(t);
    await filledShare(client, 's1', MiB);
    const ghost = await client.call('CancelJob', { jobId: 'ghost' });
    assert.equal(ghost.state, 'JOB_STATE_CANCELLED');
    const late = await startJob(client, 'ghost', 's1');
    assert.equal(late.state, 'JOB_STATE_CANCELLED');
    assert.equal((await client.call('GetShare', { shareId: 's1' })).migrating, false);
    assert.equal((await dataFiles(dataDir)).length, 1);
  });
});

describe('jobs', () => {
  test('StartJob is idempotent on job_id; different fields are ALREADY_EXISTS; a second job on the share is FAILED_PRECONDITION', async (t) => {
    const { client } = await serveArray(t);
    await filledShare(client, 's1', MiB);
    await client.call('SetFaults', { stallCopy: true });
    const jobs = [];
    for (let i = 0; i < 3; i++) jobs.push(await startJob(client, 'j1', 's1'));
    assert.deepEqual(
      jobs.map((j) => j.createdAt),
      [jobs[0].createdAt, jobs[0].createdAt, jobs[0].createdAt],
    );
    assert.equal((await client.call('ListJobs')).jobs.length, 1);
    await rejectsWith(startJob(client, 'j1', 's1', { writable: false, maxDowntimeMs: 99 }), grpc.status.ALREADY_EXISTS, /writable, max_downtime_ms/);
    await rejectsWith(startJob(client, 'j2', 's1'), grpc.status.FAILED_PRECONDITION, /already being migrated by job j1/);
    await rejectsWith(client.call('DeleteShare', { shareId: 's1' }), grpc.status.FAILED_PRECONDITION, /active migration job j1/);
    await rejectsWith(client.call('CutoverJob', { jobId: 'j1' }), grpc.status.FAILED_PRECONDITION, /COPYING/);
  });

  test('a stalled copy makes no progress until the stall is lifted', async (t) => {
    const { client } = await serveArray(t);
    await filledShare(client, 's1', MiB);
    await client.call('SetFaults', { stallCopy: true });
    await startJob(client, 'j1', 's1');
    // Give the copy every chance to move: a few dozen durable writes' worth of time.
    for (let i = 0; i < 30; i++) await client.call('WriteShare', { shareId: 's1', offset: i * 4 * KiB, data: Buffer.alloc(4 * KiB, i) });
    const stalled = await client.call('GetJob', { jobId: 'j1' });
    assert.equal(stalled.progress.copiedBytes, 0);
    assert.equal(stalled.state, 'JOB_STATE_COPYING');
    await client.call('ClearFaults');
    await phase1Done(client, 'j1');
  });

  test('writable=false: the share is read-only during the job, writable at its source after cancel and at its destination after DONE', async (t) => {
    const { client } = await serveArray(t);
    await filledShare(client, 's1', MiB);
    await startJob(client, 'j1', 's1', { writable: false });
    assert.equal((await client.call('GetShare', { shareId: 's1' })).readOnly, true);
    await rejectsWith(client.call('WriteShare', { shareId: 's1', offset: 0, data: Buffer.alloc(8) }), grpc.status.FAILED_PRECONDITION, /read-only while migration job j1/);
    await client.call('CancelJob', { jobId: 'j1' });
    await client.call('WriteShare', { shareId: 's1', offset: 0, data: Buffer.alloc(8) });

    await startJob(client, 'j2', 's1', { writable: false });
    const wl = await client.call('StartWorkload', { shareId: 's1', blockSize: 4 * KiB, rateBytesPerSec: MiB });
    await phase1Done(client, 'j2');
    await rejectsWith(client.call('WriteShare', { shareId: 's1', offset: 0, data: Buffer.alloc(8) }), grpc.status.FAILED_PRECONDITION, /read-only/);
    const done = await client.call('CutoverJob', { jobId: 'j2' });
    assert.equal(done.state, 'JOB_STATE_DONE');
    const share = await client.call('GetShare', { shareId: 's1' });
    assert.deepEqual([share.backend, share.readOnly], ['beta', false]);
    await client.call('WriteShare', { shareId: 's1', offset: 0, data: Buffer.alloc(8) });
    const stopped = await client.call('StopWorkload', { workloadId: wl.workloadId });
    assert.ok(stopped.writesFailed > 0, 'the workload saw the share read-only');
    assert.match(stopped.lastError, /read-only/);
  });

  test('StartJob reserves the size in the destination pool, cancel releases it, and a pool without room is RESOURCE_EXHAUSTED', async (t) => {
    const { client } = await serveArray(t);
    await filledShare(client, 's1', MiB + 512 * KiB);
    await filledShare(client, 's2', MiB);
    await client.call('SetFaults', { stallCopy: true });
    await startJob(client, 'j1', 's1', { destPool: 'tiny' });
    assert.equal(await poolUsed(client, 'beta', 'tiny'), MiB + 512 * KiB);
    await rejectsWith(startJob(client, 'j2', 's2', { destPool: 'tiny' }), grpc.status.RESOURCE_EXHAUSTED, /pool beta\/tiny lacks room for share s2: need 1048576 bytes, 524288 free/);
    await rejectsWith(client.call('CreateShare', { shareId: 's3', backend: 'beta', pool: 'tiny', sizeBytes: MiB }), grpc.status.RESOURCE_EXHAUSTED, /beta\/tiny/);
    await client.call('CancelJob', { jobId: 'j1' });
    assert.equal(await poolUsed(client, 'beta', 'tiny'), 0);
    await startJob(client, 'j2', 's2', { destPool: 'tiny' });
    await client.call('ClearFaults');
    await phase1Done(client, 'j2');
    await client.call('CutoverJob', { jobId: 'j2' });
    assert.equal(await poolUsed(client, 'beta', 'tiny'), MiB);
    assert.equal(await poolUsed(client, 'alpha', 'gold'), MiB + 512 * KiB, 'only s1 is left in the source pool');
  });

  test('writes that outpace the copy stop the pre-copy with a warning instead of looping, and the cutover still completes, copying the dirty set before it freezes', async (t) => {
    const { client } = await serveArray(t, { config: { ...TEST_CONFIG, maxPasses: 3 } });
    await filledShare(client, 's1', 512 * KiB);
    const wl = await client.call('StartWorkload', { shareId: 's1', rateBytesPerSec: 8 * MiB, blockSize: 4 * KiB, concurrency: 4 });
    // A 10 ms target leaves room for one dirty block: under any write rate this workload reaches, a pass ends with more.
    await startJob(client, 'j1', 's1', { maxBandwidthBytesPerSec: MiB, maxDowntimeMs: 10, cutoverAction: 'CUTOVER_ACTION_FORCE' });
    const job = await phase1Done(client, 'j1');
    const j = job as { converged: boolean; progress: { warning: string; pass: number } };
    assert.equal(j.converged, false);
    assert.match(j.progress.warning, /^not converging: writes \([\d.]+ MiB\/s\) outpace the copy \([\d.]+ MiB\/s\) after 3 passes/);
    await client.call('StopWorkload', { workloadId: wl.workloadId });
    const before = await checksum(client, 's1');
    const done = await client.call('CutoverJob', { jobId: 'j1' });
    assert.equal(done.state, 'JOB_STATE_DONE');
    // The writes stopped before the cutover: catching up copied what the stopped pre-copy left, so nothing was left to the freeze.
    assert.equal(Number(done.cutover.finalDeltaBytes), 0);
    assert.equal(await checksum(client, 's1'), before);
    assert.equal((await client.call('VerifyWorkload', { workloadId: wl.workloadId })).lost, 0);
  });

  test('a job survives a reopen of the array: it resumes, rebuilds its dirty set by hashing, and completes', async (t) => {
    const first = await serveArray(t);
    const content = await filledShare(first.client, 's1', 2 * MiB);
    await startJob(first.client, 'j1', 's1');
    await phase1Done(first.client, 'j1');
    await first.close();
    const second = await serveArray(t, { dataDir: first.dataDir });
    const resumed = await second.client.call('GetJob', { jobId: 'j1' });
    assert.equal(resumed.state, 'JOB_STATE_SYNCING');
    const data = pattern('after-reopen', 4 * KiB);
    await second.client.call('WriteShare', { shareId: 's1', offset: MiB, data });
    data.copy(content, MiB);
    const done = await second.client.call('CutoverJob', { jobId: 'j1' });
    assert.equal(done.state, 'JOB_STATE_DONE');
    assert.equal(done.progress.recopiedAfterCrashBytes, 0, 'a clean close leaves nothing to copy again');
    assert.ok(done.cutover.finalDeltaBytes < MiB, `the rebuild kept the final delta small (${done.cutover.finalDeltaBytes} bytes)`);
    assert.equal(await checksum(second.client, 's1'), sha256(content));
  });

  test('a job that fails as the array closes is discarded before the array closes: the reopened array has it FAILED, with its destination gone', async (t) => {
    const first = await serveArray(t);
    await first.client.call('CreateShare', { shareId: 's1', backend: 'alpha', pool: 'gold', sizeBytes: 256 * KiB });
    await first.client.call('SetFaults', { stallCopy: true });
    await startJob(first.client, 'j1', 's1');
    // The copy finds its source file gone: the job fails, and the array closes while it discards the destination
    // (made slow here, in the array's own BlockStore, so that the close surely comes in the middle of it).
    const blocks = (first.array as unknown as { blocks: BlockStore }).blocks;
    const remove = blocks.remove.bind(blocks);
    blocks.remove = async (fileId) => {
      await new Promise((r) => setTimeout(r, 200));
      await remove(fileId);
    };
    await unlink(path.join(first.dataDir, 'shares', `${first.array.getShare('s1').fileId}.img`));
    await first.client.call('SetFaults', {});
    const until = Date.now() + 10_000;
    while (first.array.jobs.get('j1').record.state !== 'FAILED') {
      assert.ok(Date.now() < until, 'the job failed within 10 s');
      await new Promise((r) => setImmediate(r));
    }
    await first.array.close();
    await first.close();
    const second = await serveArray(t, { dataDir: first.dataDir });
    assert.equal((await second.client.call('GetJob', { jobId: 'j1' })).state, 'JOB_STATE_FAILED');
    assert.deepEqual(await dataFiles(first.dataDir), [], 'no destination left (and the source was gone already)');
  });
});
