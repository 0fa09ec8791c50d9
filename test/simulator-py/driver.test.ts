/**
 * The Python reference driver (plugins/simulator-py) as ferryd drives it:
 * started with its plugin.json command, FERRY_DRIVER_LISTEN on a unix
 * socket and stdin a pipe; called over ferry.driver.v1 from TypeScript
 * (lib/rpc.ts clients, build/types messages) against a real ferry-sim
 * process. A migration runs Start/Continue/Complete to the end, the array's
 * error codes arrive as Ferry's in an ErrorInfo, and the process serves
 * calls concurrently and exits when its stdin closes or on SIGTERM.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { setTimeout as sleep } from 'node:timers/promises';
import { test } from 'node:test';
import type { MigrationCall } from '../../build/types/ferry/driver/v1/MigrationCall.ts';
import type { MigrationSpec } from '../../build/types/ferry/driver/v1/MigrationSpec.ts';
import { configFile, filledShare, sha256, spawnSim, tempDir } from '../simulator/helpers.ts';
import type { SimProcess } from '../simulator/helpers.ts';
import { checkpointOf, failsWith, toStruct, failure, healthOf, MANIFEST, spec, startDriver } from './helpers.ts';
import type { DriverProcess } from './helpers.ts';

const MiB = 1024 * 1024;

/** A driver with backends alpha and beta open on a fresh ferry-sim. */
async function driverOnArray(t: { after(fn: () => unknown): void }): Promise<{ p: DriverProcess; sim: SimProcess }> {
  const dir = await tempDir(t);
  const sim = await spawnSim(t, `${dir}/array`, await configFile(dir));
  const p = await startDriver(t);
  for (const backend of ['alpha', 'beta']) await p.driver.openBackend({ backend, options: toStruct({ endpoint: sim.address }), daemonAddress: '127.0.0.1:1' });
  return { p, sim };
}

test('the driver serves health and GetPluginInfo on FERRY_DRIVER_LISTEN, and OpenBackend checks its options', async (t) => {
  const { p, sim } = await driverOnArray(t);
  assert.equal(await healthOf(p.address, 'ferry.driver.v1.DriverService'), 'SERVING');
  assert.equal(await healthOf(p.address, ''), 'SERVING');
  assert.equal((await failure(healthOf(p.address, 'no.such.Service'))).status, 'NOT_FOUND');

  assert.deepEqual(await p.driver.getPluginInfo(), { name: 'simulator-py', version: MANIFEST.version, apiVersion: 1 });

  const opened = await p.driver.openBackend({ backend: 'alpha', options: toStruct({ endpoint: sim.address, snapshots: 'within-backend', callTimeoutMs: 2000 }), daemonAddress: '127.0.0.1:1' });
  assert.deepEqual(opened.capabilities, { writable: true, nondisruptive: true, preserveMetadata: true, preserveSnapshots: true });
  // A repeat with the same options is a no-op; a backend without an endpoint uses the daemon's address.
  await p.driver.openBackend({ backend: 'alpha', options: toStruct({ endpoint: sim.address, snapshots: 'within-backend', callTimeoutMs: 2000 }), daemonAddress: '127.0.0.1:1' });
  const alpha = (await p.driver.describe('alpha')).pools;
  assert.deepEqual(alpha.map((pool) => [pool.name, pool.capacityBytes]), [['gold', 64 * MiB], ['silver', 64 * MiB]]);
  // A backend without an endpoint reaches the array at ferryd's own address (where the embedded array is served).
  await p.driver.openBackend({ backend: 'alpha', daemonAddress: sim.address });
  assert.deepEqual((await p.driver.describe('alpha')).pools, alpha);

  await failsWith(p.driver.openBackend({ backend: 'x', options: toStruct({ endpoint: sim.address, callTimeoutMs: 5 }), daemonAddress: '' }), 'INVALID_ARGUMENT', 'INVALID_ARGUMENT', /^backend x: options\.callTimeoutMs must be a number of ms, at least 100$/);
  await failsWith(p.driver.openBackend({ backend: 'x', options: toStruct({ endpoint: sim.address, snapshots: 'yes' }), daemonAddress: '' }), 'INVALID_ARGUMENT', 'INVALID_ARGUMENT', /options\.snapshots must be true, false or "within-backend"/);
  await failsWith(p.driver.openBackend({ backend: 'x', options: toStruct({}), daemonAddress: '' }), 'INVALID_ARGUMENT', 'INVALID_ARGUMENT', /options\.endpoint must be a gRPC address/);
  await failsWith(p.driver.openBackend({ backend: '', daemonAddress: sim.address }), 'INVALID_ARGUMENT', 'INVALID_ARGUMENT', /^backend is REQUIRED$/);
  await failsWith(p.driver.describe('never-opened'), 'FAILED_PRECONDITION', 'FAILED_PRECONDITION', /backend never-opened is not open in this driver process/);
});

test('a migration runs Start, Continue and Complete to DONE against a real ferry-sim', async (t) => {
  const { p, sim } = await driverOnArray(t);
  const data = await filledShare(sim.client, 'py1', 2 * MiB);
  const migration = spec({ id: 'mig-py1', shareId: 'py1' });
  const call = (checkpoint?: Buffer): MigrationCall => ({ backend: 'alpha', migration, ...(checkpoint ? { checkpoint } : {}) });

  const compat = await p.driver.checkCompatibility(call());
  assert.deepEqual(compat.reasons, []);
  assert.equal(compat.shareSizeBytes, 2 * MiB);
  assert.ok(compat.destinationFreeBytes >= 2 * MiB, `destination free ${compat.destinationFreeBytes}`);
  assert.equal(compat.capabilities?.preserveSnapshots, false);

  const started = await p.driver.startMigration(call());
  assert.deepEqual(checkpointOf(started), { jobId: 'mig-py1' });
  // Idempotent on the migration id: a repeat finds the same job, never a second one.
  assert.deepEqual(checkpointOf(await p.driver.startMigration(call())), { jobId: 'mig-py1' });
  assert.deepEqual((await sim.client.call('ListJobs')).jobs.map((j: { jobId: string }) => j.jobId), ['mig-py1']);

  let checkpoint = started.checkpoint;
  let copied = 0;
  for (;;) {
    const res = await p.driver.continueMigration(call(checkpoint));
    assert.ok(res.progress!.copiedBytes >= copied, 'copied bytes never go back');
    assert.ok(res.progress!.copiedBytes <= res.progress!.totalBytes);
    assert.ok(res.nextPollMs >= 10 && res.nextPollMs <= 500, `next poll ${res.nextPollMs} ms`);
    copied = res.progress!.copiedBytes;
    checkpoint = res.checkpoint;
    if (res.phase1Done) {
      assert.equal(res.progress!.etaSeconds, 0);
      assert.equal(copied, 2 * MiB);
      break;
    }
    await sleep(res.nextPollMs); // The driver's own poll hint, as ferryd follows it.
  }

  for (;;) {
    const res = await p.driver.complete(call(checkpoint));
    checkpoint = res.checkpoint;
    if (res.status === 'STATUS_DONE') {
      assert.ok(res.cutover!.freezeMs > 0, 'the cutover measured its freeze');
      break;
    }
    assert.equal(res.status, 'STATUS_IN_PROGRESS', `complete answered ${res.status}: ${res.reason}`);
    await sleep(res.nextPollMs);
  }
  // A repeat after DONE answers DONE again.
  assert.equal((await p.driver.complete(call(checkpoint))).status, 'STATUS_DONE');

  const moved = await sim.client.call('GetShare', { shareId: 'py1' });
  assert.deepEqual({ backend: moved.backend, pool: moved.pool }, { backend: 'beta', pool: 'bronze' });
  assert.equal((await sim.client.call('ChecksumShare', { shareId: 'py1' })).sha256, sha256(data));
  const progress = (await p.driver.progress(call(checkpoint))).progress!;
  assert.equal(progress.totalBytes, 2 * MiB);
  assert.equal(progress.copiedBytes, 2 * MiB);
});

test('Cancel removes the destination and is idempotent, also for a job the array never saw; Progress before Start is zeros', async (t) => {
  const { p, sim } = await driverOnArray(t);
  await filledShare(sim.client, 'py2', 1 * MiB);
  await sim.client.call('SetFaults', { stallCopy: true });
  const call: MigrationCall = { backend: 'alpha', migration: spec({ id: 'mig-py2', shareId: 'py2' }) };
  const started = await p.driver.startMigration(call);
  assert.equal((await sim.client.call('GetShare', { shareId: 'py2' })).migrating, true);
  for (let i = 0; i < 2; i++) {
    const res = await p.driver.cancelMigration({ ...call, checkpoint: started.checkpoint });
    assert.equal(res.done, true);
    assert.deepEqual(checkpointOf(res), { jobId: 'mig-py2' });
  }
  const share = await sim.client.call('GetShare', { shareId: 'py2' });
  assert.deepEqual({ backend: share.backend, migrating: share.migrating }, { backend: 'alpha', migrating: false });
  assert.equal((await sim.client.call('GetJob', { jobId: 'mig-py2' })).state, 'JOB_STATE_CANCELLED');

  // A cancel whose start never reached the array (empty checkpoint): found by the migration id, and done.
  const never: MigrationCall = { backend: 'alpha', migration: spec({ id: 'mig-never', shareId: 'py2' }) };
  assert.deepEqual((await p.driver.progress(never)).progress, {
    totalBytes: 0, copiedBytes: 0, dirtyBytes: 0, dirtyRateBytesPerSec: 0, throughputBytesPerSec: 0, iteration: 0, etaSeconds: 0, warning: '',
  });
  assert.equal((await p.driver.cancelMigration(never)).done, true);
  // ...and the array keeps the id cancelled, so a late start cannot revive it.
  await failsWith(p.driver.startMigration(never), 'FAILED_PRECONDITION', 'FAILED_PRECONDITION', /array job mig-never was cancelled before it started/);
});

test("the array's error codes arrive as Ferry's, in an ErrorInfo of the driver's domain", async (t) => {
  const { p, sim } = await driverOnArray(t);
  await filledShare(sim.client, 'big', 4 * MiB);
  const call = (id: string, fields: Partial<MigrationSpec> = {}): MigrationCall => ({
    backend: 'alpha',
    migration: spec({ id, shareId: 'big', ...fields }),
  });

  // NOT_FOUND: an unknown share (CheckCompatibility names the backend), an unknown pool, a job the array never saw.
  await failsWith(p.driver.checkCompatibility(call('m1', { shareId: 'nope' })), 'NOT_FOUND', 'NOT_FOUND', /^share nope not found on backend alpha$/);
  await failsWith(p.driver.checkCompatibility(call('m1', { destinationPool: 'lead' })), 'NOT_FOUND', 'NOT_FOUND', /^pool lead not found on backend beta \(it has bronze, tiny\)$/);
  await failsWith(p.driver.continueMigration(call('never-started')), 'NOT_FOUND', 'NOT_FOUND');
  // A share on another backend is not this backend's: NOT_FOUND too.
  await failsWith(p.driver.checkCompatibility({ ...call('m1'), backend: 'beta', migration: spec({ id: 'm1', shareId: 'big', sourceBackend: 'beta' }) }), 'NOT_FOUND', 'NOT_FOUND', /is not on backend beta \(it lives on alpha\)/);
  // NO_SPACE -> RESOURCE_EXHAUSTED: 4 MiB into the 2 MiB pool.
  await failsWith(p.driver.startMigration(call('m2', { destinationPool: 'tiny' })), 'RESOURCE_EXHAUSTED', 'RESOURCE_EXHAUSTED');
  // OBJECT_EXISTS -> ALREADY_EXISTS: the same job id with other fields.
  await sim.client.call('SetFaults', { stallCopy: true });
  await p.driver.startMigration(call('m3'));
  await failsWith(p.driver.startMigration(call('m3', { maxDowntimeMs: 999 })), 'ALREADY_EXISTS', 'ALREADY_EXISTS');
  // WRONG_STATE -> FAILED_PRECONDITION: a cutover before phase 1 is done.
  await failsWith(p.driver.complete(call('m3')), 'FAILED_PRECONDITION', 'FAILED_PRECONDITION');
  // The driver's own refusal: snapshots it does not preserve.
  await failsWith(p.driver.startMigration(call('m4', { preserveSnapshots: true })), 'UNIMPLEMENTED', 'UNIMPLEMENTED', /^backend alpha does not preserve snapshots$/);

  // Injected faults, one per array code: BUSY -> UNAVAILABLE, TIMED_OUT -> DEADLINE_EXCEEDED, ARRAY_FAULT and BAD_REQUEST -> DRIVER_ERROR.
  const cases = [
    ['UNAVAILABLE', 'UNAVAILABLE', 'UNAVAILABLE', /^the array at .* is unavailable: injected fault/],
    ['DEADLINE_EXCEEDED', 'DEADLINE_EXCEEDED', 'DEADLINE_EXCEEDED', /^injected fault/],
    ['INTERNAL', 'DRIVER_ERROR', 'INTERNAL', /^the array answered GetJob with ARRAY_FAULT: injected fault/],
    ['INVALID_ARGUMENT', 'DRIVER_ERROR', 'INTERNAL', /^the array answered GetJob with BAD_REQUEST: injected fault/],
  ] as const;
  for (const [injected, code, status, message] of cases) {
    await sim.client.call('SetFaults', { stallCopy: true, failNth: [{ method: 'GetJob', n: 1, code: injected }] });
    await failsWith(p.driver.continueMigration(call('m3')), code, status, message);
  }
  await sim.client.call('ClearFaults');
  assert.equal((await p.driver.continueMigration(call('m3'))).progress!.totalBytes, 4 * MiB);

  // The array answers too late: the driver's own deadline (callTimeoutMs), DEADLINE_EXCEEDED.
  await p.driver.openBackend({ backend: 'alpha', options: toStruct({ endpoint: sim.address, callTimeoutMs: 200 }), daemonAddress: '' });
  await sim.client.call('SetFaults', { latencyMs: { GetJob: 60_000 } });
  await failsWith(p.driver.continueMigration(call('m3')), 'DEADLINE_EXCEEDED', 'DEADLINE_EXCEEDED', /^GetJob to the array at .* ran past its 200 ms deadline$/);
  await sim.client.call('ClearFaults');

  // No array answers: the transport's UNAVAILABLE.
  await p.driver.openBackend({ backend: 'gone', options: toStruct({ endpoint: '127.0.0.1:1' }), daemonAddress: '' });
  await failsWith(p.driver.describe('gone'), 'UNAVAILABLE', 'UNAVAILABLE', /^the array at 127\.0\.0\.1:1 is unavailable: /);

  // Bad input: a checkpoint that is not this driver's, a call without a migration id.
  await failsWith(p.driver.continueMigration({ ...call('m3'), checkpoint: Buffer.from('not json') }), 'INVALID_ARGUMENT', 'INVALID_ARGUMENT', /^migration m3: the checkpoint is not JSON/);
  await failsWith(p.driver.continueMigration({ backend: 'alpha' }), 'INVALID_ARGUMENT', 'INVALID_ARGUMENT', /^migration\.id is REQUIRED$/);
});

test('calls are served concurrently: Describe answers while a Continue waits on a slow array, and a cancelled call ends', async (t) => {
  const { p, sim } = await driverOnArray(t);
  await filledShare(sim.client, 'py3', 1 * MiB);
  const call: MigrationCall = { backend: 'alpha', migration: spec({ id: 'mig-py3', shareId: 'py3' }) };
  await p.driver.startMigration(call);
  await sim.client.call('SetFaults', { latencyMs: { GetJob: 60_000 } });
  let settled = false;
  const slow = p.driver.start<MigrationCall, unknown>('Continue', call);
  void slow.result.then(() => (settled = true), () => (settled = true));
  // With one thread for every call this Describe would wait behind the Continue, past its own deadline.
  assert.deepEqual((await p.driver.describe('alpha', 10_000)).pools.map((pool) => pool.name), ['gold', 'silver']);
  assert.equal(settled, false, 'the Continue is still waiting on the array');
  slow.cancel();
  assert.equal((await failure(slow.result)).status, 'CANCELLED');
});

test('the driver exits when its stdin closes, and on SIGTERM, and removes its socket', async (t) => {
  const a = await startDriver(t);
  assert.ok(existsSync(a.socket));
  a.child.stdin!.end();
  assert.deepEqual(await a.exited, { code: 0, signal: null });
  assert.equal(a.logs.find((l) => l.msg === 'stopping')?.reason, 'stdin closed');
  assert.equal(existsSync(a.socket), false, 'the socket is removed');
  for (const line of a.logs) assert.equal(typeof line.time, 'string');

  const b = await startDriver(t);
  b.child.kill('SIGTERM');
  assert.deepEqual(await b.exited, { code: 0, signal: null });
  assert.equal(b.logs.find((l) => l.msg === 'stopping')?.reason, 'SIGTERM');
  assert.deepEqual(b.logs.at(-1)?.msg, 'stopped');
});

test('a stop reaches the driver whichever thread the kernel hands the signal to', async () => {
  // The kernel may give SIGTERM to any thread, often one of gRPC's; a main thread that waits on a lock
  // never runs Python's handler then (seen: a third of the drivers SIGTERMed on a loaded machine hung).
  const script = join(import.meta.dirname, 'stop_requests.py');
  for (const how of ['SIGTERM', 'SIGINT', 'stdin']) {
    const { stdout } = await promisify(execFile)('/usr/bin/python3', [script, how], { timeout: 20_000 });
    assert.equal(stdout.trim(), how === 'stdin' ? 'stdin closed' : how);
  }
});
