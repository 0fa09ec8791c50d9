/**
 * The kit's wire-level pass-through (plugins/conformance/wire-shim.ts) lets
 * the checks that hold a driver call at an exact point run for a process
 * plugin, and catch what they exist to catch: the broken sample driver is
 * run as a kind-process plugin (ferryd starts the bridge, host/serve-module,
 * serving it over ferry.driver.v1), one planted defect at a time, and each
 * held check fails on its defect as it does for the module.
 */
import assert from 'node:assert/strict';
import { writeFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { collectResults, conformance, type CheckResult } from '../../plugins/conformance/index.ts';
import { createAdapter } from '../../plugins/simulator/conformance-adapter.ts';
import { ROOT, tempDir } from '../helpers.ts';
import type { Defect } from './fixtures/broken/index.ts';

const MiB = 1024 * 1024;

/** A kind-process plugin folder whose command is the bridge serving the broken driver. */
function processPlugin(dir: string): string {
  const plugin = join(dir, 'broken-process');
  mkdirSync(plugin);
  const command = [process.execPath, join(ROOT, 'host/serve-module.mjs'), join(ROOT, 'test/conformance/fixtures/broken'), '--name', 'broken'];
  writeFileSync(join(plugin, 'plugin.json'), JSON.stringify({ name: 'broken', version: '0.0.1', apiVersion: 1, kind: 'process', command }));
  return plugin;
}

async function runSuite(plugin: string, defect: Defect | undefined, checks: string[]): Promise<Map<string, CheckResult>> {
  const collector = collectResults();
  const driverOptions = defect ? { defect } : {};
  conformance({ test: collector.test, plugin, adapter: () => createAdapter({ driverOptions }), shareSizeBytes: 2 * MiB, checks });
  return new Map((await collector.results()).map((r) => [r.id, r]));
}

function explain(results: Map<string, CheckResult>): string {
  return [...results.values()].map((r) => `${r.status} ${r.id}${r.reason ? `: ${r.reason}` : ''}${r.call ? ` [${r.call}]` : ''}`).join('\n');
}

const HELD = ['cancel-starting', 'crash-starting', 'crash-completing'];

/** Each defect and the held check (or the check reading the driver's own answer) that must report it. */
const DEFECTS: { defect: Defect; id: string; reason: RegExp }[] = [
  { defect: 'start-not-idempotent', id: 'crash-starting', reason: /ended ERROR \(FAILED_PRECONDITION/ },
  { defect: 'cancel-leaves-destination', id: 'cancel-starting', reason: /after CANCELLED: the destination backend beta still holds job:mig-/ },
  { defect: 'complete-not-resumable', id: 'crash-completing', reason: /ended ERROR \(FAILED_PRECONDITION: .*no cutover .* was started by this driver/ },
  { defect: 'done-without-figures', id: 'happy-path', reason: /^complete reported the cutover done without its figures: cutover must be an object when status is done/ },
];

/** Host data path checks that stream through the pass-through: ReadExtents in each, WriteExtents in the last two. */
const HOST = ['host-snapshot-point-in-time', 'host-changed-extents', 'host-target-crc', 'host-path-migration'];

describe('the kit behind the wire-level pass-through, for a process plugin', () => {
  test('runs the host data path checks over the wire, ReadExtents and WriteExtents relayed, and a correct driver passes them', async (t) => {
    const results = await runSuite(processPlugin(tempDir(t)), undefined, HOST);
    for (const id of HOST) assert.equal(results.get(id)?.status, 'passed', `${id}:\n${explain(results)}`);
  });

  test('reports the planted defect read-crc-wrong over the wire as a failure of host-snapshot-point-in-time', async (t) => {
    const results = await runSuite(processPlugin(tempDir(t)), 'read-crc-wrong', ['host-snapshot-point-in-time']);
    const r = results.get('host-snapshot-point-in-time');
    assert.equal(r?.status, 'failed', explain(results));
    assert.match(r.reason ?? '', /^readExtents\(mig-\S+-s1\) threw DATA_LOSS/);
  });

  test('runs the checks that hold a call, and a correct driver passes them', async (t) => {
    const results = await runSuite(processPlugin(tempDir(t)), undefined, HELD);
    for (const id of HELD) assert.equal(results.get(id)?.status, 'passed', `${id}:\n${explain(results)}`);
  });

  test('runs the change-feed check on the process driver (WatchChanges over ferry.driver.v1): a correct driver passes it, and changes-miss-phase1 fails it', async (t) => {
    const ok = await runSuite(processPlugin(tempDir(t)), undefined, ['changes-phase1-done']);
    assert.equal(ok.get('changes-phase1-done')?.status, 'passed', explain(ok));
    const broken = await runSuite(processPlugin(tempDir(t)), 'changes-miss-phase1', ['changes-phase1-done']);
    assert.equal(broken.get('changes-phase1-done')?.status, 'failed', explain(broken));
    assert.match(broken.get('changes-phase1-done')?.reason ?? '', /^watchChanges did not announce phase 1 done of migration mig-/);
  });

  for (const { defect, id, reason } of DEFECTS) {
    test(`reports the planted defect ${defect} as a failure of ${id}`, async (t) => {
      const results = await runSuite(processPlugin(tempDir(t)), defect, [id]);
      const r = results.get(id);
      assert.equal(r?.status, 'failed', `${id} should report ${defect}:\n${explain(results)}`);
      assert.match(r.reason ?? '', reason);
    });
  }
});
