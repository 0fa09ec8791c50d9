/**
 * The host data path over the real simulator, end to end in one process:
 * ferryd with its embedded array (alpha and beta on sim-1, gamma on sim-2),
 * the simulator driver loaded through the plugin loader, real gRPC, real
 * LevelDB. alpha -> gamma can only go by the host path (ferryd reads
 * alpha's snapshots and writes gamma's target), alpha -> beta still goes by
 * the array's own job. SIGKILL in every state is in host-path-crash.test.ts.
 */
import assert from 'node:assert/strict';
import { describe, test, type TestContext } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { filledShare, poolUsage, sha256, SimClient } from '../simulator/helpers.ts';
import { HOST_PATH_ARRAY, inProcessDaemon, pluginsDir, tempDir, testConfig, waitForState } from '../helpers.ts';

const KiB = 1024;
const MiB = 1024 * KiB;

async function system(t: TestContext) {
  const dir = tempDir(t);
  const config = testConfig(`${dir}/data`, { simulator: { config: HOST_PATH_ARRAY }, engine: { minPollMs: 1 }, hostPath: { warmIntervalMs: 50, batchBytes: 256 * KiB } }, pluginsDir(dir, ['simulator']));
  const { daemon, client } = await inProcessDaemon(t, config);
  const sim = new SimClient(daemon.address);
  t.after(() => sim.close());
  return { daemon, client, sim };
}

/** A share on alpha#gold, filled (with metadata to carry); its SHA-256. */
const shareWithData = async (sim: SimClient, shareId: string, size = 2 * MiB): Promise<string> =>
  sha256(await filledShare(sim, shareId, size, { backend: 'alpha', pool: 'gold', metadata: { owner: 'team-a' } }));

/** Bytes used in backend#pool, as the array counts them (shares, targets, places not yet retired). */
const usedBytes = async (sim: SimClient, backend: string, pool: string): Promise<number> => (await poolUsage(sim))[`${backend}#${pool}`]!;

/** No snapshot the migration could have taken is left on the array (ids are `<migration>-s<n>`). */
async function assertNoSnapshots(sim: SimClient, shareId: string, migrationId: string): Promise<void> {
  for (let n = 1; n <= 100; n++) {
    await assert.rejects(
      sim.call('ListChangedExtents', { shareId, snapshotId: `${migrationId}-s${n}`, maxExtents: 1 }),
      (err: grpc.ServiceError) => err.code === grpc.status.NOT_FOUND,
      `snapshot ${migrationId}-s${n} was left behind`,
    );
  }
}

const ALPHA = (shareId: string) => ({ backend: 'alpha', shareId });

describe('the host data path over the simulator', () => {
  test('alpha -> gamma (another array) is the host path with data_path unset; alpha -> beta is still the driver path', async (t) => {
    const { client, sim } = await system(t);
    await shareWithData(sim, 'p1');
    const host = await client.checkCompatibility({ share: ALPHA('p1'), destination: 'gamma#iron', writable: true, nondisruptive: true });
    assert.equal(host.compatible, true, host.reasons.join('; '));
    assert.equal(host.dataPath, 'DATA_PATH_HOST');
    assert.equal(host.destinationFreeBytes, 256 * MiB);
    const driver = await client.checkCompatibility({ share: ALPHA('p1'), destination: 'beta#bronze', writable: true, nondisruptive: true });
    assert.equal(driver.dataPath, 'DATA_PATH_DRIVER');
    const refused = await client.checkCompatibility({ share: ALPHA('p1'), destination: 'gamma#iron', dataPath: 'DATA_PATH_DRIVER' });
    assert.equal(refused.compatible, false);
    assert.match(refused.reasons.join('\n'), /cannot reach gamma#iron/);

    const m = await client.startMigration({ share: ALPHA('p1'), destination: 'beta#bronze', writable: true });
    assert.equal(m.dataPath, 'DATA_PATH_DRIVER');
    await waitForState(client, m.id, 'PHASE1_DONE');
    const job = await sim.call('GetJob', { jobId: m.id });
    assert.equal(job.jobId, m.id, 'the driver path runs as the array\'s own job');
    await client.cancelMigration(m.id);
    await waitForState(client, m.id, 'CANCELLED');
  });

  test('migrates alpha -> gamma under a random-write workload: every acknowledged write lands, the share lives on gamma#iron, alpha is freed', async (t) => {
    const { client, sim } = await system(t);
    await shareWithData(sim, 'w1', 4 * MiB);
    const aloneOnAlpha = await usedBytes(sim, 'alpha', 'gold');
    const workload = await sim.call('StartWorkload', { shareId: 'w1', rateBytesPerSec: 2 * MiB, blockSize: 4 * KiB, pattern: 'RANDOM', seed: 11, concurrency: 2 });
    const m = await client.startMigration({ share: ALPHA('w1'), destination: 'gamma#iron', writable: true, nondisruptive: true, preserveMetadata: true, maxDowntimeMs: 2_000 });
    assert.equal(m.dataPath, 'DATA_PATH_HOST');
    assert.equal((await sim.call('GetJob', { jobId: m.id }).catch((err: grpc.ServiceError) => err)).code, grpc.status.NOT_FOUND, 'the host path made an array job');
    await waitForState(client, m.id, 'PHASE1_DONE');
    await client.completeMigration(m.id);
    const done = await waitForState(client, m.id, 'SUCCESS');
    assert.equal(done.dataPath, 'DATA_PATH_HOST');
    assert.ok(done.cutover && done.cutover.freezeMs > 0, 'no cutover figures');
    assert.ok(done.cutover.freezeMs < 2_000, `the freeze (${done.cutover.freezeMs} ms) outlasted the window`);

    const stopped = await sim.call('StopWorkload', { workloadId: workload.workloadId });
    assert.ok(Number(stopped.writesAcked) > 0, 'the workload wrote nothing');
    const verify = await sim.call('VerifyWorkload', { workloadId: workload.workloadId });
    assert.ok(Number(verify.checked) > 0);
    assert.equal(Number(verify.lost), 0, 'an acknowledged write was lost');
    const share = await sim.call('GetShare', { shareId: 'w1' });
    assert.deepEqual([share.backend, share.pool], ['gamma', 'iron']);
    assert.deepEqual(share.metadata, { owner: 'team-a' }, 'preserve_metadata did not carry the metadata');
    assert.equal(await usedBytes(sim, 'alpha', 'gold'), aloneOnAlpha - 4 * MiB, 'the source\'s place on alpha was not retired');
    assert.equal(await usedBytes(sim, 'gamma', 'iron'), 4 * MiB);
    await assertNoSnapshots(sim, 'w1', m.id);
  });

  test('moves the bytes unchanged with no writes (checksum at gamma equals the checksum at alpha), with the migrate loop', async (t) => {
    const { client, sim } = await system(t);
    const before = await shareWithData(sim, 'q1', 3 * MiB + 5 * KiB);
    const final = await client.migrate({ share: ALPHA('q1'), destination: 'gamma#iron', writable: true });
    assert.equal(final.state, 'MIGRATION_STATE_SUCCESS');
    assert.equal(final.progress.copiedBytes, 3 * MiB + 5 * KiB);
    assert.equal((await sim.call('ChecksumShare', { shareId: 'q1' })).sha256, before);
    const shares = (await sim.call('ListShares', {})).shares as { shareId: string; backend: string }[];
    assert.deepEqual(shares.map((s) => [s.shareId, s.backend]), [['q1', 'gamma']]);
  });

  test('cancel in PHASE1_DONE leaves the source intact and writable, nothing on gamma and no snapshot on alpha', async (t) => {
    const { client, sim } = await system(t);
    const before = await shareWithData(sim, 'c1');
    const m = await client.startMigration({ share: ALPHA('c1'), destination: 'gamma#iron', writable: true, nondisruptive: true });
    await waitForState(client, m.id, 'PHASE1_DONE');
    assert.equal(await usedBytes(sim, 'gamma', 'iron'), 2 * MiB, 'the target holds its room while the migration lives');
    await client.cancelMigration(m.id);
    await waitForState(client, m.id, 'CANCELLED');
    assert.equal(await usedBytes(sim, 'gamma', 'iron'), 0, 'the target was left on gamma');
    await assertNoSnapshots(sim, 'c1', m.id);
    const share = await sim.call('GetShare', { shareId: 'c1' });
    assert.equal(share.backend, 'alpha');
    assert.equal((await sim.call('ChecksumShare', { shareId: 'c1' })).sha256, before);
    await sim.call('WriteShare', { shareId: 'c1', offset: 0, data: Buffer.alloc(4 * KiB, 1) }, 5_000);
  });

  test('cancel while the first pass is copying stops it and removes what it made', async (t) => {
    const { client, sim } = await system(t);
    await shareWithData(sim, 'c2', 4 * MiB);
    const m = await client.startMigration({ share: ALPHA('c2'), destination: 'gamma#iron', writable: true, maxBandwidthBytesPerSec: 1 * MiB });
    await client.waitFor(m.id, (x) => x.state === 'MIGRATION_STATE_IN_PROGRESS' && x.progress.copiedBytes > 0);
    await client.cancelMigration(m.id);
    const end = await waitForState(client, m.id, 'CANCELLED');
    assert.ok(end.progress.copiedBytes < 4 * MiB, 'the copy ran to its end before the cancel');
    assert.equal(await usedBytes(sim, 'gamma', 'iron'), 0, 'the target was left on gamma');
    await assertNoSnapshots(sim, 'c2', m.id);
  });
});
