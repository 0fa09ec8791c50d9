/**
 * The conformance kit, run as a library with a runner that records results:
 * the simulator's driver passes every check it claims (preserve_snapshots,
 * which it does not claim, and the driver-process kills, which need a
 * process plugin, are skipped with the reasons), and each defect
 * planted in the broken sample driver is reported as a failure of the
 * checks that exist to catch it, and of no other.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { DEFAULT_DEADLINES } from '../../host/deadlines.ts';
import { CHECK_IDS, collectResults, conformance, type CheckResult } from '../../plugins/conformance/index.ts';
import { createAdapter } from '../../plugins/simulator/conformance-adapter.ts';
import { ROOT } from '../helpers.ts';
import type { Defect } from './fixtures/broken/index.ts';

const MiB = 1024 * 1024;
const SIMULATOR = join(ROOT, 'plugins/simulator');
const BROKEN = join(ROOT, 'test/conformance/fixtures/broken');

async function runSuite(plugin: string, driverOptions: Record<string, unknown>, checks?: string[]): Promise<Map<string, CheckResult>> {
  const collector = collectResults();
  conformance({ test: collector.test, plugin, adapter: () => createAdapter({ driverOptions }), shareSizeBytes: 2 * MiB, ...(checks ? { checks } : {}) });
  return new Map((await collector.results()).map((r) => [r.id, r]));
}

function explain(results: Map<string, CheckResult>): string {
  return [...results.values()].map((r) => `${r.status} ${r.id}${r.reason ? `: ${r.reason}` : ''}${r.call ? ` [${r.call}]` : ''}`).join('\n');
}

/** Each defect, the checks that must report it (with the reason and the call that broke), and a check it must not affect. */
const DEFECTS: { defect: Defect; caughtBy: Record<string, { reason: RegExp; call: RegExp }>; unaffected: string }[] = [
  {
    defect: 'start-not-idempotent',
    caughtBy: {
      'start-repeated-driver': { reason: /start \(call 2 of 3, new driver instance, checkpoint null\) threw FAILED_PRECONDITION/, call: /^start \(call 2 of 3/ },
      'crash-starting': { reason: /ended ERROR \(FAILED_PRECONDITION/, call: /^start -> FAILED_PRECONDITION/ },
    },
    unaffected: 'happy-path',
  },
  {
    defect: 'cancel-leaves-destination',
    caughtBy: {
      'cancel-repeated-driver': { reason: /after 3 cancel calls: the destination backend beta still holds job:mig-/, call: /^cancel$/ },
      'cancel-starting': { reason: /after CANCELLED: the destination backend beta still holds job:mig-/, call: /^cancel$/ },
      'cancel-in-progress': { reason: /after CANCELLED: the destination backend beta still holds job:mig-/, call: /^cancel$/ },
      'cancel-phase1-done': { reason: /after CANCELLED: the destination backend beta still holds job:mig-/, call: /^cancel$/ },
    },
    unaffected: 'happy-path',
  },
  {
    defect: 'progress-goes-backwards',
    caughtBy: {
      progress: { reason: /fewer bytes copied than before, by \d+ bytes in all \(ferryd.s recopied_bytes\)/, call: /^continue/ },
      'continue-deadline': { reason: /copied bytes went back from \d+ to \d+/, call: /^continue/ },
    },
    unaffected: 'happy-path',
  },
  {
    defect: 'complete-not-resumable',
    caughtBy: {
      'complete-repeated-driver': { reason: /complete \(call 2 of 3, new driver instance, the checkpoint call 1 was given\) threw FAILED_PRECONDITION/, call: /^complete \(call 2 of 3/ },
      'crash-completing': { reason: /ended ERROR \(FAILED_PRECONDITION: driver broken \(backend alpha\) failed in complete: no cutover .* was started by this driver\)/, call: /^complete -> FAILED_PRECONDITION/ },
    },
    unaffected: 'happy-path',
  },
  {
    // The guard of ferryd cuts a continue at its deadline; the check measures the call itself.
    defect: 'continue-past-deadline',
    caughtBy: {
      'continue-deadline': { reason: new RegExp(`^continue call 2 took \\d+ ms; its deadline is ${DEFAULT_DEADLINES.continue} ms$`), call: /^continue$/ },
    },
    unaffected: 'cancel-starting',
  },
  {
    defect: 'changed-extents-too-few',
    caughtBy: {
      'host-changed-extents': { reason: /^listChangedExtents\(mig-\S+-s1, mig-\S+-s2\) leaves out \d+\+\d+.* written between the two snapshots/, call: /^listChangedExtents$/ },
    },
    unaffected: 'host-snapshot-point-in-time',
  },
  {
    defect: 'freeze-ignored',
    caughtBy: {
      'host-freeze-nondisruptive': { reason: /^(a write started while frozen was acknowledged before releaseWrites|the share's content changed while frozen)/, call: /^freezeWrites$/ },
      'host-freeze-disruptive': { reason: /^a write started while frozen was acknowledged, the migration not being nondisruptive/, call: /^freezeWrites$/ },
    },
    unaffected: 'host-snapshot-delete',
  },
  {
    // ferryd's guard checks every piece a source sends: the check fails with the guard's DATA_LOSS.
    defect: 'read-crc-wrong',
    caughtBy: {
      'host-snapshot-point-in-time': { reason: /^readExtents\(mig-\S+-s1\) threw DATA_LOSS: .* do not match their CRC-32C/, call: /^readExtents\(mig-\S+-s1\)$/ },
    },
    unaffected: 'host-target-digests',
  },
  {
    defect: 'target-crc-unchecked',
    caughtBy: {
      'host-target-crc': { reason: /^writeExtents\(mig-\S+-t\) of a piece whose CRC-32C does not match succeeded; the contract says it is refused with DATA_LOSS$/, call: /^writeExtents/ },
    },
    unaffected: 'host-target-repeated',
  },
  {
    defect: 'promote-not-idempotent',
    caughtBy: {
      'host-direct-migration': { reason: /^promoteTarget\(mig-\S+-t\) \(call 2 of 3\) threw FAILED_PRECONDITION/, call: /^promoteTarget\(mig-\S+-t\) \(call 2 of 3\)$/ },
    },
    unaffected: 'host-path-migration',
  },
  {
    defect: 'changes-miss-phase1',
    caughtBy: {
      'changes-phase1-done': { reason: /^watchChanges did not announce phase 1 done of migration mig-\S+: from when ferryd showed it past STARTING until 5000 ms after it showed PHASE1_DONE, the stream yielded nothing \(no change naming mig-\S+, nor ''\)/, call: /^watchChanges$/ },
    },
    unaffected: 'happy-path',
  },
  {
    // ferryd's guard turns such a done into ERROR; the check reads what the driver answered.
    defect: 'done-without-figures',
    caughtBy: {
      'happy-path': { reason: /^complete reported the cutover done without its figures: cutover must be an object when status is done \(it answered \{"status":"done","checkpoint":/, call: /^complete$/ },
    },
    unaffected: 'cancel-in-progress',
  },
];

describe('the conformance kit', () => {
  test('passes the simulator driver on every check it claims and skips preserve_snapshots, which it does not claim, and the driver-process kills, a module plugin having no process, with the reasons', async () => {
    const results = await runSuite(SIMULATOR, {});
    assert.deepEqual([...results.keys()], CHECK_IDS, 'every check reported, in order');
    const failed = [...results.values()].filter((r) => r.status === 'failed');
    assert.equal(failed.length, 0, `checks failed:\n${explain(results)}`);
    const skipped = [...results.values()].filter((r) => r.status === 'skipped');
    assert.deepEqual(
      skipped.map((r) => [r.id, r.reason]),
      [
        ['preserve-snapshots', 'driver does not claim preserve_snapshots'],
        ['driver-killed-in-progress', 'the plugin is of kind module: there is no driver process for the kit to kill (crash-in-progress kills ferryd itself)'],
        ['driver-killed-completing', 'the plugin is of kind module: there is no driver process for the kit to kill (crash-in-progress kills ferryd itself)'],
      ],
    );
  });

  test('skips the host data path checks whose half the drivers do not offer, with the reason, and runs those whose halves they do', async () => {
    const results = await runSuite(BROKEN, { halves: ['destination'] }, ['host-snapshot-delete', 'host-target-repeated', 'host-path-migration']);
    assert.equal(results.get('host-target-repeated')?.status, 'passed', explain(results));
    for (const id of ['host-snapshot-delete', 'host-path-migration']) {
      assert.equal(results.get(id)?.status, 'skipped', explain(results));
      assert.equal(results.get(id)?.reason, "the source backend's driver (alpha) offers no dataSource: the host data path is optional (section 14 of the driver guide)");
    }
  });

  test('skips the change-feed check for a driver that does not offer watchChanges, with the reason', async () => {
    const results = await runSuite(BROKEN, { changes: false }, ['changes-phase1-done']);
    assert.equal(results.get('changes-phase1-done')?.status, 'skipped', explain(results));
    assert.equal(results.get('changes-phase1-done')?.reason, "the source backend's driver (alpha) offers no watchChanges: the change feed is optional (the driver guide's watchChanges section)");
  });

  test('runs the preserve_snapshots check when the driver claims it', async () => {
    const results = await runSuite(SIMULATOR, { snapshots: true }, ['preserve-snapshots']);
    assert.equal(results.get('preserve-snapshots')?.status, 'passed', explain(results));
  });

  for (const { defect, caughtBy, unaffected } of DEFECTS) {
    test(`reports the planted defect ${defect} as a failure of ${Object.keys(caughtBy).join(', ')}`, async () => {
      const results = await runSuite(BROKEN, { defect }, [...Object.keys(caughtBy), unaffected]);
      assert.equal(results.get('manifest')?.status, 'passed', explain(results));
      assert.equal(results.get(unaffected)?.status, 'passed', `the defect should not break ${unaffected}:\n${explain(results)}`);
      for (const [id, expected] of Object.entries(caughtBy)) {
        const r = results.get(id);
        assert.equal(r?.status, 'failed', `${id} should report ${defect}:\n${explain(results)}`);
        assert.match(r.reason ?? '', expected.reason);
        assert.match(r.call ?? '', expected.call);
      }
    });
  }

  test('fails every check with the reason when the adapter cannot set up, after reporting that the plugin itself loads', async () => {
    const collector = collectResults();
    conformance({ test: collector.test, plugin: join(ROOT, 'plugins/template'), adapter: async () => (await import('../../plugins/template/conformance-adapter.ts')).createAdapter({}), checks: ['happy-path'] });
    const [manifest, happy] = await collector.results();
    assert.equal(manifest?.status, 'passed');
    assert.match(manifest.notes.join(), /plugin template 0\.1\.0 loads; createDriver was not tried: adapter setup failed: template: implement setup/);
    assert.equal(happy?.status, 'failed');
    assert.match(happy.reason ?? '', /^not run: adapter setup failed: template: implement setup/);
    assert.equal(happy.call, 'adapter.setup');
  });

  test('refuses an unknown check id and a repeat below 1 with a TypeError', () => {
    const adapter = () => createAdapter({});
    assert.throws(() => conformance({ test: () => undefined, plugin: SIMULATOR, adapter, checks: ['no-such-check'] }), /TypeError: unknown check no-such-check \(known: manifest, backends/);
    assert.throws(() => conformance({ test: () => undefined, plugin: SIMULATOR, adapter, repeat: 0 }), /TypeError: repeat must be a whole number of at least 1/);
  });
});
