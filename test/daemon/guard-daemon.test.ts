/**
 * The driver guard inside a running daemon (real gRPC, real LevelDB, the
 * real plugin loader, the scripted fixture plugin): a driver that throws a
 * Proxy fails its migration with DRIVER_ERROR, not the engine's INTERNAL; a
 * driver that blocks the event loop past a call's deadline has that call
 * counted as failed and named in the log; and shutdown with many calls in
 * flight aborts them all without a MaxListenersExceededWarning.
 */
import assert from 'node:assert/strict';
import { beforeEach, describe, test } from 'node:test';
import type { TestContext } from 'node:test';
import { pino } from 'pino';
import { FerryClient } from '../../client/client.ts';
import { startDaemon } from '../../daemon/daemon.ts';
import { control } from '../fixtures/plugins/scripted/index.ts';
import { scriptedConfig, tempDir, waitForState } from '../helpers.ts';

/** A daemon over the scripted plugin whose log lines the test can read. */
async function loggedDaemon(t: TestContext) {
  const config = scriptedConfig(tempDir(t));
  const lines: Record<string, unknown>[] = [];
  const log = pino({ level: 'info' }, { write: (line: string) => void lines.push(JSON.parse(line) as Record<string, unknown>) });
  const daemon = await startDaemon(config, log);
  const client = new FerryClient(daemon.address, 10_000);
  let closed = false;
  const close = async (graceMs: number) => {
    if (closed) return;
    closed = true;
    client.close();
    await daemon.close(graceMs);
  };
  t.after(() => close(1_000));
  return { client, lines, close };
}

const START = { share: { backend: 'a', shareId: 's1' }, destination: 'b#p1', writable: true };

describe('the driver guard in a running daemon', () => {
  beforeEach(() => control.reset());

  test('a driver whose continue throws a Proxy whose every trap throws fails the migration with DRIVER_ERROR naming the call, and the daemon serves on', async (t) => {
    const { client } = await loggedDaemon(t);
    const trap = () => {
      throw new Error('trap');
    };
    control.throwing.set('continue', () => new Proxy({}, { get: trap, has: trap, ownKeys: trap, getOwnPropertyDescriptor: trap, getPrototypeOf: trap }));
    const m = await client.startMigration(START);
    const end = await client.waitFor(m.id, () => false);
    assert.equal(end.state, 'MIGRATION_STATE_ERROR');
    assert.equal(end.error?.code, 'DRIVER_ERROR');
    assert.match(end.error?.message ?? '', /^driver scripted \(backend a\) failed in continue with an unexpected error \(see the daemon log\)$/);
    control.throwing.clear();
    const next = await client.startMigration({ ...START, share: { backend: 'a', shareId: 's2' } });
    await waitForState(client, next.id, 'PHASE1_DONE');
  });

  test('a continue that busy-loops past its deadline is counted as DEADLINE_EXCEEDED, logged with its backend and how long it blocked, and retried', async (t) => {
    const { client, lines } = await loggedDaemon(t);
    control.block('continue', 1_000, { later: true });
    const m = await client.startMigration(START);
    await waitForState(client, m.id, 'PHASE1_DONE');

    const blocked = lines.find((l) => l.msg === 'driver call blocked the event loop; a module plugin must never block it');
    assert.ok(blocked, 'no log line about the blocked loop');
    assert.equal(blocked.backend, 'a');
    assert.equal(blocked.call, 'continue');
    assert.equal(blocked.migration, m.id);
    assert.ok(typeof blocked.blockedMs === 'number' && blocked.blockedMs > 300, `blockedMs ${String(blocked.blockedMs)}`);
    const failed = lines.find((l) => l.msg === 'driver call failed' && l.migration === m.id);
    assert.equal(failed?.step, 'continue');
    assert.equal(failed?.code, 'DEADLINE_EXCEEDED');
    assert.match(String(failed?.error), /did not answer continue within 300 ms: the event loop was blocked for \d+ ms/);
  });

  test('shutdown with twelve continue calls in flight aborts every one, with no MaxListenersExceededWarning', async (t) => {
    const warnings: Error[] = [];
    const onWarning = (w: Error) => warnings.push(w);
    process.on('warning', onWarning);
    t.after(() => process.off('warning', onWarning));
    const { client, lines, close } = await loggedDaemon(t);
    control.hangs.add('continue');
    const ids: string[] = [];
    for (let i = 0; i < 12; i++) ids.push((await client.startMigration({ ...START, share: { backend: 'a', shareId: `s${i}` } })).id);
    for (const id of ids) await control.calls$('continue', 1, id);
    // Calls in flight now end only when aborted: close's grace period runs out and the engine aborts them.
    await close(20);
    assert.ok(lines.some((l) => l.msg === 'driver calls still running after the grace period; aborting them'));
    await new Promise((resolve) => setImmediate(resolve));
    assert.deepEqual(warnings.map((w) => `${w.name}: ${w.message}`), []);
    assert.deepEqual([...control.inFlight.values()].filter((n) => n > 0), [], 'a driver call was still running after shutdown');
  });
});
