/** ferry-sim's client commands, run as real processes against a ferryd with the embedded array. */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { test } from 'node:test';
import { inProcessDaemon, pluginsDir, ROOT, SMALL_ARRAY, tempDir, testConfig } from '../helpers.ts';

function ferrySim(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [join(ROOT, 'bin/ferry-sim.mjs'), ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('exit', (code) => resolve({ code, stdout, stderr }));
  });
}

const lines = (text: string) => text.trim().split('\n').map((l) => JSON.parse(l) as Record<string, Record<string, unknown>>);

test('ferry-sim creates a share, lists it, and runs a verified workload on it', async (t) => {
  const dir = tempDir(t);
  const { daemon } = await inProcessDaemon(t, testConfig(`${dir}/data`, { simulator: { config: SMALL_ARRAY } }, pluginsDir(dir, ['simulator'])));
  const created = await ferrySim(['create-share', '--target', daemon.address, '--backend', 'alpha', '--pool', 'gold', '--size', '1MiB', '--id', 'demo']);
  assert.equal(created.code, 0, created.stderr);
  assert.equal(lines(created.stdout)[0]!.share!.sizeBytes, 1024 * 1024);

  const listed = await ferrySim(['shares', '--target', daemon.address]);
  assert.deepEqual(lines(listed.stdout).map((l) => l.share!.shareId), ['demo']);

  const workload = await ferrySim(['workload', '--target', daemon.address, '--share', 'demo', '--rate', '256KiB', '--block-size', '4KiB', '--seconds', '0.5']);
  assert.equal(workload.code, 0, workload.stderr);
  const verified = lines(workload.stdout).find((l) => l.verified)!.verified!;
  assert.ok(Number(verified.checked) > 0);
  assert.equal(Number(verified.lost), 0);
});

test('ferry-sim reports a bad size as a usage error and a refusal in one line', async (t) => {
  const dir = tempDir(t);
  const { daemon } = await inProcessDaemon(t, testConfig(`${dir}/data`, { simulator: { config: SMALL_ARRAY } }, pluginsDir(dir, ['simulator'])));
  const bad = await ferrySim(['create-share', '--target', daemon.address, '--backend', 'alpha', '--pool', 'gold', '--size', 'lots']);
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /"lots" is not a size/);
  const refused = await ferrySim(['create-share', '--target', daemon.address, '--backend', 'alpha', '--pool', 'nope', '--size', '1MiB']);
  assert.equal(refused.code, 1);
  assert.match(refused.stderr, /^ferry-sim: CreateShare: .*nope/);
  assert.doesNotMatch(refused.stderr, /\n\s+at /);
});
