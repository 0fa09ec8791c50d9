/**
 * The cutover's freeze is bounded (real array, files, LevelDB, worker
 * threads, gRPC): bulk work happens before it, with writes flowing, and
 * under CUTOVER_ACTION_ABORT it ends at the window whatever step runs,
 * giving its final delta back so that no acknowledged write is lost.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { filledShare, pattern, phase1Done, serveArray, sha256, waitForJob } from './helpers.ts';
import type { SimClient } from './helpers.ts';

const KiB = 1024;
const MiB = 1024 * KiB;

/** StartJob to beta/bronze, writable and nondisruptive, ABORT, with `extra`. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
function startJob(client: SimClient, jobId: string, shareId: string, extra: object = {}): Promise<any> {
  return client.call('StartJob', { jobId, shareId, destBackend: 'beta', destPool: 'bronze', writable: true, nondisruptive: true, cutoverAction: 'CUTOVER_ACTION_ABORT', ...extra });
}

async function checksum(client: SimClient, shareId: string): Promise<string> {
  return (await client.call('ChecksumShare', { shareId })).sha256;
}

describe('the freeze holds no bulk work', () => {
  test('a cutover asked the instant phase 1 is done verifies the backlog before it freezes: the freeze verifies only its final delta', async (t) => {
    const { client, array } = await serveArray(t);
    await filledShare(client, 's1', 2 * MiB);
    const wl = await client.call('StartWorkload', { shareId: 's1', rateBytesPerSec: MiB, blockSize: 4 * KiB, pattern: 'WRITE_PATTERN_RANDOM', seed: 3, concurrency: 2 });
    // The cap paces the background sweep too: it needs about half a second to verify what phase 1 copied.
    await startJob(client, 'j1', 's1', { maxBandwidthBytesPerSec: 4 * MiB, maxDowntimeMs: 500 });
    const asked = await phase1Done(client, 'j1');
    const done = await client.call('CutoverJob', { jobId: 'j1' });
    assert.ok(asked.progress.verifiedBytes < MiB, `the sweep had verified ${asked.progress.verifiedBytes} bytes when the cutover was asked for`);
    assert.equal(done.state, 'JOB_STATE_DONE', done.lastAbortReason);
    assert.equal(done.cutoverAttempts, 1);

    assert.equal(Number(done.cutover.verifiedBytes), Number(done.cutover.finalDeltaBytes), 'the freeze verified exactly the blocks it copied');
    const { caughtUp } = array.jobs.get('j1').record.cutover!;
    assert.ok(caughtUp && caughtUp.verifiedBytes >= MiB, `before the freeze ${caughtUp?.verifiedBytes} bytes were verified`);

    await client.call('StopWorkload', { workloadId: wl.workloadId });
    assert.equal((await client.call('VerifyWorkload', { workloadId: wl.workloadId })).lost, 0);
  });
});

describe('catching up', () => {
  test('the array closing while a cutover catches up stops it unfrozen; reopened, the job is SYNCING on its source and cuts over', async (t) => {
    const first = await serveArray(t);
    const content = await filledShare(first.client, 's1', MiB);
    // A slow disk from the start: the copy and the sweep share it, so when phase 1 is done the sweep has
    // barely begun, and verifying the rest takes seconds, all of it before the freeze.
    await first.client.call('SetFaults', { copyBandwidthBytesPerSec: 256 * KiB });
    await startJob(first.client, 'j1', 's1');
    await phase1Done(first.client, 'j1');
    const catching = await first.client.call('CutoverJob', { jobId: 'j1', waitMs: 1 });
    assert.deepEqual([catching.state, catching.frozen], ['JOB_STATE_CUTTING_OVER', false]);
    await first.close();
    assert.equal(first.array.data.gate('s1').freezes, 0, 'the share was never frozen');

    const second = await serveArray(t, { dataDir: first.dataDir });
    const reopened = await second.client.call('GetJob', { jobId: 'j1' });
    assert.deepEqual([reopened.state, reopened.cutoverAttempts, reopened.lastAbortReason], ['JOB_STATE_SYNCING', 1, '']);
    assert.equal((await second.client.call('GetShare', { shareId: 's1' })).backend, 'alpha');
    await second.client.call('ClearFaults');
    const done = await second.client.call('CutoverJob', { jobId: 'j1' });
    assert.equal(done.state, 'JOB_STATE_DONE', done.lastAbortReason);
    assert.equal(await checksum(second.client, 's1'), sha256(content));
  });
});

describe('the window bounds the freeze (ABORT)', () => {
  test('the freeze ends at the window in the middle of a step, and the final delta it took goes back to the dirty set', async (t) => {
    const { client, array } = await serveArray(t);
    const content = await filledShare(client, 's1', MiB);
    await startJob(client, 'j1', 's1', { maxDowntimeMs: 200 });
    await phase1Done(client, 'j1');
    // One block written while the copy is stalled stays dirty: catching up leaves a single block to the freeze,
    // and the stall does not hold the freeze's own copy.
    await client.call('SetFaults', { stallCopy: true });
    const before = pattern('before-the-freeze', 4 * KiB);
    await client.call('WriteShare', { shareId: 's1', offset: 20 * KiB, data: before });
    before.copy(content, 20 * KiB);
    // The final copy takes 3 s more, and that step does not stop at the deadline (as an fdatasync would not); the window is 200 ms.
    const delay = 3000;
    await client.call('SetFaults', { stallCopy: true, cutoverDelayMs: delay });
    const cutover = client.call('CutoverJob', { jobId: 'j1', waitMs: 10_000 });
    await waitForJob(client, 'j1', (j) => j.frozen, 'frozen');
    const during = pattern('during-the-freeze', 4 * KiB);
    await client.call('WriteShare', { shareId: 's1', offset: 40 * KiB, data: during });
    during.copy(content, 40 * KiB);
    // The write that waited at the gate is acknowledged: the freeze is over while its step still runs.
    const settling = await client.call('GetJob', { jobId: 'j1' });
    assert.deepEqual([settling.state, settling.frozen], ['JOB_STATE_CUTTING_OVER', false]);
    assert.ok(array.data.gate('s1').lastFreezeMs < delay, `the freeze lasted ${array.data.gate('s1').lastFreezeMs} ms`);

    const aborted = await cutover;
    assert.equal(aborted.state, 'JOB_STATE_SYNCING');
    assert.match(aborted.lastAbortReason, /^cutover exceeded its 200 ms window \([\d.]+ ms frozen, while copying the final delta\); writes resumed on the source$/);
    const share = await client.call('GetShare', { shareId: 's1' });
    assert.deepEqual([share.backend, share.pool], ['alpha', 'gold'], 'the write landed on the source');

    await client.call('ClearFaults');
    const done = await client.call('CutoverJob', { jobId: 'j1' });
    assert.equal(done.state, 'JOB_STATE_DONE', done.lastAbortReason);
    assert.equal(done.cutoverAttempts, 2);
    assert.equal(await checksum(client, 's1'), sha256(content), 'both writes reached the destination');
  });
});
