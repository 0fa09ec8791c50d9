/**
 * The installed command: `bin/ferry.mjs` run as a real child process (as
 * `npx ferry` runs it) against a real ferryd with the embedded simulator.
 * Proves the entry wiring: argv, FERRY_SERVER, stdout that is a pipe, exit
 * codes, that the process exits by itself when the work is done, and that a
 * reader that goes away (`| head -1`) ends it quietly.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { test } from 'node:test';
import { SimClient } from '../simulator/helpers.ts';
import { inProcessDaemon, pluginsDir, ROOT, runProcess, tempDir, testConfig, waitForState, SMALL_ARRAY, type Run } from '../helpers.ts';

const KiB = 1024;
const MiB = 1024 * KiB;


/** Runs bin/ferry.mjs with `args`; resolves with its exit code and output. */
function ferryProcess(args: string[], env: Record<string, string>): Promise<Run> {
  return runProcess(process.execPath, [join(ROOT, 'bin/ferry.mjs'), ...args], env);
}

test('bin/ferry.mjs runs as a process: JSON, a whole migration, usage and unreachable exit codes', async (t) => {
  const dir = tempDir(t);
  const { daemon } = await inProcessDaemon(t, testConfig(`${dir}/data`, { simulator: { config: SMALL_ARRAY }, engine: { minPollMs: 1 } }, pluginsDir(dir, ['simulator'])));
  const sim = new SimClient(daemon.address);
  t.after(() => sim.close());
  await sim.call('CreateShare', { shareId: 'p1', backend: 'alpha', pool: 'gold', sizeBytes: 1 * MiB });

  const closed = createServer().listen(0, '127.0.0.1');
  await once(closed, 'listening');
  const deadPort = (closed.address() as { port: number }).port;
  closed.close();
  await once(closed, 'close');

  const env = { FERRY_SERVER: daemon.address };
  const [backends, migrate, usage, unreachable] = await Promise.all([
    ferryProcess(['--json', 'backends'], env),
    ferryProcess(['migrate', 'alpha/p1', 'beta#bronze', '--writable'], env),
    ferryProcess(['start', 'alpha/p1', 'beta'], env),
    ferryProcess(['--server', `127.0.0.1:${deadPort}`, 'list'], env),
  ]);

  assert.equal(backends.code, 0, backends.stderr);
  assert.deepEqual((JSON.parse(backends.stdout) as { backends: { name: string }[] }).backends.map((b) => b.name), ['alpha', 'beta']);

  assert.equal(migrate.code, 0, migrate.stderr);
  assert.match(migrate.stdout.trimEnd().split('\n').at(-1)!, /^SUCCESS\s+100\.0%/);
  assert.equal((await sim.call('GetShare', { shareId: 'p1' })).backend, 'beta');

  assert.equal(usage.code, 2);
  assert.match(usage.stderr, /^ferry: .*"beta" is not a destination/);

  assert.equal(unreachable.code, 4);
  assert.match(unreachable.stderr, /^ferry: UNAVAILABLE: cannot reach ferryd/);
});

test('watch --json whose reader goes away after one line (| head -1) ends quietly with exit 0', async (t) => {
  const dir = tempDir(t);
  const { daemon, client } = await inProcessDaemon(t, testConfig(`${dir}/data`, { simulator: { config: SMALL_ARRAY }, engine: { minPollMs: 1 } }, pluginsDir(dir, ['simulator'])));
  const sim = new SimClient(daemon.address);
  t.after(() => sim.close());
  await sim.call('CreateShare', { shareId: 'pipe', backend: 'alpha', pool: 'gold', sizeBytes: 1 * MiB });
  await sim.call('SetFaults', { stallCopy: true });
  const m = await client.startMigration({ share: { backend: 'alpha', shareId: 'pipe' }, destination: 'beta#bronze' });
  await waitForState(client, m.id, 'IN_PROGRESS');

  const child = spawn(process.execPath, [join(ROOT, 'bin/ferry.mjs'), '--server', daemon.address, 'watch', m.id, '--json'], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const closed = once(child, 'close');
  // As head -1 does: read one line, then close the pipe.
  let first = '';
  for await (const d of child.stdout) {
    first += (d as Buffer).toString();
    if (first.includes('\n')) break;
  }
  child.stdout.destroy();
  assert.equal((JSON.parse(first.split('\n')[0]!) as { id: string }).id, m.id);
  // The next line ferry writes meets the closed pipe.
  await client.cancelMigration(m.id);
  const [code] = (await closed) as [number | null];
  assert.equal(stderr, '', 'ferry wrote to stderr');
  assert.equal(code, 0);
});
