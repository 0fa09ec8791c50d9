/**
 * A driver that stops answering, or answers garbage, in every state: no
 * migration is silently lost. A cutover or cancel whose driver does not
 * answer is marked stuck (saying what is unknown), its backend goes
 * NOT_SERVING, and it resumes from its checkpoint once the driver answers.
 * Real gRPC, real LevelDB, the real plugin loader, the scripted driver.
 */
import assert from 'node:assert/strict';
import { beforeEach, describe, test, type TestContext } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { clientConstructor } from '../../lib/rpc.ts';
import { control } from '../fixtures/plugins/scripted/index.ts';
import { inProcessDaemon, pluginsDir, rejectsWith, scriptedConfig, tempDir, testConfig, waitForState } from '../helpers.ts';

const START = { share: { backend: 'a', shareId: 's1' }, destination: 'b#p1', writable: true };

async function scriptedDaemon(t: TestContext, engine: Record<string, number> = {}) {
  const config = scriptedConfig(tempDir(t), { engine: { unresponsiveAfterMs: 150, ...engine }, deadlines: { complete: 40, cancel: 40 }, healthProbeMs: 60_000 });
  const daemon = await inProcessDaemon(t, config);
  const Health = clientConstructor('grpc.health.v1.Health');
  const health = new Health(daemon.daemon.address, grpc.credentials.createInsecure()) as unknown as grpc.Client & {
    Watch(req: { service: string }): grpc.ClientReadableStream<{ status: string }>;
  };
  t.after(() => health.close());
  /** Resolves with the first health status of `service` that `until` accepts. */
  const healthBecomes = (service: string, status: string) =>
    new Promise<void>((resolve, reject) => {
      const call = health.Watch({ service });
      call.on('data', (r: { status: string }) => {
        if (r.status !== status) return;
        call.cancel();
        resolve();
      });
      call.on('error', (err: grpc.ServiceError) => (err.code === grpc.status.CANCELLED ? undefined : reject(err)));
    });
  return { ...daemon, healthBecomes };
}

describe('a driver that does not answer', () => {
  beforeEach(() => control.reset());

  test('complete: after the budget the migration says CUTOVER_OUTCOME_UNKNOWN and its backend NOT_SERVING; once the driver answers it goes on from its checkpoint to SUCCESS', async (t) => {
    const { client, healthBecomes } = await scriptedDaemon(t);
    const m = await client.startMigration(START);
    await waitForState(client, m.id, 'PHASE1_DONE');
    const notServing = healthBecomes('backend:a', 'NOT_SERVING');
    control.hangs.add('complete');
    await client.completeMigration(m.id);
    const stuck = await client.waitFor(m.id, (x) => x.stuck !== null);
    assert.equal(stuck.state, 'MIGRATION_STATE_COMPLETING');
    assert.equal(stuck.stuck?.code, 'CUTOVER_OUTCOME_UNKNOWN');
    assert.match(stuck.stuck?.message ?? '', /has not answered complete for \d+ s .*Whether the cutover committed is unknown: check on the array whether share s1 lives on b#p1 or still on a/);
    await notServing;
    const backends = await client.listBackends();
    assert.match(backends.backends.find((b) => b.name === 'a')?.healthReason ?? '', /its driver is not answering: migration .* is stuck in COMPLETING \(CUTOVER_OUTCOME_UNKNOWN\)/);
    // Still refused: a cutover that may have committed cannot be cancelled.
    await rejectsWith(client.cancelMigration(m.id), 'FAILED_PRECONDITION', /a cutover attempt is running/);

    const serving = healthBecomes('backend:a', 'SERVING');
    const completes = control.count('complete', m.id);
    control.hangs.delete('complete');
    const done = await waitForState(client, m.id, 'SUCCESS');
    assert.equal(done.stuck, null);
    await serving;
    const resumed = control.calls.filter((c) => c.call === 'complete' && c.migration === m.id).slice(completes);
    assert.ok(resumed.length >= 1);
    assert.deepEqual(resumed[0]!.checkpoint, { job: m.id, copied: 1000 }, 'the answering complete did not get the last persisted checkpoint');
  });

  test('cancel: after the budget the migration says CANCEL_OUTCOME_UNKNOWN (the source untouched); once the driver answers it ends CANCELLED', async (t) => {
    const { client, healthBecomes } = await scriptedDaemon(t);
    const m = await client.startMigration(START);
    await waitForState(client, m.id, 'PHASE1_DONE');
    const notServing = healthBecomes('backend:a', 'NOT_SERVING');
    control.hangs.add('cancel');
    await client.cancelMigration(m.id);
    const stuck = await client.waitFor(m.id, (x) => x.stuck !== null);
    assert.equal(stuck.state, 'MIGRATION_STATE_CANCELLING');
    assert.equal(stuck.stuck?.code, 'CANCEL_OUTCOME_UNKNOWN');
    assert.match(stuck.stuck?.message ?? '', /The source share a\/s1 is untouched and stays in use; whether the destination on b#p1 was removed is unknown/);
    await notServing;
    control.hangs.delete('cancel');
    const end = await waitForState(client, m.id, 'CANCELLED');
    assert.equal(end.stuck, null);
    assert.equal(control.jobs.get(m.id)?.cancelled, true);
  });

  test('continue in PHASE1_DONE: the migration is never stuck there, and a cancel still ends it', async (t) => {
    const { client } = await scriptedDaemon(t);
    const m = await client.startMigration(START);
    await waitForState(client, m.id, 'PHASE1_DONE');
    control.hangs.add('continue');
    await control.calls$('continue', control.count('continue', m.id) + 2, m.id);
    await client.cancelMigration(m.id);
    const end = await waitForState(client, m.id, 'CANCELLED');
    assert.equal(end.stuck, null);
  });

  test('a stuck mark survives a restart of ferryd and clears when the driver answers', async (t) => {
    const config = scriptedConfig(tempDir(t), { engine: { unresponsiveAfterMs: 150 }, deadlines: { complete: 40 } });
    const first = await inProcessDaemon(t, config);
    const m = await first.client.startMigration(START);
    await waitForState(first.client, m.id, 'PHASE1_DONE');
    control.hangs.add('complete');
    await first.client.completeMigration(m.id);
    await first.client.waitFor(m.id, (x) => x.stuck !== null);
    first.client.close();
    await first.daemon.close(100);

    const second = await inProcessDaemon(t, config);
    const again = await second.client.getMigration(m.id);
    assert.equal(again.stuck?.code, 'CUTOVER_OUTCOME_UNKNOWN');
    control.hangs.delete('complete');
    const done = await waitForState(second.client, m.id, 'SUCCESS');
    assert.equal(done.stuck, null);
  });
});

describe('a driver that answers garbage or refuses', () => {
  beforeEach(() => control.reset());

  test('a complete that returns garbage ends in ERROR (DRIVER_ERROR) and the destination is cleaned up by cancel', async (t) => {
    const { client } = await scriptedDaemon(t);
    const m = await client.startMigration(START);
    await waitForState(client, m.id, 'PHASE1_DONE');
    control.garbage.add('complete');
    await client.completeMigration(m.id);
    const end = await client.waitFor(m.id, () => false);
    assert.equal(end.state, 'MIGRATION_STATE_ERROR');
    assert.equal(end.error?.code, 'DRIVER_ERROR');
    await control.calls$('cancel', 1, m.id);
    assert.equal(control.jobs.get(m.id)?.cancelled, true);
  });

  test('a clean-up the driver refuses (its cutover had committed) is asked once, not retried', async (t) => {
    const { client } = await scriptedDaemon(t, { cleanupAttempts: 5 });
    const m = await client.startMigration(START);
    await waitForState(client, m.id, 'PHASE1_DONE');
    control.fail('complete', 'FAILED_PRECONDITION', 1);
    control.fail('cancel', 'FAILED_PRECONDITION', 5);
    await client.completeMigration(m.id);
    assert.equal((await client.waitFor(m.id, () => false)).state, 'MIGRATION_STATE_ERROR');
    await control.calls$('cancel', 1, m.id);
    // Another migration's 40 polls to phase 1 take longer than the five retries a refusal used to get.
    control.chunk = 25;
    const other = await client.startMigration({ ...START, share: { backend: 'a', shareId: 's2' } });
    await waitForState(client, other.id, 'PHASE1_DONE');
    assert.equal(control.count('cancel', m.id), 1);
  });
});

describe('concurrent starts of one share', () => {
  beforeEach(() => control.reset());

  test('a second start while the first is inside the driver check is answered ALREADY_EXISTS naming the first, or the same migration for the same request_id', async (t) => {
    const { client } = await scriptedDaemon(t);
    for (const sameRequest of [false, true]) {
      const share = { backend: 'a', shareId: sameRequest ? 'same' : 'other' };
      const held = control.hold('checkCompatibility');
      const first = client.startMigration({ ...START, share, requestId: sameRequest ? 'r1' : 'r-first' });
      await held.entered;
      const second = client.startMigration({ ...START, share, requestId: sameRequest ? 'r1' : 'r-second' });
      second.catch(() => undefined); // Asserted below, once the first has answered.
      // A later call on the same channel is answered only after the server took the second start in.
      await client.listMigrations();
      held.release();
      const winner = await first;
      if (sameRequest) {
        assert.equal((await second).id, winner.id);
      } else {
        const err = await rejectsWith(second, 'ALREADY_EXISTS', new RegExp(`already has an active migration ${winner.id}`));
        assert.equal(err.errorInfo?.metadata.migration, winner.id);
      }
      // The loser never reached the driver: only the winner's check was made.
      assert.equal(control.count('checkCompatibility'), sameRequest ? 2 : 1);
    }
  });
});

describe('health logs', () => {
  test('a backend whose plugin can never load is logged NOT_SERVING once, not on every probe', async (t) => {
    const { pino } = await import('pino');
    const { Writable } = await import('node:stream');
    const { startDaemon } = await import('../../daemon/daemon.ts');
    const lines: Record<string, unknown>[] = [];
    const sink = new Writable({ write: (chunk: Buffer, _enc, done) => (lines.push(JSON.parse(chunk.toString())), done()) });
    const dir = tempDir(t);
    const config = testConfig(
      `${dir}/data`,
      { simulator: { embedded: false }, backends: [{ name: 'a', plugin: 'scripted' }, { name: 'gone', plugin: 'nosuch' }], healthProbeMs: 60_000 },
      pluginsDir(dir, ['scripted']),
    );
    const daemon = await startDaemon(config, pino({ level: 'info' }, sink));
    t.after(() => daemon.close(100));
    const { FerryClient } = await import('../../client/client.ts');
    const client = new FerryClient(daemon.address, 5_000);
    t.after(() => client.close());
    // Every ListBackends probes every backend.
    for (let i = 0; i < 5; i++) assert.equal((await client.listBackends()).backends.find((b) => b.name === 'gone')?.health, 'BACKEND_HEALTH_NOT_SERVING');
    const notServing = lines.filter((l) => l.msg === 'backend not serving' && l.backend === 'gone');
    assert.equal(notServing.length, 1, JSON.stringify(notServing));
  });
});
