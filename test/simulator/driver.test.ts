/**
 * The simulator's driver against a real array over real gRPC, called the
 * way the daemon calls it: repeated calls, checkpoints carried from one
 * call to the next, capability gates, error codes, aborts.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { silentLog } from '../../lib/log.ts';
import { bind, serviceDefinition, shutdown, unary, type StatusMapper } from '../../lib/rpc.ts';
import { FerryError } from '../../plugins/api/index.ts';
import type { Checkpoint, Driver, MigrationCall, MigrationSpec } from '../../plugins/api/index.ts';
import { arrayCodeOf, ARRAY_CODE_MAP } from '../../plugins/simulator/client.ts';
import { createDriver } from '../../plugins/simulator/index.ts';
import { SIMULATOR_SERVICE } from '../../simulator/index.ts';
import { dataFiles, defer, filledShare, migrationSpec, serveArray } from './helpers.ts';

const MiB = 1024 * 1024;

async function driverFor(t: { after(fn: () => unknown): void }, endpoint: string, options: Record<string, unknown> = {}): Promise<Driver> {
  const driver = await createDriver({ backend: 'alpha', options: { endpoint, ...options }, daemonAddress: 'unused:1', log: silentLog() });
  defer(t, () => driver.close?.());
  return driver;
}

const spec = migrationSpec;

function call(migration: MigrationSpec, checkpoint: Checkpoint = null, signal = new AbortController().signal): MigrationCall {
  return { migration, checkpoint, signal, log: silentLog() };
}

async function rejectsCode(promise: Promise<unknown>, code: string, message?: RegExp): Promise<void> {
  await assert.rejects(promise, (err: unknown) => {
    assert.ok(err instanceof FerryError, `a FerryError, got ${String(err)}`);
    assert.equal(err.code, code, err.message);
    if (message) assert.match(err.message, message);
    return true;
  });
}

/**
 * A stand-in for the array that answers only `handlers` (each a response or
 * a thrown error shaped by `mapError`): for answers the real array never
 * gives. Closed when the test ends.
 */
async function fakeArray(t: { after(fn: () => unknown): void }, handlers: Record<string, () => unknown>, mapError: StatusMapper = () => undefined): Promise<string> {
  const server = new grpc.Server();
  const impl: grpc.UntypedServiceImplementation = {};
  for (const [method, fn] of Object.entries(handlers)) impl[method] = unary(method, silentLog(), mapError, async () => fn());
  server.addService(serviceDefinition(SIMULATOR_SERVICE), impl);
  const address = await bind(server, '127.0.0.1:0');
  defer(t, () => shutdown(server, 1000));
  return address;
}

/** Calls continue as the daemon would, honouring nextPollMs, until phase 1 is done. */
async function continueUntilPhase1(driver: Driver, migration: MigrationSpec, checkpoint: Checkpoint): Promise<{ checkpoint: Checkpoint; polls: number[] }> {
  const polls: number[] = [];
  const until = Date.now() + 30_000;
  for (;;) {
    const res = await driver.continue(call(migration, checkpoint));
    checkpoint = res.checkpoint;
    assert.ok(res.progress.copiedBytes <= res.progress.totalBytes);
    if (res.phase1Done) return { checkpoint, polls };
    polls.push(res.nextPollMs ?? 0);
    assert.ok(Date.now() < until, 'phase 1 done within 30 s');
    await new Promise((r) => setTimeout(r, res.nextPollMs ?? 100));
  }
}

describe('simulator driver', () => {
  test('capabilities follow the snapshots option; describe lists the backend pools', async (t) => {
    const { address } = await serveArray(t);
    const plain = await driverFor(t, address);
    assert.deepEqual(plain.capabilities(), { writable: true, nondisruptive: true, preserveMetadata: true, preserveSnapshots: false });
    const withSnapshots = await driverFor(t, address, { snapshots: true });
    assert.equal(withSnapshots.capabilities().preserveSnapshots, true);
    const { pools } = await plain.describe({ signal: new AbortController().signal });
    assert.deepEqual(
      pools.map((p) => p.name),
      ['gold', 'silver'],
    );
    assert.equal(pools[0]!.freeBytes, 64 * MiB);
  });

  test('rejects options it cannot use with a TypeError naming the option', async (t) => {
    const { address } = await serveArray(t);
    await assert.rejects(driverFor(t, address, { snapshots: 'sometimes' }), (err: unknown) => err instanceof TypeError && /options\.snapshots/.test(err.message));
    await assert.rejects(driverFor(t, address, { callTimeoutMs: 'soon' }), (err: unknown) => err instanceof TypeError && /options\.callTimeoutMs/.test(err.message));
  });

  test('checkCompatibility: size, room and capabilities; reasons for impossible destinations; NOT_FOUND for an unknown share or pool', async (t) => {
    const { address, client } = await serveArray(t);
    await client.call('CreateShare', { shareId: 's1', backend: 'alpha', pool: 'gold', sizeBytes: 3 * MiB });
    const driver = await driverFor(t, address, { snapshots: 'within-backend' });
    const ok = await driver.checkCompatibility(call(spec('m1', 's1')));
    assert.deepEqual(ok.reasons, []);
    assert.equal(ok.shareSizeBytes, 3 * MiB);
    assert.equal(ok.destinationFreeBytes, 64 * MiB);
    assert.equal(ok.capabilities.preserveSnapshots, false, 'snapshots do not cross backends');
    const within = await driver.checkCompatibility(call(spec('m1', 's1', { destination: { backend: 'alpha', pool: 'silver' } })));
    assert.equal(within.capabilities.preserveSnapshots, true);

    // Another plugin's backend: unreachable for a job (ferryd may move it on the host path), and no NOT_FOUND for its pool.
    const elsewhere = await driver.checkCompatibility(call(spec('m1', 's1', { destination: { backend: 'netapp', pool: 'aggr1' } })));
    assert.equal(elsewhere.destinationUnreachable, true);
    assert.deepEqual(elsewhere.reasons, []);
    assert.equal(ok.destinationUnreachable, undefined, 'a backend of the same array is reachable');
    const same = await driver.checkCompatibility(call(spec('m1', 's1', { destination: { backend: 'alpha', pool: 'gold' } })));
    assert.match(same.reasons.join('\n'), /already lives in alpha#gold/);
    await rejectsCode(driver.checkCompatibility(call(spec('m1', 'nope'))), 'NOT_FOUND', /^share nope not found on backend alpha$/);
    await rejectsCode(driver.checkCompatibility(call(spec('m1', 's1', { destination: { backend: 'beta', pool: 'lead' } }))), 'NOT_FOUND', /^pool lead not found on backend beta \(it has bronze, tiny\)$/);
    await rejectsCode(driver.checkCompatibility(call(spec('m1', 's1', { source: { backend: 'beta', shareId: 's1' } }))), 'NOT_FOUND', /not on backend beta/);

    await client.call('SetFaults', { stallCopy: true });
    await driver.start(call(spec('m1', 's1')));
    const again = await driver.checkCompatibility(call(spec('m1', 's1')));
    assert.deepEqual(again.reasons, [], 'its own migration is not a conflict');
    const other = await driver.checkCompatibility(call(spec('m2', 's1')));
    assert.match(other.reasons.join('\n'), /already migrating \(array job m1\)/);
  });

  test('a whole migration: start repeated, continue until phase 1, complete repeated', async (t) => {
    const { address, client } = await serveArray(t);
    await filledShare(client, 's1', 2 * MiB);
    const driver = await driverFor(t, address);
    const m = spec('m1', 's1');
    const started: Array<{ checkpoint: Checkpoint }> = [];
    for (let i = 0; i < 3; i++) started.push(await driver.start(call(m, i === 0 ? null : started[i - 1]!.checkpoint)));
    assert.deepEqual(started[0]!.checkpoint, { jobId: 'm1' });
    assert.equal((await client.call('ListJobs')).jobs.length, 1, 'one array job for three starts');

    const { checkpoint, polls } = await continueUntilPhase1(driver, m, started[2]!.checkpoint);
    assert.ok(polls.every((ms) => ms >= 10 && ms <= 100), `poll hints within 10..100 ms while copying: ${polls}`);
    const syncing = await driver.continue(call(m, checkpoint));
    assert.equal(syncing.phase1Done, true);
    assert.equal(syncing.progress.copiedBytes, 2 * MiB);
    assert.equal(syncing.nextPollMs, 500);

    const first = await driver.complete(call(m, checkpoint));
    assert.equal(first.status, 'done');
    if (first.status !== 'done') return;
    assert.ok(first.cutover.freezeMs > 0);
    for (let i = 0; i < 3; i++) {
      const again = await driver.complete(call(m, first.checkpoint));
      assert.deepEqual(again, first);
    }
    assert.equal((await client.call('GetShare', { shareId: 's1' })).backend, 'beta');
    assert.equal((await driver.progress(call(m, first.checkpoint))).copiedBytes, 2 * MiB);
  });

  test('complete reports an aborted cutover once, and a later complete starts a new attempt', async (t) => {
    const { address, client } = await serveArray(t);
    await filledShare(client, 's1', MiB);
    const driver = await driverFor(t, address, { callTimeoutMs: 1000 });
    const m = spec('m1', 's1', { maxDowntimeMs: 800 });
    const { checkpoint } = await driver.start(call(m));
    const ready = await continueUntilPhase1(driver, m, checkpoint);
    await client.call('SetFaults', { cutoverDelayMs: 2000 });
    // The freeze aborts at its 800 ms window, which outlasts the driver's 500 ms wait: the first call answers in_progress, a repeat reports the abort.
    let res = await driver.complete(call(m, ready.checkpoint));
    const seen = [res.status];
    while (res.status === 'in_progress') {
      await new Promise((r) => setTimeout(r, res.status === 'in_progress' ? (res.nextPollMs ?? 100) : 0));
      res = await driver.complete(call(m, res.checkpoint));
      seen.push(res.status);
    }
    assert.equal(res.status, 'aborted', `statuses: ${seen}`);
    if (res.status !== 'aborted') return;
    assert.match(res.reason, /exceeded its 800 ms window/);
    assert.equal((await client.call('GetJob', { jobId: 'm1' })).cutoverAttempts, 1, 'reporting the abort started no second attempt');

    await client.call('ClearFaults');
    const done = await driver.complete(call(m, res.checkpoint));
    assert.equal(done.status, 'done');
    assert.equal((await client.call('GetJob', { jobId: 'm1' })).cutoverAttempts, 2);
  });

  test('cancel is idempotent, removes the destination, and also answers done for a job the array never saw', async (t) => {
    const { address, client, dataDir } = await serveArray(t);
    await filledShare(client, 's1', MiB);
    const driver = await driverFor(t, address);
    const m = spec('m1', 's1');
    const { checkpoint } = await driver.start(call(m));
    for (let i = 0; i < 3; i++) {
      const res = await driver.cancel(call(m, checkpoint));
      assert.equal(res.done, true);
    }
    assert.equal((await dataFiles(dataDir)).length, 1);
    assert.equal((await client.call('GetShare', { shareId: 's1' })).migrating, false);
    await rejectsCode(driver.continue(call(m, checkpoint)), 'FAILED_PRECONDITION', /cancelled/);

    const never = spec('m-never', 's1');
    assert.equal((await driver.cancel(call(never))).done, true);
    await rejectsCode(driver.start(call(never)), 'FAILED_PRECONDITION', /cancelled before it started/);
  });

  test('maps array errors to Ferry codes, keeping the array message', async (t) => {
    const { address, client } = await serveArray(t);
    await client.call('CreateShare', { shareId: 'big', backend: 'alpha', pool: 'gold', sizeBytes: 3 * MiB });
    const driver = await driverFor(t, address);
    await rejectsCode(driver.start(call(spec('m1', 'big', { destination: { backend: 'beta', pool: 'tiny' } }))), 'RESOURCE_EXHAUSTED', /beta\/tiny lacks room/);
    await rejectsCode(driver.start(call(spec('m1', 'nope'))), 'NOT_FOUND', /share nope/);
    await rejectsCode(driver.start(call(spec('m2', 'big', { preserveSnapshots: true }))), 'UNIMPLEMENTED', /snapshots/);
    await client.call('SetFaults', { stallCopy: true });
    await driver.start(call(spec('m3', 'big')));
    await rejectsCode(driver.start(call(spec('m3', 'big', { writable: false }))), 'ALREADY_EXISTS', /writable/);
    await rejectsCode(driver.complete(call(spec('m3', 'big'))), 'FAILED_PRECONDITION', /phase 1 not done/);
    await client.call('SetFaults', { stallCopy: true, failNth: [{ method: 'GetJob', n: 1, code: 'INTERNAL' }] });
    await rejectsCode(driver.continue(call(spec('m3', 'big'))), 'DRIVER_ERROR', /injected fault/);
    assert.deepEqual((await driver.progress(call(spec('m-unknown', 'big')))).copiedBytes, 0, 'no job yet: zero progress');
  });

  test('translates each of the array\'s error codes into its Ferry code', async (t) => {
    // What the array answers for each status a fault may inject, and what the driver must make of it; written out
    // here rather than read from the driver's table, so that a wrong row there fails.
    const expected: Array<[status: string, arrayCode: string, ferryCode: string]> = [
      ['INVALID_ARGUMENT', 'BAD_REQUEST', 'DRIVER_ERROR'],
      ['NOT_FOUND', 'NO_SUCH_OBJECT', 'NOT_FOUND'],
      ['ALREADY_EXISTS', 'OBJECT_EXISTS', 'ALREADY_EXISTS'],
      ['FAILED_PRECONDITION', 'WRONG_STATE', 'FAILED_PRECONDITION'],
      ['UNIMPLEMENTED', 'NOT_SUPPORTED', 'DRIVER_ERROR'],
      ['RESOURCE_EXHAUSTED', 'NO_SPACE', 'RESOURCE_EXHAUSTED'],
      ['UNAVAILABLE', 'BUSY', 'UNAVAILABLE'],
      ['DEADLINE_EXCEEDED', 'TIMED_OUT', 'DEADLINE_EXCEEDED'],
      ['INTERNAL', 'ARRAY_FAULT', 'DRIVER_ERROR'],
    ];
    const { address, client } = await serveArray(t);
    await client.call('SetFaults', { failNth: expected.map(([code], i) => ({ method: 'ListBackends', n: i + 1, code })) });
    const driver = await driverFor(t, address);
    for (const [status, arrayCode, ferryCode] of expected) {
      const err = await driver.describe({ signal: new AbortController().signal }).then(
        () => assert.fail(`an injected ${status} did not fail describe`),
        (e: unknown) => e,
      );
      assert.ok(err instanceof FerryError, `a FerryError for ${status}, got ${String(err)}`);
      const cause = err.cause as grpc.ServiceError;
      assert.equal(grpc.status[cause.code], status, 'the array answers with the status the fault names');
      assert.equal(arrayCodeOf(cause), arrayCode, `the array's own code for ${status}`);
      assert.equal(err.code, ferryCode, `the array's ${arrayCode} becomes ${ferryCode}: ${err.message}`);
      assert.match(err.message, /injected fault: call \d+ of ListBackends/, 'the array message is kept');
    }
    // OTHER_ARRAY and BAD_CHECKSUM share a status with another code or are not injectable: host-path-driver.test.ts checks them on real answers.
    assert.deepEqual(
      Object.keys(ARRAY_CODE_MAP).sort(),
      [...expected.map(([, code]) => code), 'OTHER_ARRAY', 'BAD_CHECKSUM'].sort(),
      'every row of the driver\'s table is checked',
    );
  });

  test('reads the array\'s code, not the gRPC status: an unknown code, or a status without the array\'s ErrorInfo, is DRIVER_ERROR', async (t) => {
    const address = await fakeArray(
      t,
      {
        ListBackends: () => {
          throw new Error('new');
        },
        GetShare: () => {
          throw new Error('foreign');
        },
      },
      (err) =>
        (err as Error).message === 'new'
          ? { code: grpc.status.NOT_FOUND, message: 'a code from a newer array', reason: 'SOMETHING_NEW', domain: 'ferry.simulator.v1' }
          : { code: grpc.status.NOT_FOUND, message: 'not the array speaking', reason: 'NO_SUCH_OBJECT', domain: 'example.com' },
    );
    const driver = await driverFor(t, address);
    await rejectsCode(driver.describe({ signal: new AbortController().signal }), 'DRIVER_ERROR', /answered ListBackends with SOMETHING_NEW: a code from a newer array/);
    await rejectsCode(driver.checkCompatibility(call(spec('m1', 's1'))), 'DRIVER_ERROR', /GetShare to the array at .* failed with NOT_FOUND: not the array speaking/);
  });

  test('complete refuses a DONE job that comes without its cutover figures, instead of inventing them', async (t) => {
    const done = { jobId: 'm1', state: 'JOB_STATE_DONE', phase1Done: true, progress: null, cutover: null, cutoverAttempts: 1, lastAbortReason: '', lastAbortAttempt: 0, error: null };
    const address = await fakeArray(t, { CutoverJob: () => done });
    const driver = await driverFor(t, address);
    await rejectsCode(driver.complete(call(spec('m1', 's1'), { jobId: 'm1' })), 'DRIVER_ERROR', /array job m1 is DONE but the array reported no cutover figures/);
  });

  test('an aborted signal cancels the call: DEADLINE_EXCEEDED; an unreachable array: UNAVAILABLE', async (t) => {
    const { address, client } = await serveArray(t);
    await client.call('SetFaults', { latencyMs: { ListBackends: 60_000 } });
    const driver = await driverFor(t, address);
    const abort = new AbortController();
    const pending = driver.describe({ signal: abort.signal });
    abort.abort();
    await rejectsCode(pending, 'DEADLINE_EXCEEDED', /aborted/);
    await rejectsCode(driver.describe({ signal: AbortSignal.abort() }), 'DEADLINE_EXCEEDED');

    const unreachable = await driverFor(t, '127.0.0.1:1');
    await rejectsCode(unreachable.describe({ signal: new AbortController().signal }), 'UNAVAILABLE', /127\.0\.0\.1:1 is unavailable/);
  });
});
