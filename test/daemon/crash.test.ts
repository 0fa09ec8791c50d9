/**
 * Crash and restart of real ferryd processes: SIGKILL in every migration
 * state, then a new daemon on the same data dir. Each migration must reach
 * the state it would have reached, with its data intact and nothing left
 * behind. The embedded array dies with the daemon, so this also exercises
 * the array's own resume.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, test } from 'node:test';
import type { TestContext } from 'node:test';
import type { SimClient } from '../simulator/helpers.ts';
import { kill9, SMALL_ARRAY, spawnDaemon, waitForState } from '../helpers.ts';
import { bootDaemon, childDaemonArgs } from './process-helpers.ts';

const MiB = 1024 * 1024;
const SHARE = { backend: 'alpha', shareId: 'c1' };
const START = { share: SHARE, destination: 'beta#bronze', writable: true, nondisruptive: true };

/** A data dir and a config file that survive the daemons started on them. */
const setup = (t: TestContext): { args: string[] } => ({ args: childDaemonArgs(t, { simulator: { config: SMALL_ARRAY }, engine: { minPollMs: 1 } }) });

async function shareWithData(sim: SimClient, size = 4 * MiB): Promise<string> {
  await sim.call('CreateShare', { shareId: SHARE.shareId, backend: 'alpha', pool: 'gold', sizeBytes: size });
  for (let off = 0; off < size; off += 1 * MiB) await sim.call('WriteShare', { shareId: SHARE.shareId, offset: off, data: randomBytes(1 * MiB) });
  return (await sim.call('ChecksumShare', { shareId: SHARE.shareId })).sha256 as string;
}

/** The share lives where it should, with the bytes it had, and no other share is on the array. */
async function assertShare(sim: SimClient, backend: string, checksum: string): Promise<void> {
  const share = await sim.call('GetShare', { shareId: SHARE.shareId });
  assert.equal(share.backend, backend);
  assert.equal(share.migrating, false);
  assert.equal((await sim.call('ChecksumShare', { shareId: SHARE.shareId })).sha256, checksum, 'the data changed');
  const shares = (await sim.call('ListShares', {})).shares as unknown[];
  assert.equal(shares.length, 1, 'a destination or source copy was left behind');
}

describe('SIGKILL of ferryd and restart on the same data dir', () => {
  test('in STARTING: start is issued again (idempotently) and the migration completes', async (t) => {
    const { args } = setup(t);
    const a = await bootDaemon(t, args);
    const sum = await shareWithData(a.sim);
    // Hold the array's StartJob so that the daemon is surely in STARTING when it dies.
    await a.sim.call('SetFaults', { latencyMs: { StartJob: 3_000 } });
    const m = await a.client.startMigration(START);
    assert.equal(m.state, 'MIGRATION_STATE_STARTING');
    await kill9(a.daemon);

    const b = await bootDaemon(t, args);
    await b.sim.call('ClearFaults', {});
    assert.equal((await b.client.getMigration(m.id)).state, 'MIGRATION_STATE_STARTING');
    await waitForState(b.client, m.id, 'PHASE1_DONE');
    await b.client.completeMigration(m.id);
    await waitForState(b.client, m.id, 'SUCCESS');
    await assertShare(b.sim, 'beta', sum);
  });

  test('in IN_PROGRESS (killed by the array mid-copy): the copy resumes from its checkpoint and completes', async (t) => {
    const { args } = setup(t);
    const a = await bootDaemon(t, args);
    const sum = await shareWithData(a.sim);
    await a.sim.call('SetFaults', { crashAt: 'CRASH_POINT_DURING_COPY' });
    const m = await a.client.startMigration({ ...START, maxBandwidthBytesPerSec: 8 * MiB });
    const exit = await a.daemon.exited;
    assert.equal(exit.signal, 'SIGKILL');

    const b = await bootDaemon(t, args);
    const resumed = await b.client.getMigration(m.id);
    assert.equal(resumed.state, 'MIGRATION_STATE_IN_PROGRESS');
    await waitForState(b.client, m.id, 'PHASE1_DONE');
    const job = await b.sim.call('GetJob', { jobId: m.id });
    assert.ok(job.progress.recopiedAfterCrashBytes < 4 * MiB, `the whole share was copied again (${job.progress.recopiedAfterCrashBytes} bytes)`);
    await b.client.completeMigration(m.id);
    await waitForState(b.client, m.id, 'SUCCESS');
    await assertShare(b.sim, 'beta', sum);
  });

  test('in IN_PROGRESS (killed from outside while the copy is stalled): it resumes and completes', async (t) => {
    const { args } = setup(t);
    const a = await bootDaemon(t, args);
    const sum = await shareWithData(a.sim);
    await a.sim.call('SetFaults', { stallCopy: true });
    const m = await a.client.startMigration(START);
    await waitForState(a.client, m.id, 'IN_PROGRESS');
    await kill9(a.daemon);

    const b = await bootDaemon(t, args);
    assert.equal((await b.client.getMigration(m.id)).state, 'MIGRATION_STATE_IN_PROGRESS');
    await b.sim.call('ClearFaults', {});
    await waitForState(b.client, m.id, 'PHASE1_DONE');
    await b.client.completeMigration(m.id);
    await waitForState(b.client, m.id, 'SUCCESS');
    await assertShare(b.sim, 'beta', sum);
  });

  test('in PHASE1_DONE: the destination is kept warm and the migration can be completed after the restart', async (t) => {
    const { args } = setup(t);
    const a = await bootDaemon(t, args);
    const sum = await shareWithData(a.sim);
    const m = await a.client.startMigration(START);
    await waitForState(a.client, m.id, 'PHASE1_DONE');
    await kill9(a.daemon);

    const b = await bootDaemon(t, args);
    assert.equal((await b.client.getMigration(m.id)).state, 'MIGRATION_STATE_PHASE1_DONE');
    await b.client.completeMigration(m.id);
    await waitForState(b.client, m.id, 'SUCCESS');
    await assertShare(b.sim, 'beta', sum);
  });

  for (const point of ['CRASH_POINT_CUTOVER_BEFORE_SWITCH', 'CRASH_POINT_CUTOVER_AFTER_SWITCH'] as const) {
    test(`in COMPLETING (killed by the array at ${point}): the cutover is resumed and succeeds`, async (t) => {
      const { args } = setup(t);
      const a = await bootDaemon(t, args);
      const sum = await shareWithData(a.sim);
      const m = await a.client.startMigration(START);
      await waitForState(a.client, m.id, 'PHASE1_DONE');
      await a.sim.call('SetFaults', { crashAt: point });
      await a.client.completeMigration(m.id);
      assert.equal((await a.daemon.exited).signal, 'SIGKILL');

      const b = await bootDaemon(t, args);
      const resumed = await b.client.getMigration(m.id);
      assert.ok(['MIGRATION_STATE_COMPLETING', 'MIGRATION_STATE_SUCCESS'].includes(resumed.state), resumed.state);
      await waitForState(b.client, m.id, 'SUCCESS');
      await assertShare(b.sim, 'beta', sum);
    });
  }

  test('in COMPLETING (killed from outside during a slow cutover): the cutover is re-issued and succeeds', async (t) => {
    const { args } = setup(t);
    const a = await bootDaemon(t, args);
    const sum = await shareWithData(a.sim);
    const m = await a.client.startMigration(START);
    await waitForState(a.client, m.id, 'PHASE1_DONE');
    await a.sim.call('SetFaults', { latencyMs: { CutoverJob: 3_000 } });
    await a.client.completeMigration(m.id);
    await kill9(a.daemon);

    const b = await bootDaemon(t, args);
    await b.sim.call('ClearFaults', {});
    assert.equal((await b.client.getMigration(m.id)).state, 'MIGRATION_STATE_COMPLETING');
    await waitForState(b.client, m.id, 'SUCCESS');
    await assertShare(b.sim, 'beta', sum);
  });

  test('in CANCELLING: the cancel is re-issued, the source is intact and no destination is left', async (t) => {
    const { args } = setup(t);
    const a = await bootDaemon(t, args);
    const sum = await shareWithData(a.sim);
    const m = await a.client.startMigration(START);
    await waitForState(a.client, m.id, 'PHASE1_DONE');
    await a.sim.call('SetFaults', { latencyMs: { CancelJob: 3_000 } });
    await a.client.cancelMigration(m.id);
    await kill9(a.daemon);

    const b = await bootDaemon(t, args);
    await b.sim.call('ClearFaults', {});
    assert.equal((await b.client.getMigration(m.id)).state, 'MIGRATION_STATE_CANCELLING');
    await waitForState(b.client, m.id, 'CANCELLED');
    await assertShare(b.sim, 'alpha', sum);
  });

  test('a second ferryd on the same data dir refuses to start with one line naming the dir', async (t) => {
    const { args } = setup(t);
    await bootDaemon(t, args);
    const second = spawnDaemon(args);
    await assert.rejects(second, (err: Error) => {
      assert.match(err.message, /exited \(3\)/);
      assert.match(err.message, /ferryd: data dir .*data.* is in use by another ferryd/);
      assert.doesNotMatch(err.message, /\n\s+at /, 'a stack trace was printed');
      return true;
    });
  });

  test('SIGTERM shuts down gracefully (exit 0) and the migration resumes after a restart', async (t) => {
    const { args } = setup(t);
    const a = await bootDaemon(t, args);
    const sum = await shareWithData(a.sim);
    const m = await a.client.startMigration(START);
    await waitForState(a.client, m.id, 'PHASE1_DONE');
    a.daemon.child.kill('SIGTERM');
    const exit = await a.daemon.exited;
    assert.equal(exit.code, 0);
    assert.ok(a.daemon.logs.some((l) => l.msg === 'stopped'), 'the daemon did not log its orderly stop');

    const b = await bootDaemon(t, args);
    assert.equal((await b.client.getMigration(m.id)).state, 'MIGRATION_STATE_PHASE1_DONE');
    await b.client.completeMigration(m.id);
    await waitForState(b.client, m.id, 'SUCCESS');
    await assertShare(b.sim, 'beta', sum);
  });
});
