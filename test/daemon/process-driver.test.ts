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
import * as grpc from '@grpc/grpc-js';
import { FerryCallError, FerryClient } from '../../client/client.ts';
import { startDaemon } from '../../daemon/daemon.ts';
import { SimClient } from '../simulator/helpers.ts';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { MAX_LINE_CHARS } from '../../host/driver-log.ts';
import { pluginsDir, ROOT, SMALL_ARRAY, testConfig, waitForState } from '../helpers.ts';
import { bridgeCommand, fixtureCommand, healthOf, LogTap, processPlugin } from './process-helpers.ts';

const MiB = 1024 * 1024;
const isStarted = (l: Record<string, unknown>) => l.msg === 'driver process started' && l.plugin === 'proc';
const exitOf = (pid: unknown) => (l: Record<string, unknown>) => l.msg === 'driver process exited' && l.pid === pid;

/** A daemon whose backend alpha is driven by a process driver (`command`), beta by the module driver. */
async function processDaemon(t: TestContext, command: string[], settings: Record<string, unknown> = {}) {
  // The daemon is closed before its dir is removed (after-hooks run in the order they were added).
  const dir = mkdtempSync(join(tmpdir(), 'ferry-proc-'));
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
    rmSync(dir, { recursive: true, force: true });
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

  test('survives its process SIGKILLed mid-copy and mid-cutover: the backend goes NOT_SERVING, the process restarts, and the migration ends in SUCCESS while beta stays served', async (t) => {
    const { daemon, client, sim, tap } = await processDaemon(t, bridgeCommand('proc'));
    const first = await tap.next(isStarted);
    const sum = await shareWithData(sim, 's1', 8 * MiB);
    const m = await client.startMigration({ share: { backend: 'alpha', shareId: 's1' }, destination: 'beta#bronze', writable: true, maxBandwidthBytesPerSec: 4 * MiB });
    await waitForState(client, m.id, 'IN_PROGRESS');

    // The process running now: on a loaded machine the liveness check may already have replaced the first one.
    const current = () => tap.lines.filter(isStarted).at(-1) ?? first;
    const victim = current();
    let mark = tap.lines.length;
    process.kill(victim.pid as number, 'SIGKILL');
    const exited = await tap.next(exitOf(victim.pid));
    assert.equal(exited.signal, 'SIGKILL');
    await tap.next((l) => l.msg === 'backend not serving' && l.backend === 'alpha', mark);
    assert.equal(await healthOf(daemon.address, 'backend:beta'), 'SERVING');
    await tap.next(isStarted, mark);
    assert.notEqual(current().pid, victim.pid);
    await tap.next((l) => l.msg === 'backend serving again' && l.backend === 'alpha', mark);
    await waitForState(client, m.id, 'PHASE1_DONE');

    // Hold the array's cutover so that the driver's Complete is surely in flight when its process dies.
    await sim.call('SetFaults', { latencyMs: { CutoverJob: 1_500 } });
    await client.completeMigration(m.id);
    await waitForState(client, m.id, 'COMPLETING');
    const second = current();
    mark = tap.lines.length;
    process.kill(second.pid as number, 'SIGKILL');
    await tap.next(exitOf(second.pid));
    await sim.call('ClearFaults', {});
    await tap.next(isStarted, mark);
    await waitForState(client, m.id, 'SUCCESS');
    assert.equal((await sim.call('GetShare', { shareId: 's1' })).backend, 'beta');
    assert.equal((await sim.call('ChecksumShare', { shareId: 's1' })).sha256, sum);
    assert.equal(await healthOf(daemon.address, 'backend:beta'), 'SERVING');
    assert.ok(tap.lines.some((l) => l.msg === 'driver call failed' && l.code === 'UNAVAILABLE'), 'a call in flight failed as UNAVAILABLE and was retried');
  });

  test('a driver restarted as another version is known by its new capabilities: ListBackends shows them and StartMigration admits by them', async (t) => {
    const capsFile = join(mkdtempSync(join(tmpdir(), 'ferry-caps-')), 'caps.json');
    t.after(() => rmSync(dirname(capsFile), { recursive: true, force: true }));
    writeFileSync(capsFile, JSON.stringify({ writable: false }));
    const backends = [
      { name: 'alpha', plugin: 'proc', options: { capsFile } },
      { name: 'beta', plugin: 'simulator' },
    ];
    const { client, sim, tap } = await processDaemon(t, bridgeCommand('proc', join(ROOT, 'test/fixtures/plugins/caps-file')), { backends });
    const first = await tap.next(isStarted);
    const alphaCaps = async () => (await client.listBackends()).backends.find((b) => b.name === 'alpha')?.capabilities?.writable;
    assert.equal(await alphaCaps(), false);
    await shareWithData(sim, 's1', 1 * MiB);
    const spec = { share: { backend: 'alpha', shareId: 's1' }, destination: 'beta#bronze', writable: true } as const;
    await assert.rejects(client.startMigration(spec), (err: FerryCallError) => err.status === grpc.status.UNIMPLEMENTED && /does not support writable/.test(err.message));

    writeFileSync(capsFile, JSON.stringify({ writable: true }));
    const mark = tap.lines.length;
    process.kill(first.pid as number, 'SIGKILL');
    await tap.next(isStarted, mark);
    await tap.next((l) => l.msg === 'backend serving again' && l.backend === 'alpha', mark);
    assert.equal(await alphaCaps(), true);
    const m = await client.startMigration(spec);
    await waitForState(client, m.id, 'PHASE1_DONE');
  });

  test('a driver that exits at start leaves its backend NOT_SERVING with the reason, is restarted with backoff, and the daemon serves the other backends', async (t) => {
    const { daemon, client, tap } = await processDaemon(t, fixtureCommand('exit-at-start.mjs'), { pluginLoadTimeoutMs: 30_000 });
    const exited = await tap.next((l) => l.msg === 'driver process exited');
    assert.equal(exited.code, 3);
    assert.ok(tap.lines.some((l) => l.plugin === 'proc' && l.stream === 'stderr' && l.msg === 'fixture driver: cannot start (on purpose)'), 'its stderr is in the log');
    const { backends } = await client.listBackends();
    const alpha = backends.find((b) => b.name === 'alpha')!;
    assert.equal(alpha.health, 'BACKEND_HEALTH_NOT_SERVING');
    assert.match(alpha.healthReason ?? '', /PLUGIN_LOAD_TIMEOUT|PLUGIN_START_FAILED/);
    assert.match(alpha.healthReason ?? '', /exited before it was ready \(code 3\)/);
    assert.equal(await healthOf(daemon.address, 'backend:alpha'), 'NOT_SERVING');
    assert.equal(await healthOf(daemon.address, 'backend:beta'), 'SERVING');
    // Restarted, again and again, with growing delays.
    const restarts = [await tap.next((l) => l.msg === 'restarting the driver process')];
    restarts.push(await tap.next((l) => l.msg === 'restarting the driver process' && l.restarts === 2));
    assert.ok((restarts[1]!.restartInMs as number) > (restarts[0]!.restartInMs as number));
  });

  test('a driver that never serves health is killed after the load timeout and restarted; its backend is NOT_SERVING and the others serve', async (t) => {
    const { daemon, tap } = await processDaemon(t, fixtureCommand('hang.mjs'), { pluginLoadTimeoutMs: 800 });
    const started = await tap.next(isStarted);
    const judged = await tap.next((l) => l.msg === 'driver process is not usable; killing it');
    assert.equal(judged.code, 'PLUGIN_LOAD_TIMEOUT');
    const exited = await tap.next(exitOf(started.pid));
    assert.equal(exited.signal, 'SIGKILL');
    assert.equal(await healthOf(daemon.address, 'backend:alpha'), 'NOT_SERVING');
    assert.equal(await healthOf(daemon.address, 'backend:beta'), 'SERVING');
    await tap.next((l) => isStarted(l) && l.pid !== started.pid);
  });

  test('a driver that stops answering is killed and restarted, and its backend serves again', async (t) => {
    const { daemon, client, sim, tap } = await processDaemon(t, bridgeCommand('proc'), { deadlines: { describe: 300 } });
    const first = await tap.next(isStarted);
    await tap.next((l) => l.msg === 'driver process ready');
    const mark = tap.lines.length;
    process.kill(first.pid as number, 'SIGSTOP');
    await tap.next((l) => l.msg === 'backend not serving' && l.backend === 'alpha', mark);
    assert.equal(await healthOf(daemon.address, 'backend:beta'), 'SERVING');
    await tap.next((l) => l.msg === 'driver process stopped answering; killing it', mark);
    const exited = await tap.next(exitOf(first.pid), mark);
    assert.equal(exited.signal, 'SIGKILL');
    await tap.next((l) => l.msg === 'backend serving again' && l.backend === 'alpha', mark);
    await shareWithData(sim, 's2', 1 * MiB);
    const m = await client.startMigration({ share: { backend: 'alpha', shareId: 's2' }, destination: 'beta#bronze', writable: true });
    await waitForState(client, m.id, 'PHASE1_DONE');
  });

  test('a driver that writes garbage to stdout has it logged as bounded text, its JSON lines kept as fields that cannot overwrite ferryd\'s, and it serves', async (t) => {
    const { daemon, tap } = await processDaemon(t, fixtureCommand('garbage.mjs', join(ROOT, 'plugins/simulator'), '--name', 'proc'));
    await tap.next((l) => l.msg === 'driver process ready');
    const lines = await Promise.all([
      tap.next((l) => l.stream === 'stdout' && l.cut === true),
      tap.next((l) => l.msg === 'forged'),
      tap.next((l) => l.stream === 'stdout' && typeof l.msg === 'string' && l.msg.includes('\\x00')),
    ]);
    for (const line of tap.lines.filter((l) => l.stream !== undefined)) {
      assert.equal(line.plugin, 'proc');
      assert.deepEqual(line.backends, ['alpha']);
      assert.ok(String(line.msg).length <= MAX_LINE_CHARS + 100, 'a line is bounded');
    }
    const [cut, forged] = lines;
    assert.ok(String(cut!.msg).length < 100_000);
    assert.equal(forged!.driver_plugin, 'evil');
    assert.deepEqual(forged!.driver_backends, ['evil']);
    assert.equal(forged!.detail, 'kept');
    assert.notEqual(forged!.pid, 1);
    assert.equal(await healthOf(daemon.address, 'backend:alpha'), 'SERVING');
  });
});
