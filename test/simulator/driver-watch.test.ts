/**
 * The simulator driver's watchChanges over a real array and real gRPC, read
 * the way ferryd's change feed reads it: '' once the array's watch is
 * registered, then the migrations whose jobs changed on the driver's
 * backend; the end of the stream when the array closes, '' again on the
 * next connection, an error when the connection breaks, and a quiet end
 * when the signal aborts.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { silentLog } from '../../lib/log.ts';
import { bind, shutdown } from '../../lib/rpc.ts';
import { FerryError } from '../../plugins/api/index.ts';
import type { Driver, DriverChange, MigrationSpec } from '../../plugins/api/index.ts';
import { createDriver } from '../../plugins/simulator/index.ts';
import { SimArray, addSimulatorService } from '../../simulator/index.ts';
import { TEST_CONFIG, defer, migrationSpec, serveArray, tempDir } from './helpers.ts';

const KiB = 1024;

async function driverFor(t: Parameters<typeof defer>[0], endpoint: string): Promise<Driver> {
  const driver = await createDriver({ backend: 'alpha', options: { endpoint }, daemonAddress: 'unused:1', log: silentLog() });
  defer(t, () => driver.close?.());
  return driver;
}

const spec = migrationSpec;

/** Reads a driver's watchChanges in the background, as ferryd's feed does. */
function feed(t: Parameters<typeof defer>[0], driver: Driver) {
  const abort = new AbortController();
  const changes: string[] = [];
  const waiters = new Set<() => void>();
  const ended = (async () => {
    for await (const change of driver.watchChanges!({ signal: abort.signal }) as AsyncIterable<DriverChange>) {
      changes.push(change.migrationId);
      for (const w of waiters) w();
    }
  })();
  ended.catch(() => undefined);
  defer(t, () => abort.abort());
  /** Resolves once a change with this id has come (at or after index `from`). */
  const saw = (migrationId: string, from = 0, timeoutMs = 20_000) =>
    new Promise<number>((resolve, reject) => {
      const look = () => {
        const at = changes.indexOf(migrationId, from);
        if (at < 0) return;
        waiters.delete(look);
        clearTimeout(timer);
        resolve(at);
      };
      const timer = setTimeout(() => {
        waiters.delete(look);
        reject(new Error(`watchChanges yielded no ${JSON.stringify(migrationId)} within ${timeoutMs} ms; it yielded ${JSON.stringify(changes)}`));
      }, timeoutMs);
      waiters.add(look);
      look();
    });
  return { changes, saw, ended, abort };
}

/** The array in `dataDir` served on `address`, with its server at hand (to cut connections); closed when the test ends. */
async function serve(t: Parameters<typeof defer>[0], dataDir: string, address: string): Promise<{ server: grpc.Server; address: string }> {
  const array = await SimArray.open({ dataDir, config: TEST_CONFIG, log: silentLog() });
  const server = new grpc.Server();
  addSimulatorService(server, array, silentLog());
  const bound = await bind(server, address);
  defer(t, async () => {
    array.jobs.closeWatches();
    await shutdown(server, 1000);
    await array.close();
  });
  return { server, address: bound };
}

const call = (migration: MigrationSpec, checkpoint: Record<string, unknown> | null = null) => ({ migration, checkpoint, signal: new AbortController().signal, log: silentLog() });

describe('the simulator driver: watchChanges', () => {
  test("yields '' once the array watches, then the migration of each job change on its backend (phase 1 done, the cutover's end), and nothing of another backend's jobs", async (t) => {
    const { client, address } = await serveArray(t);
    await client.call('CreateShare', { shareId: 's1', backend: 'alpha', pool: 'gold', sizeBytes: 256 * KiB });
    await client.call('CreateShare', { shareId: 'b1', backend: 'beta', pool: 'bronze', sizeBytes: 64 * KiB });
    const driver = await driverFor(t, address);
    const changes = feed(t, driver);
    assert.equal(await changes.saw(''), 0, "'' first");

    const m = spec('m1', 's1');
    const started = await driver.start(call(m));
    await changes.saw('m1');
    const cont = await driver.continue(call(m, started.checkpoint as Record<string, unknown>));
    assert.equal(cont.phase1Done, true, 'the change came once phase 1 was done');

    // A job on beta, the other backend: the alpha driver's stream says nothing of it.
    await client.call('StartJob', { jobId: 'other', shareId: 'b1', destBackend: 'alpha', destPool: 'silver' });
    const before = changes.changes.length;
    const done = await driver.complete(call(m, cont.checkpoint as Record<string, unknown>));
    assert.equal(done.status, 'done');
    await changes.saw('m1', before);
    assert.ok(!changes.changes.includes('other'), `only alpha's migrations: ${JSON.stringify(changes.changes)}`);
  });

  test("ends when the array closes; on the next connection it yields '' first again", async (t) => {
    const first = await serveArray(t);
    const driver = await driverFor(t, first.address);
    const one = feed(t, driver);
    await one.saw('');
    await first.close();
    await one.ended;

    // The array back on the same address, as after a restart of ferry-sim.
    await serve(t, first.dataDir, first.address);
    const two = feed(t, driver);
    assert.equal(await two.saw(''), 0, "'' first on the new connection");
  });

  test('throws when the connection breaks (ferryd opens it again), and ends quietly when its signal aborts', async (t) => {
    const { server, address } = await serve(t, await tempDir(t), '127.0.0.1:0');
    const driver = await driverFor(t, address);
    const quiet = feed(t, driver);
    await quiet.saw('');
    quiet.abort.abort();
    await quiet.ended;

    const broken = feed(t, driver);
    await broken.saw('');
    // The connection cut under the stream: no clean end from the array.
    server.forceShutdown();
    await assert.rejects(broken.ended, (err: unknown) => err instanceof FerryError);
  });
});
