/**
 * The whole system in one process: ferryd with its embedded simulated array,
 * the simulator driver loaded through the plugin loader, real gRPC on
 * 127.0.0.1:0, real LevelDB, real worker threads and real files.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, test } from 'node:test';
import type { TestContext } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { protoPath as healthProtoPath } from 'grpc-health-check';
import { SimClient } from '../simulator/helpers.ts';
import { inProcessDaemon, pluginsDir, rejectsWith, SMALL_ARRAY, tempDir, testConfig, waitForState } from '../helpers.ts';

const KiB = 1024;
const MiB = 1024 * KiB;

async function system(t: TestContext, extraPlugins: Record<string, Record<string, string>> = {}, file: Record<string, unknown> = {}) {
  const dir = tempDir(t);
  const config = testConfig(`${dir}/data`, { simulator: { config: SMALL_ARRAY }, engine: { minPollMs: 1 }, ...file }, pluginsDir(dir, ['simulator'], extraPlugins));
  const { daemon, client } = await inProcessDaemon(t, config);
  const sim = new SimClient(daemon.address);
  t.after(() => sim.close());
  return { daemon, client, sim };
}

async function shareWithData(sim: SimClient, shareId: string, size = 2 * MiB): Promise<string> {
  await sim.call('CreateShare', { shareId, backend: 'alpha', pool: 'gold', sizeBytes: size });
  for (let off = 0; off < size; off += 512 * KiB) await sim.call('WriteShare', { shareId, offset: off, data: randomBytes(512 * KiB) });
  return (await sim.call('ChecksumShare', { shareId })).sha256 as string;
}

describe('ferryd with the embedded simulator', () => {
  test('lists both backends with pools, driver and health', async (t) => {
    const { client } = await system(t);
    const { backends } = await client.listBackends();
    assert.deepEqual(backends.map((b) => b.name), ['alpha', 'beta']);
    const beta = backends[1]!;
    assert.equal(beta.driverName, 'simulator');
    assert.equal(beta.health, 'BACKEND_HEALTH_SERVING');
    assert.deepEqual(beta.pools.map((p) => p.name), ['bronze', 'tiny']);
    assert.equal(beta.pools[1]!.capacityBytes, 1 * MiB);
    assert.equal(beta.capabilities?.writable, true);
    assert.equal(beta.capabilities?.preserveSnapshots, false);
  });

  test('migrates a share under a random-write workload: every acknowledged write lands and the data moves intact', async (t) => {
    const { client, sim } = await system(t);
    await shareWithData(sim, 'data1');
    const workload = await sim.call('StartWorkload', { shareId: 'data1', rateBytesPerSec: 2 * MiB, blockSize: 4 * KiB, pattern: 'RANDOM', seed: 7, concurrency: 2 });
    const check = await client.checkCompatibility({ share: { backend: 'alpha', shareId: 'data1' }, destination: 'beta#bronze', writable: true, nondisruptive: true });
    assert.equal(check.compatible, true, check.reasons.join('; '));
    assert.equal(check.shareSizeBytes, 2 * MiB);

    const m = await client.startMigration({ share: { backend: 'alpha', shareId: 'data1' }, destination: 'beta#bronze', writable: true, nondisruptive: true, maxDowntimeMs: 2_000 });
    await waitForState(client, m.id, 'PHASE1_DONE');
    await client.completeMigration(m.id);
    const done = await waitForState(client, m.id, 'SUCCESS');
    assert.ok(done.cutover && done.cutover.freezeMs > 0);
    const stopped = await sim.call('StopWorkload', { workloadId: workload.workloadId });
    assert.equal(typeof stopped.writesAcked, 'number', 'StopWorkload answers a Workload with writes_acked');
    assert.ok(stopped.writesAcked > 0, `the workload had ${stopped.writesAcked} writes acknowledged`);
    const verify = await sim.call('VerifyWorkload', { workloadId: workload.workloadId });
    assert.ok(verify.checked > 0);
    assert.equal(verify.lost, 0, 'an acknowledged write was lost');
    const share = await sim.call('GetShare', { shareId: 'data1' });
    assert.equal(share.backend, 'beta');
    assert.equal(share.pool, 'bronze');
  });

  test('moves the bytes unchanged (checksum before equals checksum after)', async (t) => {
    const { client, sim } = await system(t);
    const before = await shareWithData(sim, 'data2');
    const final = await client.migrate({ share: { backend: 'alpha', shareId: 'data2' }, destination: 'beta#bronze', writable: true });
    assert.equal(final.state, 'MIGRATION_STATE_SUCCESS');
    assert.equal((await sim.call('ChecksumShare', { shareId: 'data2' })).sha256, before);
    const shares = (await sim.call('ListShares', {})).shares as { shareId: string; backend: string }[];
    assert.deepEqual(shares.map((s) => [s.shareId, s.backend]), [['data2', 'beta']], 'the source or a stray copy was left behind');
  });

  test('maps the array\'s refusals to the documented codes and changes nothing', async (t) => {
    const { client, sim } = await system(t);
    await shareWithData(sim, 'data3', 2 * MiB);
    await rejectsWith(client.startMigration({ share: { backend: 'alpha', shareId: 'nope' }, destination: 'beta#bronze' }), 'NOT_FOUND', /nope/);
    await rejectsWith(client.startMigration({ share: { backend: 'alpha', shareId: 'data3' }, destination: 'beta#nopool' }), 'NOT_FOUND', /nopool/);
    await rejectsWith(client.startMigration({ share: { backend: 'alpha', shareId: 'data3' }, destination: 'beta#tiny' }), 'RESOURCE_EXHAUSTED', /tiny/);
    await rejectsWith(client.startMigration({ share: { backend: 'alpha', shareId: 'data3' }, destination: 'beta#bronze', preserveSnapshots: true }), 'UNIMPLEMENTED', /preserve_snapshots/);
    const dry = await client.checkCompatibility({ share: { backend: 'alpha', shareId: 'data3' }, destination: 'beta#tiny' });
    assert.equal(dry.compatible, false);
    assert.match(dry.reasons.join(';'), /bytes free/);
    assert.equal((await client.listMigrations()).migrations.length, 0);
    assert.equal((await sim.call('ListShares', {})).shares.length, 1);
  });

  test('cancel leaves the source intact and no destination behind', async (t) => {
    const { client, sim } = await system(t);
    const before = await shareWithData(sim, 'data4');
    const m = await client.startMigration({ share: { backend: 'alpha', shareId: 'data4' }, destination: 'beta#bronze', writable: true });
    await waitForState(client, m.id, 'PHASE1_DONE');
    await client.cancelMigration(m.id);
    await waitForState(client, m.id, 'CANCELLED');
    const share = await sim.call('GetShare', { shareId: 'data4' });
    assert.equal(share.backend, 'alpha');
    assert.equal(share.migrating, false);
    assert.equal((await sim.call('ChecksumShare', { shareId: 'data4' })).sha256, before);
    const pools = (await client.listBackends()).backends[1]!.pools;
    assert.equal(pools[0]!.freeBytes, pools[0]!.capacityBytes, 'the destination still holds space');
    await sim.call('WriteShare', { shareId: 'data4', offset: 0, data: Buffer.from('still writable') });
  });

  test('a broken plugin beside a working one: its backend is NOT_SERVING with the reason, the rest serve', async (t) => {
    const { client, daemon } = await system(
      t,
      {
        thrower: { 'plugin.json': JSON.stringify({ name: 'thrower', version: '1.0.0', apiVersion: 1, main: 'index.mjs' }), 'index.mjs': "throw new Error('boom at import');\n" },
        hanger: { 'plugin.json': JSON.stringify({ name: 'hanger', version: '1.0.0', apiVersion: 1, main: 'index.mjs' }), 'index.mjs': 'await new Promise(() => {});\n' },
        future: { 'plugin.json': JSON.stringify({ name: 'future', version: '9.0.0', apiVersion: 99 }) },
        badjson: { 'plugin.json': '{ not json' },
      },
      {
        pluginLoadTimeoutMs: 300,
        backends: [
          { name: 'alpha', plugin: 'simulator' },
          { name: 'beta', plugin: 'simulator' },
          { name: 'b-throw', plugin: 'thrower' },
          { name: 'b-hang', plugin: 'hanger' },
          { name: 'b-future', plugin: 'future' },
          { name: 'b-missing', plugin: 'nosuch' },
        ],
      },
    );
    const byName = new Map((await client.listBackends()).backends.map((b) => [b.name, b]));
    assert.equal(byName.get('alpha')?.health, 'BACKEND_HEALTH_SERVING');
    const expectations: [string, RegExp][] = [
      ['b-throw', /PLUGIN_IMPORT_FAILED: .*boom at import/],
      ['b-hang', /PLUGIN_LOAD_TIMEOUT: .*did not finish loading within 300 ms/],
      ['b-future', /PLUGIN_API_VERSION_MISMATCH: .*driver API 99/],
      ['b-missing', /PLUGIN_NOT_FOUND: .*nosuch/],
    ];
    for (const [name, reason] of expectations) {
      assert.equal(byName.get(name)?.health, 'BACKEND_HEALTH_NOT_SERVING', name);
      assert.match(byName.get(name)?.healthReason ?? '', reason);
    }
    await rejectsWith(client.startMigration({ share: { backend: 'b-throw', shareId: 'x' }, destination: 'alpha#gold' }), 'UNAVAILABLE', /b-throw is not serving/);
    const health = healthClient(daemon.address);
    t.after(() => health.close());
    assert.equal(await healthCheck(health, 'backend:b-hang'), 'NOT_SERVING');
    assert.equal(await healthCheck(health, 'backend:alpha'), 'SERVING');
    assert.equal(await healthCheck(health, 'ferry.v1.MigrationService'), 'SERVING');
  });

  test('a complete that returns garbage before the cutover began leaves the share usable at its source: the array job is cancelled', async (t) => {
    const simulatorDriver = JSON.stringify(new URL('../../plugins/simulator/index.ts', import.meta.url).pathname);
    const { client, sim } = await system(
      t,
      {
        'garbage-complete': {
          'plugin.json': JSON.stringify({ name: 'garbage-complete', version: '1.0.0', apiVersion: 1, main: 'index.ts' }),
          'index.ts': `import { createDriver as real } from ${simulatorDriver};\nexport const createDriver = (ctx) => Object.assign(real(ctx), { complete: async () => ({ status: 'maybe' }) });\n`,
        },
      },
      { backends: [{ name: 'alpha', plugin: 'garbage-complete' }, { name: 'beta', plugin: 'simulator' }] },
    );
    const before = await shareWithData(sim, 'garbage1');
    const m = await client.startMigration({ share: { backend: 'alpha', shareId: 'garbage1' }, destination: 'beta#bronze', writable: true });
    await waitForState(client, m.id, 'PHASE1_DONE');
    await client.completeMigration(m.id);
    const end = await client.waitFor(m.id, () => false);
    assert.equal(end.state, 'MIGRATION_STATE_ERROR');
    assert.equal(end.error?.code, 'DRIVER_ERROR');
    // The engine's clean-up cancels the array's job: the share is no longer marked migrating, and can move again.
    for (;;) {
      const job = await sim.call('GetJob', { jobId: m.id });
      if (job.state === 'JOB_STATE_CANCELLED') break;
      assert.notEqual(job.state, 'JOB_STATE_DONE');
      await new Promise((resolve) => setTimeout(resolve, 10)); // the clean-up has no event of its own to wait for
    }
    const share = await sim.call('GetShare', { shareId: 'garbage1' });
    assert.equal(share.migrating, false);
    assert.equal(share.backend, 'alpha');
    assert.equal((await sim.call('ChecksumShare', { shareId: 'garbage1' })).sha256, before);
    const again = await client.startMigration({ share: { backend: 'alpha', shareId: 'garbage1' }, destination: 'beta#bronze' });
    assert.equal(again.state, 'MIGRATION_STATE_STARTING');
  });

  test('serves reflection (v1 and v1alpha) listing the migration and simulator services, with no proto files on the client', async (t) => {
    const { daemon } = await system(t);
    for (const version of ['v1', 'v1alpha']) {
      const services = await reflectionList(daemon.address, version);
      assert.ok(services.includes('ferry.v1.MigrationService'), `${version}: ${services.join(', ')}`);
      assert.ok(services.includes('ferry.simulator.v1.SimulatorService'));
      assert.ok(services.includes('grpc.health.v1.Health'));
    }
  });
});

function healthClient(address: string): grpc.Client & Record<string, Function> {
  const pkg = protoLoader.loadSync(healthProtoPath, { enums: String });
  const Ctor = grpc.makeGenericClientConstructor(pkg['grpc.health.v1.Health'] as grpc.ServiceDefinition, 'Health');
  return new Ctor(address, grpc.credentials.createInsecure()) as unknown as grpc.Client & Record<string, Function>;
}

function healthCheck(client: grpc.Client & Record<string, Function>, service: string): Promise<string> {
  return new Promise((resolve, reject) => client.Check!({ service }, (err: Error | null, res: { status: string }) => (err ? reject(err) : resolve(res.status))));
}

/**
 * What grpcurl does with no proto files: lists services through server
 * reflection, then fetches the file that defines MigrationService. Uses only
 * the reflection proto (shipped by @grpc/reflection).
 */
async function reflectionList(address: string, version: string): Promise<string[]> {
  const { createRequire } = await import('node:module');
  const require = createRequire(import.meta.url);
  const root = require.resolve('@grpc/reflection/package.json').replace(/package\.json$/, 'build/');
  const file = version === 'v1' ? 'proto/grpc/reflection/v1/reflection.proto' : 'proto/grpc/reflection/v1alpha/reflection.proto';
  const pkg = protoLoader.loadSync(file, { includeDirs: [root], keepCase: true });
  const name = version === 'v1' ? 'grpc.reflection.v1.ServerReflection' : 'grpc.reflection.v1alpha.ServerReflection';
  const Ctor = grpc.makeGenericClientConstructor(pkg[name] as grpc.ServiceDefinition, 'ServerReflection');
  const client = new Ctor(address, grpc.credentials.createInsecure()) as unknown as grpc.Client & Record<string, Function>;
  try {
    return await new Promise<string[]>((resolve, reject) => {
      type Res = { list_services_response?: { service: { name: string }[] }; file_descriptor_response?: { file_descriptor_proto: Buffer[] } };
      const call = client.ServerReflectionInfo!() as grpc.ClientDuplexStream<object, Res>;
      let services: string[] = [];
      call.on('data', (res: Res) => {
        if (res.list_services_response) {
          services = res.list_services_response.service.map((s) => s.name);
          call.write({ file_containing_symbol: 'ferry.v1.MigrationService' });
        } else {
          const files = res.file_descriptor_response?.file_descriptor_proto ?? [];
          const text = Buffer.concat(files).toString('latin1');
          if (!text.includes('StartMigration') || !text.includes('WatchMigration')) reject(new Error('the descriptor of ferry.v1.MigrationService lacks its methods'));
          else resolve(services);
          call.end();
        }
      });
      call.on('error', reject);
      call.write({ list_services: '*' });
    });
  } finally {
    client.close();
  }
}
