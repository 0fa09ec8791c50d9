/**
 * The Python reference driver (plugins/simulator-py, kind process) through
 * the whole conformance suite, as a vendor runs it: `ferry-conformance
 * --plugin plugins/simulator-py`, with the adapter its own process serves
 * over ferry.driver.v1.ConformanceAdapter, and the checks that SIGKILL the
 * driver process mid-copy and mid-cutover, and those that hold a driver call
 * at an exact point (through the kit's wire-level pass-through).
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { promisify } from 'node:util';
import type { JsonReport } from '../../plugins/conformance/report.ts';
import { ROOT, tempDir } from '../helpers.ts';

test('the Python reference driver passes every conformance check it can be given, the driver-process kills included', async (t) => {
  const json = join(tempDir(t), 'result.json');
  const run = await promisify(execFile)(process.execPath, [join(ROOT, 'bin/ferry-conformance.mjs'), '--plugin', 'plugins/simulator-py', '--json', json], { cwd: ROOT, maxBuffer: 16 * 1024 * 1024 }).catch(
    (err: { code?: number; stdout?: string; stderr?: string }) => assert.fail(`ferry-conformance exited ${err.code}:\n${err.stdout ?? ''}${err.stderr ?? ''}`),
  );
  const report = JSON.parse(readFileSync(json, 'utf8')) as JsonReport;
  const failed = report.checks.filter((c) => c.status === 'failed');
  assert.deepEqual(failed, [], run.stdout);
  const status = Object.fromEntries(report.checks.map((c) => [c.id, c.status]));
  for (const id of ['manifest', 'happy-path', 'cancel-starting', 'crash-starting', 'crash-in-progress', 'crash-completing', 'driver-killed-in-progress', 'driver-killed-completing']) assert.equal(status[id], 'passed', `${id}:\n${run.stdout}`);
});
