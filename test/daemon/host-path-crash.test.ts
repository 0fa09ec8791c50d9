/**
 * SIGKILL of ferryd in every state of a host-path migration (alpha, on
 * sim-1, to gamma, on sim-2), then a new ferryd on the same data dir: each
 * migration reaches the state it would have reached, the share's bytes are
 * intact where it ends, nothing is left on the other array, and the copy
 * resumes from the mover's saved place rather than from the start. The
 * embedded array dies with ferryd, so its snapshots, freezes and targets
 * are resumed from its own LevelDB too. Latency injected on one array call
 * holds ferryd at the point to kill it, found from its log.
 */
import assert from 'node:assert/strict';
import { describe, test, type TestContext } from 'node:test';
import { filledShare, poolUsage, sha256, type SimClient } from '../simulator/helpers.ts';
import { HOST_PATH_ARRAY, kill9, waitForLog, waitForState, type ChildDaemon } from '../helpers.ts';
import { bootDaemon, childDaemonArgs } from './process-helpers.ts';

const KiB = 1024;
const MiB = 1024 * KiB;
const SIZE = 4 * MiB;
const BATCH = 256 * KiB;
const SHARE = { backend: 'alpha', shareId: 'h1' };
const START = { share: SHARE, destination: 'gamma#iron', writable: true, nondisruptive: true, maxDowntimeMs: 30_000 };

const setup = (t: TestContext): string[] =>
  childDaemonArgs(t, { simulator: { config: HOST_PATH_ARRAY }, engine: { minPollMs: 1 }, hostPath: { batchBytes: BATCH, warmIntervalMs: 50 } });

/** The share, filled; its SHA-256. */
const shareWithData = async (sim: SimClient): Promise<string> => sha256(await filledShare(sim, SHARE.shareId, SIZE));

/** The share lives on `backend` with its bytes, and nothing else holds room on either array. */
async function assertShare(sim: SimClient, backend: 'alpha' | 'gamma', checksum: string): Promise<void> {
  const share = await sim.call('GetShare', { shareId: SHARE.shareId });
  assert.equal(share.backend, backend);
  assert.equal((await sim.call('ChecksumShare', { shareId: SHARE.shareId })).sha256, checksum, 'the data changed');
  const room = await poolUsage(sim);
  assert.deepEqual(room, { 'alpha#gold': backend === 'alpha' ? SIZE : 0, 'beta#bronze': 0, 'beta#tiny': 0, 'gamma#iron': backend === 'gamma' ? SIZE : 0 }, 'a target or a retired place was left behind');
}

/** The bytes the mover sent over the whole migration (both daemons: its place keeps the count), from the "cutover committed" line. */
async function sentBytes(d: ChildDaemon): Promise<number> {
  return Number((await waitForLog(d, 'host path: cutover committed')).sentBytes);
}

describe('SIGKILL of ferryd during a host-path migration, and a restart on the same data dir', () => {
  test('in STARTING (held in CreateTarget): the start is made again and the migration succeeds', async (t) => {
    const args = setup(t);
    const a = await bootDaemon(t, args);
    const sum = await shareWithData(a.sim);
    await a.sim.call('SetFaults', { latencyMs: { CreateTarget: 3_000 } });
    const m = await a.client.startMigration(START);
    assert.equal(m.state, 'MIGRATION_STATE_STARTING');
    assert.equal(m.dataPath, 'DATA_PATH_HOST');
    await kill9(a.daemon);

    const b = await bootDaemon(t, args);
    await b.sim.call('ClearFaults', {});
    await waitForState(b.client, m.id, 'PHASE1_DONE');
    await b.client.completeMigration(m.id);
    await waitForState(b.client, m.id, 'SUCCESS');
    await assertShare(b.sim, 'gamma', sum);
  });

  test('in IN_PROGRESS: the copy resumes from the last verified batch, not from the start', async (t) => {
    const args = setup(t);
    const a = await bootDaemon(t, args);
    const sum = await shareWithData(a.sim);
    const m = await a.client.startMigration({ ...START, maxBandwidthBytesPerSec: 2 * MiB });
    const seen = await a.client.waitFor(m.id, (x) => x.state === 'MIGRATION_STATE_IN_PROGRESS' && x.progress.copiedBytes >= SIZE / 2);
    await kill9(a.daemon);

    const b = await bootDaemon(t, args);
    const resumed = await b.client.getMigration(m.id);
    assert.equal(resumed.state, 'MIGRATION_STATE_IN_PROGRESS');
    assert.ok(resumed.progress.copiedBytes >= seen.progress.copiedBytes, `copied_bytes went back from ${seen.progress.copiedBytes} to ${resumed.progress.copiedBytes}`);
    await waitForState(b.client, m.id, 'PHASE1_DONE');
    await b.client.completeMigration(m.id);
    await waitForState(b.client, m.id, 'SUCCESS');
    await assertShare(b.sim, 'gamma', sum);
    // No writes were made: over both daemons the verified batches add up to the share once (a batch verified but not yet
    // saved when ferryd died, at most one, counts twice); the batches still being written at the kill are not counted.
    const sent = await sentBytes(b.daemon);
    assert.ok(sent >= SIZE && sent <= SIZE + BATCH, `the mover sent ${sent} bytes of a ${SIZE}-byte share over both daemons`);
  });

  test('in PHASE1_DONE: kept warm after the restart and completed', async (t) => {
    const args = setup(t);
    const a = await bootDaemon(t, args);
    const sum = await shareWithData(a.sim);
    const m = await a.client.startMigration(START);
    await waitForState(a.client, m.id, 'PHASE1_DONE');
    await kill9(a.daemon);

    const b = await bootDaemon(t, args);
    assert.equal((await b.client.getMigration(m.id)).state, 'MIGRATION_STATE_PHASE1_DONE');
    await b.sim.call('WriteShare', { shareId: SHARE.shareId, offset: MiB, data: Buffer.alloc(64 * KiB, 7) });
    const after = (await b.sim.call('ChecksumShare', { shareId: SHARE.shareId })).sha256 as string;
    assert.notEqual(after, sum);
    await b.client.completeMigration(m.id);
    await waitForState(b.client, m.id, 'SUCCESS');
    await assertShare(b.sim, 'gamma', after);
    // The share once, then the blocks written (64 KiB) by the passes after the restart; a copy from the start would be 2x.
    const sent = await sentBytes(b.daemon);
    assert.ok(sent <= SIZE + BATCH, `the mover sent ${sent} bytes of a ${SIZE}-byte share over both daemons`);
  });

  test('in COMPLETING before the commit (held in PromoteTarget): the cutover is done again and succeeds', async (t) => {
    const args = setup(t);
    const a = await bootDaemon(t, args);
    const sum = await shareWithData(a.sim);
    const m = await a.client.startMigration(START);
    await waitForState(a.client, m.id, 'PHASE1_DONE');
    await a.sim.call('SetFaults', { latencyMs: { PromoteTarget: 3_000 } });
    await a.client.completeMigration(m.id);
    await waitForLog(a.daemon, 'host path: the last delta is verified; promoting the target');
    await kill9(a.daemon);

    const b = await bootDaemon(t, args);
    await b.sim.call('ClearFaults', {});
    assert.equal((await b.sim.call('GetShare', { shareId: SHARE.shareId })).backend, 'alpha', 'the promote ran though ferryd died before it');
    assert.equal((await b.client.getMigration(m.id)).state, 'MIGRATION_STATE_COMPLETING');
    await waitForState(b.client, m.id, 'SUCCESS');
    await assertShare(b.sim, 'gamma', sum);
  });

  test('in COMPLETING after the commit (held in RetireShare): it rolls forward to SUCCESS and the source is retired', async (t) => {
    const args = setup(t);
    const a = await bootDaemon(t, args);
    const sum = await shareWithData(a.sim);
    const m = await a.client.startMigration(START);
    await waitForState(a.client, m.id, 'PHASE1_DONE');
    await a.sim.call('SetFaults', { latencyMs: { RetireShare: 3_000 } });
    await a.client.completeMigration(m.id);
    await waitForLog(a.daemon, 'host path: the target is promoted (the commit point); releasing the writes and retiring the source');
    await kill9(a.daemon);

    const b = await bootDaemon(t, args);
    assert.equal((await b.sim.call('GetShare', { shareId: SHARE.shareId })).backend, 'gamma');
    await b.sim.call('ClearFaults', {});
    assert.equal((await b.client.getMigration(m.id)).state, 'MIGRATION_STATE_COMPLETING');
    await waitForState(b.client, m.id, 'SUCCESS');
    await assertShare(b.sim, 'gamma', sum);
    // The share takes writes at its new home.
    await b.sim.call('WriteShare', { shareId: SHARE.shareId, offset: 0, data: Buffer.alloc(4 * KiB, 3) }, 5_000);
  });

  test('in CANCELLING (held in DiscardTarget): the cancel is done again, the source is intact and gamma is empty', async (t) => {
    const args = setup(t);
    const a = await bootDaemon(t, args);
    const sum = await shareWithData(a.sim);
    const m = await a.client.startMigration(START);
    await waitForState(a.client, m.id, 'PHASE1_DONE');
    await a.sim.call('SetFaults', { latencyMs: { DiscardTarget: 3_000 } });
    await a.client.cancelMigration(m.id);
    await kill9(a.daemon);

    const b = await bootDaemon(t, args);
    await b.sim.call('ClearFaults', {});
    assert.equal((await b.client.getMigration(m.id)).state, 'MIGRATION_STATE_CANCELLING');
    await waitForState(b.client, m.id, 'CANCELLED');
    await assertShare(b.sim, 'alpha', sum);
  });
});
