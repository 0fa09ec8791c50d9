/**
 * Drivers that run as their own process (kind process), driven by a real
 * ferryd over ferry.driver.v1.DriverService: the reference TypeScript driver
 * served by the bridge (host/serve-module.mjs), and small fixture drivers
 * that misbehave. Real processes, real gRPC, real LevelDB.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, test } from 'node:test';
import type { TestContext } from 'node:test';
import { FerryClient } from '../../client/client.ts';
import { startDaemon } from '../../daemon/daemon.ts';
import { SimClient } from '../simulator/helpers.ts';
import { pluginsDir, SMALL_ARRAY, tempDir, testConfig, waitForState } from '../helpers.ts';
import { bridgeCommand, LogTap, processPlugin } from './process-helpers.ts';

const MiB = 1024 * 1024;

/** A daemon whose backend alpha is driven by a process driver (`command`), beta by the module driver. */
async function processDaemon(t: TestContext, command: string[], settings: Record<string, unknown> = {}) {
  const dir = tempDir(t);
  const plugins = pluginsDir(dir, ['simulator'], { proc: processPlugin('proc', command) });
  const config = testConfig(
    `${dir}/data`,
    {
      simulator: { config: SMALL_ARRAY },
      backends: [
        { name: 'alpha', plugin: 'proc' },
        { name: 'beta', plugin: 'simulator' },
      ],
      engine: { minPollMs: 1, backoffInitialMs: 5, backoffMaxMs: 50 },
      healthProbeMs: 100,
      pluginLoadTimeoutMs: 20_000,
      ...settings,
    },
    plugins,
  );
  const tap = new LogTap();
  const daemon = await startDaemon(config, tap.log);
  const client = new FerryClient(daemon.address, 10_000);
  const sim = new SimClient(daemon.address);
  t.after(async () => {
    client.close();
    sim.close();
    await daemon.close(2_000);
  });
  return { daemon, client, sim, tap, dataDir: config.dataDir };
}

async function shareWithData(sim: SimClient, shareId: string, size = 4 * MiB): Promise<string> {
  await sim.call('CreateShare', { shareId, backend: 'alpha', pool: 'gold', sizeBytes: size });
  for (let off = 0; off < size; off += 1 * MiB) await sim.call('WriteShare', { shareId, offset: off, data: randomBytes(1 * MiB) });
  return (await sim.call('ChecksumShare', { shareId })).sha256 as string;
}

describe('a backend on a process driver', () => {
  test('migrates a share to SUCCESS through ferryd, its checkpoint kept as driverBytes', async (t) => {
    const { daemon, client, sim, tap } = await processDaemon(t, bridgeCommand('proc'));
    const started = await tap.next((l) => l.msg === 'driver process started');
    assert.equal(started.plugin, 'proc');
    assert.equal(typeof started.pid, 'number');
    const sum = await shareWithData(sim, 's1');
    const m = await client.startMigration({ share: { backend: 'alpha', shareId: 's1' }, destination: 'beta#bronze', writable: true, nondisruptive: true });
    await waitForState(client, m.id, 'PHASE1_DONE');
    // The reference driver's JSON checkpoint, as opaque bytes in ferryd's record.
    const checkpoint = daemon.engine.get(m.id).checkpoint as { driverBytes: string };
    assert.deepEqual(Object.keys(checkpoint), ['driverBytes']);
    assert.deepEqual(JSON.parse(Buffer.from(checkpoint.driverBytes, 'base64').toString()), { jobId: m.id });
    await client.completeMigration(m.id);
    const done = await waitForState(client, m.id, 'SUCCESS');
    assert.ok(done.cutover, 'the cutover figures came over the wire');
    const share = await sim.call('GetShare', { shareId: 's1' });
    assert.equal(share.backend, 'beta');
    assert.equal((await sim.call('ChecksumShare', { shareId: 's1' })).sha256, sum);
    const { backends } = await client.listBackends();
    const alpha = backends.find((b) => b.name === 'alpha')!;
    assert.equal(alpha.driverName, 'proc');
    assert.equal(alpha.capabilities?.writable, true);
  });
});
