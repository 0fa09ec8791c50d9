/**
 * `ferry-sim workload` as a user runs it: the real command as a child
 * process against a real ferry-sim process. Without --seconds it writes
 * until SIGINT or SIGTERM, then stops and verifies; `workload stop` and
 * `workload list` reach workloads started elsewhere; a lost array is said,
 * and waited for.
 */
import assert from 'node:assert/strict';
import { open } from 'node:fs/promises';
import path from 'node:path';
import { test } from 'node:test';
import type { TestContext } from 'node:test';
import { configFile, dataFiles, ferrySim, runFerrySim, spawnSim, tempDir } from './helpers.ts';
import type { SimClient } from './helpers.ts';

const KiB = 1024;
const MiB = 1024 * KiB;

/** A ferry-sim process with a 1 MiB share "demo" on alpha/gold. */
async function arrayWithShare(t: TestContext) {
  const dir = await tempDir(t);
  const dataDir = `${dir}/data`;
  const config = await configFile(dir);
  const sim = await spawnSim(t, dataDir, config);
  await sim.client.call('CreateShare', { shareId: 'demo', backend: 'alpha', pool: 'gold', sizeBytes: MiB });
  return { ...sim, dataDir, config };
}

/** Polls GetWorkload every 10 ms until `done(workload)`, for at most 30 s. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
async function waitForWorkload(client: SimClient, workloadId: string, done: (w: any) => boolean, what: string): Promise<any> {
  const until = Date.now() + 30_000;
  for (;;) {
    const w = await client.call('GetWorkload', { workloadId });
    if (done(w)) return w;
    if (Date.now() > until) assert.fail(`workload ${workloadId} did not reach "${what}" within 30 s: ${JSON.stringify(w)}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

const STARTED = /^workload (wl-\S+) started on share demo: /;
const VERIFIED_NONE_LOST = /^verified: (\d+) blocks checked against their last acknowledged write, 0 lost$/m;

for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  test(`workload without --seconds writes until ${signal}, then stops and verifies it: exit 0, 0 lost, STOPPED on the array`, async (t) => {
    const sim = await arrayWithShare(t);
    const run = ferrySim(t, ['workload', '--target', sim.address, '--share', 'demo', '--rate', '1MiB', '--block-size', '4KiB']);
    const started = await run.line(STARTED);
    const id = started[1];
    assert.equal(started.input, `workload ${id} started on share demo: 1.0 MiB/s, random, 4.0 KiB blocks, 4 in flight; Ctrl-C stops and verifies it`);
    await waitForWorkload(sim.client, id!, (w) => w.writesAcked >= 10, 'ten writes acknowledged');

    run.child.kill(signal);
    const result = await run.exited;
    assert.deepEqual([result.code, result.signal], [0, null], result.stderr);
    const workload = await sim.client.call('GetWorkload', { workloadId: id });
    assert.equal(workload.state, 'WORKLOAD_STATE_STOPPED');
    assert.match(result.stdout, new RegExp(`^workload ${id} stopped: ${workload.writesAcked} writes acknowledged \\(.+\\), 0 failed; latency p50 `, 'm'));
    const [, checked] = VERIFIED_NONE_LOST.exec(result.stdout) ?? assert.fail(`no verification with 0 lost in:\n${result.stdout}`);
    assert.ok(Number(checked) > 0 && Number(checked) <= workload.writesAcked, `${checked} blocks checked of ${workload.writesAcked} writes`);
    assert.equal(result.stderr, `ferry-sim: stopping workload ${id}, then verifying it; Ctrl-C again exits without waiting\n`);
  });
}

test('a second SIGINT while the workload is stopping exits 130 at once, saying how to stop and verify it later', async (t) => {
  const sim = await arrayWithShare(t);
  // The array takes its time to answer StopWorkload, so that the second Ctrl-C lands while the command waits for it.
  await sim.client.call('SetFaults', { latencyMs: { StopWorkload: 60_000 } });
  const run = ferrySim(t, ['workload', '--target', sim.address, '--share', 'demo', '--rate', '1MiB', '--block-size', '4KiB']);
  const [, id] = await run.line(STARTED);
  run.child.kill('SIGINT');
  await run.line(/^ferry-sim: stopping workload /, 'stderr');
  run.child.kill('SIGINT');
  const result = await run.exited;
  assert.equal(result.code, 130, result.stderr);
  assert.ok(
    result.stderr.endsWith(`ferry-sim: interrupted before the workload was verified; workload ${id} may still be running there; once the array answers, "ferry-sim workload stop ${id} --target ${sim.address}" stops and verifies it\n`),
    result.stderr,
  );
  assert.doesNotMatch(result.stdout, /verified/);

  await sim.client.call('ClearFaults');
  const later = await runFerrySim(t, ['workload', 'stop', id!, '--target', sim.address]);
  assert.equal(later.code, 0, later.stderr);
  assert.match(later.stdout, VERIFIED_NONE_LOST);
});

test('workload list shows every workload, oldest first; workload stop stops and verifies one started elsewhere, and the run it stopped verifies too', async (t) => {
  const sim = await arrayWithShare(t);
  await sim.client.call('CreateShare', { shareId: 'other', backend: 'beta', pool: 'bronze', sizeBytes: MiB });
  const byApi = await sim.client.call('StartWorkload', { shareId: 'other', rateBytesPerSec: 256 * KiB, blockSize: 4 * KiB, pattern: 'WRITE_PATTERN_SEQUENTIAL' });
  const run = ferrySim(t, ['workload', '--target', sim.address, '--share', 'demo', '--rate', '512KiB', '--block-size', '4KiB', '--pattern', 'hotspot']);
  const [, runId] = await run.line(STARTED);

  const listed = await runFerrySim(t, ['workload', 'list', '--target', sim.address]);
  assert.equal(listed.code, 0, listed.stderr);
  const [header, ...rows] = listed.stdout.trim().split('\n').map((l) => l.split(/\s{2,}/));
  assert.deepEqual(header, ['ID', 'SHARE', 'RATE', 'PATTERN', 'STATE', 'WRITES ACKED', 'STARTED']);
  assert.deepEqual(rows.map((r) => r.slice(0, 5)), [
    [byApi.workloadId, 'other', '256.0 KiB/s', 'sequential', 'running'],
    [runId, 'demo', '512.0 KiB/s', 'hotspot', 'running'],
  ]);
  assert.ok(rows.every((r) => /^\d+$/.test(r[5]!)), listed.stdout);

  const onDemo = await runFerrySim(t, ['workload', 'list', '--target', sim.address, '--share', 'demo', '--json']);
  const { workloads } = JSON.parse(onDemo.stdout) as { workloads: Array<{ workloadId: string; state: string; startedAt: string }> };
  assert.deepEqual(workloads.map((w) => [w.workloadId, w.state]), [[runId, 'WORKLOAD_STATE_RUNNING']]);
  assert.match(workloads[0]!.startedAt, /^\d{4}-\d\d-\d\dT/);

  // Stopped from another process, the running command notices, verifies and exits 0.
  await waitForWorkload(sim.client, runId!, (w) => w.writesAcked > 0, 'a write acknowledged');
  const stopped = await runFerrySim(t, ['workload', 'stop', runId!, '--target', sim.address]);
  assert.equal(stopped.code, 0, stopped.stderr);
  assert.match(stopped.stdout, new RegExp(`^workload ${runId} stopped: \\d+ writes acknowledged`, 'm'));
  assert.match(stopped.stdout, VERIFIED_NONE_LOST);
  const ran = await run.exited;
  assert.equal(ran.code, 0, ran.stderr);
  assert.equal(ran.stderr, `ferry-sim: workload ${runId} was stopped on the array by another caller\n`);
  assert.match(ran.stdout, VERIFIED_NONE_LOST);

  const json = await runFerrySim(t, ['workload', 'stop', byApi.workloadId, '--target', sim.address, '--json']);
  assert.equal(json.code, 0, json.stderr);
  const [stopLine, verifyLine] = json.stdout.trim().split('\n').map((l) => JSON.parse(l) as Record<string, Record<string, unknown>>);
  assert.equal(stopLine!.stopped!.state, 'WORKLOAD_STATE_STOPPED');
  assert.equal(verifyLine!.verified!.lost, 0);

  const after = await runFerrySim(t, ['workload', 'list', '--target', sim.address, '--json']);
  assert.deepEqual((JSON.parse(after.stdout) as typeof onDemo & { workloads: Array<{ state: string }> }).workloads.map((w) => w.state), ['WORKLOAD_STATE_STOPPED', 'WORKLOAD_STATE_STOPPED']);
  const none = await runFerrySim(t, ['workload', 'list', '--target', sim.address, '--share', 'nosuch']);
  assert.equal(none.stdout, 'no workloads\n');

  const unknown = await runFerrySim(t, ['workload', 'stop', 'wl-nope', '--target', sim.address]);
  assert.equal(unknown.code, 1);
  assert.equal(unknown.stderr, 'ferry-sim: StopWorkload: NOT_FOUND: workload wl-nope not found\n');
});

test('workload stop exits 5 and names the damage when acknowledged writes are not readable', async (t) => {
  const sim = await arrayWithShare(t);
  const wl = await sim.client.call('StartWorkload', { shareId: 'demo', rateBytesPerSec: MiB, blockSize: 4 * KiB, pattern: 'WRITE_PATTERN_SEQUENTIAL' });
  await waitForWorkload(sim.client, wl.workloadId, (w) => w.writesAcked >= 4, 'four writes acknowledged');
  await sim.client.call('StopWorkload', { workloadId: wl.workloadId });
  // A disk that lost the first block: what verification exists to catch.
  const [file] = await dataFiles(sim.dataDir);
  const handle = await open(path.join(sim.dataDir, 'shares', file!), 'r+');
  await handle.write(Buffer.alloc(4 * KiB, 0xee), 0, 4 * KiB, 0);
  await handle.close();

  const result = await runFerrySim(t, ['workload', 'stop', wl.workloadId, '--target', sim.address]);
  assert.equal(result.code, 5, result.stderr);
  assert.match(result.stdout, /^verified: \d+ blocks checked against their last acknowledged write, 1 lost \(at byte offsets 0\)$/m);
  assert.equal(result.stderr, `ferry-sim: workload ${wl.workloadId}: 1 blocks do not hold their last acknowledged write\n`);
});

test('a run that loses the array says so, gives up after --reconnect-ms with exit 4, and says how to verify the workload later', async (t) => {
  const sim = await arrayWithShare(t);
  const run = ferrySim(t, ['workload', '--target', sim.address, '--share', 'demo', '--rate', '1MiB', '--block-size', '4KiB', '--reconnect-ms', '500']);
  const [, id] = await run.line(STARTED);
  await waitForWorkload(sim.client, id!, (w) => w.writesAcked > 0, 'a write acknowledged');
  sim.child.kill('SIGKILL');
  await sim.exited;

  const result = await run.exited;
  assert.equal(result.code, 4, result.stderr);
  const hint = `"ferry-sim workload stop ${id} --target ${sim.address}" stops and verifies it`;
  assert.match(result.stderr, new RegExp(`^ferry-sim: lost the array at ${sim.address} \\(GetWorkload: UNAVAILABLE: .*\\); trying again for up to 500\\.0 ms`, 'm'));
  assert.ok(result.stderr.endsWith(`; workload ${id} may still be running there; once the array answers, ${hint}\n`), result.stderr);

  // The hint works: the array, back on its data dir, found the workload stopped by its restart, with its records intact.
  const again = await spawnSim(t, sim.dataDir, sim.config, sim.address);
  const stopped = await runFerrySim(t, ['workload', 'stop', id!, '--target', again.address]);
  assert.equal(stopped.code, 0, stopped.stderr);
  assert.match(stopped.stdout, new RegExp(`^workload ${id} stopped \\(array restarted\\): `, 'm'));
  assert.match(stopped.stdout, VERIFIED_NONE_LOST);
});

test('a run whose array restarts within --reconnect-ms finds the workload stopped by the restart and verifies it: 0 lost', async (t) => {
  const sim = await arrayWithShare(t);
  const run = ferrySim(t, ['workload', '--target', sim.address, '--share', 'demo', '--rate', '1MiB', '--block-size', '4KiB']);
  const [, id] = await run.line(STARTED);
  await waitForWorkload(sim.client, id!, (w) => w.writesAcked >= 10, 'ten writes acknowledged');
  sim.child.kill('SIGKILL');
  await sim.exited;
  await run.line(/^ferry-sim: lost the array at /, 'stderr');

  await spawnSim(t, sim.dataDir, sim.config, sim.address);
  const result = await run.exited;
  assert.equal(result.code, 0, result.stderr);
  assert.match(result.stderr, new RegExp(`^ferry-sim: the array at ${sim.address} answers again; workload ${id} is stopped$`, 'm'));
  assert.match(result.stderr, new RegExp(`^ferry-sim: workload ${id} was stopped on the array \\(array restarted\\)$`, 'm'));
  const [, checked] = VERIFIED_NONE_LOST.exec(result.stdout) ?? assert.fail(`no verification with 0 lost in:\n${result.stdout}`);
  assert.ok(Number(checked) >= 10);
});

test('bad workload flags are usage errors (exit 2) and start nothing; the help documents the exit codes', async (t) => {
  const sim = await arrayWithShare(t);
  for (const [flag, value, message] of [
    ['--concurrency', '0', /"0" is not a whole number from 1 to 64/],
    ['--pattern', 'zigzag', /Allowed choices are sequential, random, hotspot/],
    ['--seconds', '-1', /"-1" is not a number of seconds greater than 0/],
  ] as const) {
    const bad = await runFerrySim(t, ['workload', '--target', sim.address, '--share', 'demo', flag, value]);
    assert.equal(bad.code, 2, `${flag} ${value}: ${bad.stderr}`);
    assert.match(bad.stderr, message);
  }
  assert.deepEqual((await sim.client.call('ListWorkloads', {})).workloads, []);

  const help = await runFerrySim(t, ['workload', '--help']);
  assert.equal(help.code, 0);
  assert.match(help.stdout, /"workload" alone is "workload run"/);
  assert.match(help.stdout, /^ {2}5 {4}a workload's verification found acknowledged writes lost$/m);
  assert.match(help.stdout, /^ {2}stop \[options\] <id>/m);
});
