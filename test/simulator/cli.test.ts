/**
 * ferry-sim's share commands and their errors, run as real processes (what
 * `npx ferry-sim` and `npx ferry` run) against a ferryd with the embedded
 * array: output for people by default, JSON with --json, and not-found
 * errors that say where the caller should look.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { test } from 'node:test';
import type { TestContext } from 'node:test';
import { inProcessDaemon, pluginsDir, ROOT, SMALL_ARRAY, tempDir, testConfig } from '../helpers.ts';
import { runFerrySim, serveArray } from './helpers.ts';

const ISO = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/;

async function daemon(t: TestContext): Promise<string> {
  const dir = tempDir(t);
  const { daemon } = await inProcessDaemon(t, testConfig(`${dir}/data`, { simulator: { config: SMALL_ARRAY } }, pluginsDir(dir, ['simulator'])));
  return daemon.address;
}

/** `ferry ARGS` as a child process. */
function ferry(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [join(ROOT, 'bin/ferry.mjs'), ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

/** "label  value" lines as a map. */
function fieldsOf(text: string): Map<string, string> {
  return new Map(text.trim().split('\n').map((l) => l.split(/\s{2,}/, 2) as [string, string]));
}

test('create-share prints the share for a person (size in units, time as RFC 3339), and its JSON with --json', async (t) => {
  const target = await daemon(t);
  const created = await runFerrySim(t, ['create-share', '--target', target, '--backend', 'alpha', '--pool', 'gold', '--size', '1MiB', '--id', 'demo']);
  assert.equal(created.code, 0, created.stderr);
  const shown = fieldsOf(created.stdout);
  assert.deepEqual(
    [shown.get('share'), shown.get('backend'), shown.get('pool'), shown.get('size'), shown.get('export'), shown.get('type'), shown.get('state')],
    ['demo', 'alpha', 'gold', '1.0 MiB (1048576 bytes)', 'alpha:/gold/demo', 'default', '-'],
  );
  assert.match(shown.get('created')!, ISO);
  assert.doesNotMatch(created.stdout, /seconds|nanos|[{}]/);

  // The same id again finds the same share (CreateShare is idempotent on it).
  const json = await runFerrySim(t, ['create-share', '--target', target, '--backend', 'alpha', '--pool', 'gold', '--size', '1MiB', '--id', 'demo', '--json']);
  assert.equal(json.code, 0, json.stderr);
  const share = JSON.parse(json.stdout) as Record<string, unknown>;
  assert.equal(share.shareId, 'demo');
  assert.equal(share.sizeBytes, 1024 * 1024);
  assert.equal(share.createdAt, new Date(shown.get('created')!).toISOString());
});

test('shares lists the shares as a table, and as {"shares": [...]} with --json', async (t) => {
  const target = await daemon(t);
  for (const [id, backend, pool, size] of [['b1', 'beta', 'bronze', '2MiB'], ['a1', 'alpha', 'gold', '1MiB']]) {
    assert.equal((await runFerrySim(t, ['create-share', '--target', target, '--backend', backend!, '--pool', pool!, '--size', size!, '--id', id!])).code, 0);
  }
  const listed = await runFerrySim(t, ['shares', '--target', target]);
  assert.equal(listed.code, 0, listed.stderr);
  const [header, ...rows] = listed.stdout.trim().split('\n').map((l) => l.split(/\s{2,}/));
  assert.deepEqual(header, ['SHARE', 'BACKEND', 'POOL', 'SIZE', 'EXPORT', 'STATE', 'CREATED']);
  assert.deepEqual(rows.map((r) => r.slice(0, 6)), [
    ['a1', 'alpha', 'gold', '1.0 MiB', 'alpha:/gold/a1', '-'],
    ['b1', 'beta', 'bronze', '2.0 MiB', 'beta:/bronze/b1', '-'],
  ]);
  assert.match(rows[0]![6]!, ISO);

  const onBeta = await runFerrySim(t, ['shares', '--target', target, '--backend', 'beta', '--json']);
  const { shares } = JSON.parse(onBeta.stdout) as { shares: Array<{ shareId: string; createdAt: string }> };
  assert.deepEqual(shares.map((s) => s.shareId), ['b1']);
  assert.match(shares[0]!.createdAt, ISO);
});

test('a mistyped pool lists the pools of its backend, a mistyped backend lists the backends, and an unknown share is on no backend', async (t) => {
  const target = await daemon(t);
  const pool = await runFerrySim(t, ['create-share', '--target', target, '--backend', 'beta', '--pool', 'gold', '--size', '1MiB']);
  assert.equal(pool.code, 1);
  assert.equal(pool.stderr, 'ferry-sim: CreateShare: NOT_FOUND: pool: pool gold not found on backend beta (it has bronze, tiny)\n');
  const backend = await runFerrySim(t, ['shares', '--target', target, '--backend', 'gamma']);
  assert.equal(backend.code, 1);
  assert.equal(backend.stderr, 'ferry-sim: ListShares: NOT_FOUND: backend gamma not found on this array (it has alpha, beta)\n');
  const share = await runFerrySim(t, ['workload', '--target', target, '--share', 'nosuch']);
  assert.equal(share.code, 1);
  assert.equal(share.stderr, 'ferry-sim: StartWorkload: NOT_FOUND: share nosuch not found: it is on no backend of this array\n');
  assert.equal(share.stdout, '');
});

test('ferry check names the source backend of an unknown share, and lists the pools of the destination backend', async (t) => {
  const target = await daemon(t);
  assert.equal((await runFerrySim(t, ['create-share', '--target', target, '--backend', 'alpha', '--pool', 'gold', '--size', '1MiB', '--id', 'demo'])).code, 0);
  const share = await ferry(['--server', target, 'check', 'alpha/nosuch', 'beta#bronze']);
  assert.equal(share.code, 3);
  assert.match(share.stderr, /^ferry: NOT_FOUND: driver simulator \(backend alpha\) failed in checkCompatibility: share nosuch not found on backend alpha\n$/);
  const pool = await ferry(['--server', target, 'check', 'alpha/demo', 'beta#gold']);
  assert.equal(pool.code, 3);
  assert.match(pool.stderr, /^ferry: NOT_FOUND: driver simulator \(backend alpha\) failed in checkCompatibility: pool gold not found on backend beta \(it has bronze, tiny\)\n$/);
});

test('ferry-sim reports a bad size as a usage error and an unreachable array with exit 4, in one line each', async (t) => {
  const target = await daemon(t);
  const bad = await runFerrySim(t, ['create-share', '--target', target, '--backend', 'alpha', '--pool', 'gold', '--size', 'lots']);
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /"lots" is not a size/);
  // Port 1 on loopback: nothing listens there.
  const away = await runFerrySim(t, ['shares', '--target', '127.0.0.1:1']);
  assert.equal(away.code, 4);
  assert.match(away.stderr, /^ferry-sim: cannot reach the array at 127\.0\.0\.1:1: ListShares: UNAVAILABLE: .*\(is ferry-sim, or ferryd with the embedded array, running there\?\)\n$/);
  assert.doesNotMatch(away.stderr, /\n\s+at /);
});

test('an UNAVAILABLE the array answers itself is a refusal (exit 1), not an unreachable array', async (t) => {
  const { address, client } = await serveArray(t);
  await client.call('SetFaults', { failNth: [{ method: 'ListShares', n: 1, code: 'UNAVAILABLE' }] });
  const busy = await runFerrySim(t, ['shares', '--target', address]);
  assert.equal(busy.code, 1, busy.stderr);
  assert.match(busy.stderr, /^ferry-sim: ListShares: UNAVAILABLE: injected fault: call 1 of ListShares fails with UNAVAILABLE\n$/);
});

test('the --seconds form of workload still runs, stops and verifies, with --json lines for scripts', async (t) => {
  const target = await daemon(t);
  await runFerrySim(t, ['create-share', '--target', target, '--backend', 'alpha', '--pool', 'gold', '--size', '1MiB', '--id', 'demo']);
  const run = await runFerrySim(t, ['workload', '--target', target, '--share', 'demo', '--rate', '256KiB', '--block-size', '4KiB', '--seconds', '0.5', '--json']);
  assert.equal(run.code, 0, run.stderr);
  const lines = run.stdout.trim().split('\n').map((l) => JSON.parse(l) as Record<string, Record<string, unknown>>);
  assert.deepEqual(lines.map((l) => Object.keys(l)[0]), ['started', 'stopped', 'verified']);
  assert.equal(lines[1]!.stopped!.state, 'WORKLOAD_STATE_STOPPED');
  assert.match(String(lines[1]!.stopped!.stoppedAt), ISO);
  assert.ok(Number(lines[2]!.verified!.checked) > 0);
  assert.equal(lines[2]!.verified!.lost, 0);
});
