/**
 * The Python driver's ConformanceAdapter, on the driver's own socket: Setup
 * starts a real ferry-sim process and names two backends whose options
 * reach it; the share calls go to that array; Teardown, or the process's
 * exit, stops it.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { pattern, sha256, SimClient } from '../simulator/helpers.ts';
import { failsWith, failure, fromStruct, spec, startDriver, toStruct } from './helpers.ts';
import type { DriverProcess } from './helpers.ts';

const KiB = 1024;
const MiB = 1024 * KiB;

/** Whether an array still answers at `address`: false once nothing listens there. */
async function arrayAnswers(address: string): Promise<boolean> {
  const sim = new SimClient(address);
  try {
    await sim.call('ListBackends', {}, 5000);
    return true;
  } catch (err) {
    assert.equal((err as { code: number }).code, 14, `expected UNAVAILABLE, got ${String(err)}`);
    return false;
  } finally {
    sim.close();
  }
}

/** Setup on `p`; returns the array's endpoint. */
async function setup(p: DriverProcess): Promise<string> {
  const res = await p.adapter.setup();
  assert.deepEqual(res.backends.map((b) => b.name), ['alpha', 'beta']);
  const endpoint = fromStruct(res.backends[0]!.options).endpoint as string;
  assert.match(endpoint, /^127\.0\.0\.1:\d+$/);
  for (const b of res.backends) assert.deepEqual(fromStruct(b.options), { endpoint });
  assert.deepEqual({ source: res.sourcePool, destination: res.destinationPool, small: res.smallPool }, { source: 'gold', destination: 'bronze', small: 'tiny' });
  return endpoint;
}

test('the adapter starts an array, makes, writes, checksums, locates, lists and deletes shares on it, and tears it down', async (t) => {
  const p = await startDriver(t);
  await failsWith(p.adapter.listShares('alpha'), 'FAILED_PRECONDITION', 'FAILED_PRECONDITION', /the adapter is not set up/);
  const endpoint = await setup(p);

  // A second Setup starts afresh; the backends it names are ones the driver opens and describes.
  const res = await p.adapter.setup();
  const array = fromStruct(res.backends[0]!.options).endpoint as string;
  assert.equal(await arrayAnswers(endpoint), false, 'the first array is stopped by the second Setup');
  for (const b of res.backends) await p.driver.openBackend({ backend: b.name, options: b.options, daemonAddress: '' });
  assert.deepEqual((await p.driver.describe('beta')).pools.map((pool) => [pool.name, pool.capacityBytes]), [['bronze', 1024 * MiB], ['tiny', 1 * MiB]]);

  const { shareId } = await p.adapter.createShare({ backend: 'alpha', pool: 'gold', sizeBytes: 1 * MiB });
  assert.ok(shareId);
  const data = pattern(shareId, 64 * KiB);
  await p.adapter.writeShare({ shareId, offset: 64 * KiB, data });
  const expected = Buffer.alloc(1 * MiB);
  data.copy(expected, 64 * KiB);
  assert.equal((await p.adapter.checksumShare(shareId)).sha256, sha256(expected));
  assert.deepEqual(await p.adapter.locateShare(shareId), { backend: 'alpha', pool: 'gold' });
  assert.deepEqual((await p.adapter.listShares('alpha')).names, [shareId]);
  assert.deepEqual((await p.adapter.listShares('beta')).names, []);

  // A migration in flight shows its destination as "job:<id>"; DeleteShare cancels it first.
  const sim = new SimClient(array);
  t.after(() => sim.close());
  await sim.call('SetFaults', { stallCopy: true });
  await p.driver.startMigration({ backend: 'alpha', migration: spec({ id: 'mig-a', shareId }) });
  assert.deepEqual((await p.adapter.listShares('beta')).names, ['job:mig-a']);
  await p.adapter.deleteShare(shareId);
  assert.deepEqual((await p.adapter.listShares('beta')).names, []);
  assert.deepEqual((await p.adapter.listShares('alpha')).names, []);
  const gone = await failure(p.adapter.locateShare(shareId));
  assert.equal(gone.status, 'NOT_FOUND');
  assert.match(gone.message, new RegExp(`the array has no share ${shareId}`));
  await p.adapter.deleteShare(shareId); // Already gone: success.

  // The array's refusals reach the kit as statuses with the array's message.
  const full = await failure(p.adapter.createShare({ backend: 'beta', pool: 'tiny', sizeBytes: 4 * MiB }));
  assert.equal(full.status, 'RESOURCE_EXHAUSTED');

  await p.adapter.teardown();
  assert.equal(await arrayAnswers(array), false, 'Teardown stopped the array');
  await failsWith(p.adapter.checksumShare(shareId), 'FAILED_PRECONDITION', 'FAILED_PRECONDITION', /the adapter is not set up \(call Setup first\)/);
});

test('Setup with an endpoint uses that array and names no small pool; an array Setup started stops when the driver exits', async (t) => {
  const p = await startDriver(t);
  const started = await setup(p);

  const q = await startDriver(t);
  const res = await q.adapter.setup({ config: toStruct({ endpoint: started, driverOptions: { snapshots: true } }) });
  assert.deepEqual(fromStruct(res.backends[1]!.options), { snapshots: true, endpoint: started });
  assert.equal(res.smallPool, '');
  const { shareId } = await q.adapter.createShare({ backend: 'beta', pool: 'bronze', sizeBytes: 64 * KiB });
  assert.deepEqual(await p.adapter.locateShare(shareId), { backend: 'beta', pool: 'bronze' }, 'both adapters see one array');
  await failsWith(q.adapter.setup({ config: toStruct({ driverOptions: 'snapshots' }) }), 'INVALID_ARGUMENT', 'INVALID_ARGUMENT', /config\.driverOptions must be an object/);

  // The driver that started the array goes away without a Teardown: the array goes with it.
  p.child.stdin!.end();
  assert.deepEqual(await p.exited, { code: 0, signal: null });
  assert.equal(await arrayAnswers(started), false);
  q.child.stdin!.end();
  assert.deepEqual(await q.exited, { code: 0, signal: null });
});
