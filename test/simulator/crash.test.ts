/**
 * Crashes of the process hosting the array, for real: ferry-sim runs as a
 * child process, an injected crash point makes it SIGKILL itself, and a new
 * process on the same data dir must resume the job with nothing lost.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { TEST_CONFIG, configFile, dataFiles, filledShare, pattern, phase1Done, poolUsage, sha256, spawnSim, tempDir, waitForJob } from './helpers.ts';
import type { SimClient } from './helpers.ts';

const KiB = 1024;
const MiB = 1024 * KiB;

async function checksum(client: SimClient, shareId: string): Promise<string> {
  return (await client.call('ChecksumShare', { shareId })).sha256;
}

describe('crash of the hosting process', () => {
  test('mid-copy: the job resumes from its checkpoint, recopies at most the chunks in flight plus what was written, and loses nothing', async (t) => {
    const dir = await tempDir(t);
    const dataDir = `${dir}/data`;
    const config = await configFile(dir);
    const first = await spawnSim(t, dataDir, config);
    const size = 4 * MiB;
    const content = await filledShare(first.client, 's1', size);
    // A slow disk keeps pass 1 going long enough for our writes to land behind and ahead of the copy.
    await first.client.call('SetFaults', { crashAt: 'CRASH_POINT_DURING_COPY', copyBandwidthBytesPerSec: 4 * MiB });
    await first.client.call('StartJob', { jobId: 'j1', shareId: 's1', destBackend: 'beta', destPool: 'bronze', writable: true, nondisruptive: true });
    // Acknowledged writes, recorded here, until the process dies under us.
    const blocks = size / (4 * KiB);
    let written = 0;
    // The write in flight when the process died was never acknowledged: it may or may not have landed.
    let unacked: { offset: number; data: Buffer } | undefined;
    for (let i = 0; ; i++) {
      const offset = ((i * 37) % blocks) * 4 * KiB;
      const data = pattern(`crash-${i}`, 4 * KiB);
      try {
        await first.client.call('WriteShare', { shareId: 's1', offset, data }, 5000);
      } catch {
        unacked = { offset, data };
        break;
      }
      data.copy(content, offset);
      written++;
    }
    const exit = await first.exited;
    assert.equal(exit.signal, 'SIGKILL');
    assert.ok(written > 0);

    const second = await spawnSim(t, dataDir, config);
    const faults = await second.client.call('GetFaults');
    assert.equal(faults.crashAt, 'CRASH_POINT_NONE', 'the crash point was cleared before it fired');
    const resumed = await second.client.call('GetJob', { jobId: 'j1' });
    assert.equal(resumed.state, 'JOB_STATE_COPYING');
    await second.client.call('SetFaults', {});
    const synced = (await phase1Done(second.client, 'j1')) as { progress: { recopiedAfterCrashBytes: number } };
    const bound = (TEST_CONFIG.workers! + 1) * TEST_CONFIG.chunkSizeBytes! + written * 4 * KiB;
    assert.ok(synced.progress.recopiedAfterCrashBytes <= bound, `recopied ${synced.progress.recopiedAfterCrashBytes} <= ${bound}`);

    const done = await second.client.call('CutoverJob', { jobId: 'j1' });
    assert.equal(done.state, 'JOB_STATE_DONE', done.lastAbortReason);
    // The rebuild told the destination's good blocks from the stale ones; without it the freeze would recopy everything copied before the crash.
    assert.ok(done.cutover.finalDeltaBytes < size / 2, `final delta ${done.cutover.finalDeltaBytes} < ${size / 2}`);
    const withUnacked = Buffer.from(content);
    if (unacked) unacked.data.copy(withUnacked, unacked.offset);
    assert.ok(
      [sha256(content), sha256(withUnacked)].includes(await checksum(second.client, 's1')),
      'every acknowledged write is at the destination',
    );
  });

  test('in StartJob, after the destination file is created and before the record: the restarted array has no job, deletes the file, and a retried StartJob starts it', async (t) => {
    const dir = await tempDir(t);
    const dataDir = `${dir}/data`;
    const config = await configFile(dir);
    const first = await spawnSim(t, dataDir, config);
    await first.client.call('CreateShare', { shareId: 's1', backend: 'alpha', pool: 'gold', sizeBytes: 1 * MiB });
    await first.client.call('SetFaults', { crashAt: 'CRASH_POINT_START_BEFORE_RECORD' });
    const start = { jobId: 'j1', shareId: 's1', destBackend: 'beta', destPool: 'bronze', writable: true };
    await first.client.call('StartJob', start).then(
      () => assert.fail('StartJob answered; the process should have died before the record'),
      () => undefined,
    );
    assert.equal((await first.exited).signal, 'SIGKILL');
    assert.equal((await dataFiles(dataDir)).length, 2, 'the crash left the destination file behind');

    const second = await spawnSim(t, dataDir, config);
    await assert.rejects(second.client.call('GetJob', { jobId: 'j1' }), (err: { code: number }) => err.code === 5, 'no job j1 (NOT_FOUND)');
    assert.equal((await second.client.call('GetShare', { shareId: 's1' })).migrating, false);
    assert.equal((await poolUsage(second.client))['beta#bronze'], 0, 'no space held');
    assert.equal((await dataFiles(dataDir)).length, 1, 'the orphan destination was deleted on open');
    assert.equal((await second.client.call('StartJob', start)).state, 'JOB_STATE_COPYING');
    assert.equal((await phase1Done(second.client, 'j1')).state, 'JOB_STATE_SYNCING');
  });

  for (const [point, switched] of [
    ['CRASH_POINT_CUTOVER_BEFORE_SWITCH', false],
    ['CRASH_POINT_CUTOVER_AFTER_SWITCH', true],
  ] as const) {
    test(`mid-cutover (${point}): the restart ${switched ? 'rolls forward to DONE' : 'rolls back to the source'} and no acknowledged write is lost`, async (t) => {
      const dir = await tempDir(t);
      const dataDir = `${dir}/data`;
      const config = await configFile(dir);
      const first = await spawnSim(t, dataDir, config);
      await filledShare(first.client, 's1', 2 * MiB);
      const wl = await first.client.call('StartWorkload', { shareId: 's1', rateBytesPerSec: 4 * MiB, blockSize: 4 * KiB, concurrency: 4, seed: 11 });
      await first.client.call('StartJob', { jobId: 'j1', shareId: 's1', destBackend: 'beta', destPool: 'bronze', writable: true, nondisruptive: true });
      await phase1Done(first.client, 'j1');
      await waitForJob(first.client, 'j1', (j) => j.progress.sentBytes > j.progress.totalBytes, 'writes copied again');
      await first.client.call('SetFaults', { crashAt: point });
      await first.client.call('CutoverJob', { jobId: 'j1' }).catch(() => undefined);
      assert.equal((await first.exited).signal, 'SIGKILL');

      const second = await spawnSim(t, dataDir, config);
      assert.equal((await second.client.call('GetFaults')).crashAt, 'CRASH_POINT_NONE');
      const workload = await second.client.call('GetWorkload', { workloadId: wl.workloadId });
      assert.equal(workload.state, 'WORKLOAD_STATE_STOPPED');
      assert.equal(workload.stopReason, 'array restarted');
      const verify = await second.client.call('VerifyWorkload', { workloadId: wl.workloadId });
      assert.ok(verify.checked > 0);
      assert.equal(verify.lost, 0, `lost at ${verify.lostOffsets}`);

      const job = await second.client.call('GetJob', { jobId: 'j1' });
      const share = await second.client.call('GetShare', { shareId: 's1' });
      if (switched) {
        assert.equal(job.state, 'JOB_STATE_DONE');
        assert.deepEqual([share.backend, share.pool, share.migrating], ['beta', 'bronze', false]);
        assert.equal((await dataFiles(dataDir)).length, 1, 'the source was deleted on restart');
      } else {
        assert.equal(job.state, 'JOB_STATE_SYNCING');
        assert.equal(job.lastAbortReason, '', 'a restart is not a window abort');
        assert.deepEqual([share.backend, share.pool, share.migrating], ['alpha', 'gold', true]);
        const before = await checksum(second.client, 's1');
        const done = await second.client.call('CutoverJob', { jobId: 'j1' });
        assert.equal(done.state, 'JOB_STATE_DONE', done.lastAbortReason);
        assert.equal(await checksum(second.client, 's1'), before);
        assert.equal((await second.client.call('VerifyWorkload', { workloadId: wl.workloadId })).lost, 0);
        assert.equal((await dataFiles(dataDir)).length, 1);
      }
    });
  }
});
