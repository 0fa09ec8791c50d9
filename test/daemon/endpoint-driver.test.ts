/**
 * A backend on a kind-endpoint driver: one running elsewhere, at the address
 * in the backend's options, which ferryd does not start. Here the test
 * starts it itself: the bridge serving the reference TypeScript driver on a
 * unix socket. ferryd migrates through it, and carries on after the
 * endpoint dies mid-copy and comes back.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { describe, test } from 'node:test';
import { FerryClient } from '../../client/client.ts';
import { startDaemon } from '../../daemon/daemon.ts';
import { SimClient } from '../simulator/helpers.ts';
import { pluginsDir, SMALL_ARRAY, testConfig, waitForState } from '../helpers.ts';
import { bridgeCommand, healthOf, LogTap } from './process-helpers.ts';

const MiB = 1024 * 1024;

/** Starts the bridge on `socket` and resolves once it logs that it serves. */
async function startEndpoint(socket: string): Promise<ChildProcess> {
  rmSync(socket, { force: true });
  const [argv0, ...args] = bridgeCommand('ep');
  const child = spawn(argv0!, [...args, '--listen', `unix:${socket}`], { stdio: ['pipe', 'pipe', 'inherit'] });
  const lines = createInterface({ input: child.stdout! });
  await new Promise<void>((resolve, reject) => {
    lines.on('line', (line) => line.includes('"driver serving"') && resolve());
    child.on('exit', (code) => reject(new Error(`the endpoint exited (${code}) before it served`)));
  });
  return child;
}

describe('a backend on an endpoint driver', () => {
  test('migrates a share to SUCCESS through a driver ferryd did not start, and carries on after the endpoint dies mid-copy and comes back', async (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'ferry-ep-'));
    const socket = join(dir, 'ep.sock');
    let endpoint = await startEndpoint(socket);
    const plugins = pluginsDir(dir, ['simulator'], { ep: { 'plugin.json': JSON.stringify({ name: 'ep', version: '0.1.0', apiVersion: 1, kind: 'endpoint' }) } });
    const config = testConfig(
      join(dir, 'data'),
      {
        simulator: { config: SMALL_ARRAY },
        backends: [
          { name: 'alpha', plugin: 'ep', options: { address: `unix:${socket}` } },
          { name: 'beta', plugin: 'simulator' },
        ],
        engine: { minPollMs: 1, backoffInitialMs: 5, backoffMaxMs: 50 },
        healthProbeMs: 100,
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
      endpoint.kill('SIGKILL');
      rmSync(dir, { recursive: true, force: true });
    });
    assert.equal(tap.lines.some((l) => l.msg === 'driver process started'), false, 'ferryd started nothing');
    assert.equal(await healthOf(daemon.address, 'backend:alpha'), 'SERVING');

    await sim.call('CreateShare', { shareId: 'e1', backend: 'alpha', pool: 'gold', sizeBytes: 8 * MiB });
    for (let off = 0; off < 8 * MiB; off += MiB) await sim.call('WriteShare', { shareId: 'e1', offset: off, data: Buffer.alloc(MiB, off / MiB + 1) });
    const sum = (await sim.call('ChecksumShare', { shareId: 'e1' })).sha256;
    const m = await client.startMigration({ share: { backend: 'alpha', shareId: 'e1' }, destination: 'beta#bronze', writable: true, maxBandwidthBytesPerSec: 4 * MiB });
    await waitForState(client, m.id, 'IN_PROGRESS');

    const mark = tap.lines.length;
    endpoint.kill('SIGKILL');
    await once(endpoint, 'exit');
    await tap.next((l) => l.msg === 'backend not serving' && l.backend === 'alpha', mark);
    assert.equal(await healthOf(daemon.address, 'backend:beta'), 'SERVING');
    endpoint = await startEndpoint(socket);
    // The restarted endpoint knows no backend: ferryd opens it again before its next call.
    await tap.next((l) => l.msg === 'backend opened on its driver' && l.backend === 'alpha', mark);
    await waitForState(client, m.id, 'PHASE1_DONE');
    await client.completeMigration(m.id);
    await waitForState(client, m.id, 'SUCCESS');
    assert.equal((await sim.call('GetShare', { shareId: 'e1' })).backend, 'beta');
    assert.equal((await sim.call('ChecksumShare', { shareId: 'e1' })).sha256, sum);
  });
});
