/**
 * The module pass-through (plugins/conformance/shim.ts) gives ferryd the
 * vendor's driver as it is: the host data path's halves are there exactly
 * when the driver has them, the very objects the driver holds, read from
 * the driver each time (a driver that gains or drops one later is seen so).
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { DataDestination, DataSource, Driver, DriverFactoryContext } from '../../plugins/api/index.ts';
import { wrapFactory } from '../../plugins/conformance/shim.ts';
import { silentLog } from '../../lib/log.ts';

const ctx: DriverFactoryContext = { backend: 'alpha', options: {}, daemonAddress: '127.0.0.1:1', log: silentLog() };
// Nobody listens at the control URL: the shim then passes calls straight through.
const CONTROL = 'http://127.0.0.1:9';

function baseDriver(): Driver {
  const never = () => Promise.reject(new Error('not called'));
  return { capabilities: () => ({ writable: true, nondisruptive: true, preserveMetadata: false, preserveSnapshots: false }), describe: never, checkCompatibility: never, start: never, continue: never, complete: never, cancel: never, progress: never };
}

async function wrap(driver: Driver): Promise<Driver> {
  const factory = wrapFactory(() => driver, CONTROL) as (c: DriverFactoryContext) => Promise<Driver>;
  return factory(ctx);
}

const source = { createSnapshot: () => Promise.reject(new Error('x')) } as unknown as DataSource;
const destination = { createTarget: () => Promise.reject(new Error('x')) } as unknown as DataDestination;

describe('the module pass-through', () => {
  test("passes the driver's dataSource and dataDestination through as the same objects", async () => {
    const wrapped = await wrap({ ...baseDriver(), dataSource: source, dataDestination: destination });
    assert.equal(wrapped.dataSource, source);
    assert.equal(wrapped.dataDestination, destination);
  });

  test('has neither half when the driver has neither, and only the half it has', async () => {
    const none = await wrap(baseDriver());
    assert.equal(none.dataSource, undefined);
    assert.equal(none.dataDestination, undefined);
    const half = await wrap({ ...baseDriver(), dataDestination: destination });
    assert.equal(half.dataSource, undefined);
    assert.equal(half.dataDestination, destination);
  });

  test('reads the members from the driver each time, so a half the driver gains or drops later is seen so', async () => {
    let offered: DataSource | undefined;
    const driver = Object.defineProperty(baseDriver(), 'dataSource', { get: () => offered, enumerable: true });
    const wrapped = await wrap(driver);
    assert.equal(wrapped.dataSource, undefined);
    offered = source;
    assert.equal(wrapped.dataSource, source);
    offered = undefined;
    assert.equal(wrapped.dataSource, undefined);
  });
});
