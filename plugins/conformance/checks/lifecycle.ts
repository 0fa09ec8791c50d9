/**
 * The life of one migration: the backends serve, a migration moves a share
 * with its data, progress is honest, complete waits for phase 1, and
 * continue answers within its deadline.
 */
import type { Migration } from '../../../client/client.ts';
import { DEFAULT_DEADLINES } from '../../../host/deadlines.ts';
import { cutoverProblem } from '../../../host/guard.ts';
import { bounded } from '../../../host/untrusted.ts';
import type { ContinueSample } from '../context.ts';
import { codeOf, describeError, expect, fail } from '../failure.ts';
import { CAPABILITY_NAMES, PAST_STARTING, expectRefused, type Check } from './check.ts';

const DONE_STATES = new Set(['MIGRATION_STATE_PHASE1_DONE', 'MIGRATION_STATE_COMPLETING', 'MIGRATION_STATE_SUCCESS']);

/** Both backends serve through ferryd with the pools the adapter named. */
export const backendsServing: Check = {
  id: 'backends',
  title: 'both backends are serving through ferryd, driven by the plugin, with the pools the adapter named',
  async run(c) {
    const { h } = c;
    const { backends } = await h.client.listBackends();
    const wanted = [
      { backend: h.source, pools: [h.setup.sourcePool] },
      { backend: h.destination, pools: [h.setup.destinationPool, ...(h.setup.smallPool ? [h.setup.smallPool] : [])] },
    ];
    for (const { backend, pools } of wanted) {
      const b = backends.find((x) => x.name === backend.name);
      expect(b, `ferryd does not list backend ${backend.name}`, 'ListBackends');
      expect(b.health === 'BACKEND_HEALTH_SERVING', `backend ${b.name} is not serving: ${b.healthReason || 'no reason given'}`, 'describe');
      expect(b.driverName === h.load.plugin.manifest.name, `backend ${b.name} is driven by ${b.driverName || 'nothing'}, not ${h.load.plugin.manifest.name}`, 'ListBackends');
      for (const pool of pools) {
        const p = b.pools.find((x) => x.name === pool);
        expect(p, `describe() of backend ${b.name} does not list pool ${pool} (it lists ${b.pools.map((x) => x.name).join(', ') || 'none'})`, 'describe');
        expect(p.freeBytes <= p.capacityBytes, `pool ${b.name}#${pool} has more free bytes (${p.freeBytes}) than capacity (${p.capacityBytes})`, 'describe');
      }
    }
    const claimed = (Object.keys(CAPABILITY_NAMES) as (keyof typeof CAPABILITY_NAMES)[]).filter((k) => h.capabilities[k]).map((k) => CAPABILITY_NAMES[k]);
    c.note(`capabilities claimed: ${claimed.join(', ') || 'none'}`);
  },
};

/** Start, continue and complete move the share with its data. */
export const happyPath: Check = {
  id: 'happy-path',
  title: 'start, continue and complete move the share: same data at the destination, source gone, nothing else left',
  async run(c) {
    const share = await c.share();
    const before = await c.destinationListing();
    const m = await c.start(share);
    await c.waitState(m.id, 'PHASE1_DONE', 'phase 1 to be done');
    await c.complete(m.id);
    const end = await c.waitFor(m.id, (x) => x.state === 'MIGRATION_STATE_SUCCESS', 'the cutover to succeed');
    // The driver's own `done`: ferryd's guard would turn one without figures into ERROR, which says less.
    const done = c.answers(m.id, 'complete').find((r) => (r as { status?: unknown } | null)?.status === 'done') as { cutover?: unknown } | undefined;
    const problem = done && cutoverProblem(done.cutover);
    if (problem) fail(`complete reported the cutover done without its figures: ${problem} (it answered ${bounded(JSON.stringify(done))})`, 'complete');
    if (end.state !== 'MIGRATION_STATE_SUCCESS') await c.failEnded(end, 'waiting for the cutover to succeed');
    expect(end.cutover, `migration ${m.id} reached SUCCESS without cutover figures`, 'complete');
    c.note(`cutover froze writes for ${end.cutover.freezeMs.toFixed(1)} ms, final delta ${end.cutover.finalDeltaBytes} bytes`);
    await c.expectMoved(share, before, 'after SUCCESS');
  },
};

/** Progress through the engine and in the driver's answers: never going back, 100 % only with phase 1 done. */
export const progressHonest: Check = {
  id: 'progress',
  title: 'progress never goes backwards in percent and reaches 100 % only when phase 1 is done',
  async run(c) {
    const share = await c.share();
    const m = await c.start(share, { maxBandwidthBytesPerSec: c.slowBandwidth });
    const values: Migration[] = [];
    const seen = (x: Migration) => values.push(x);
    await c.waitState(m.id, 'PHASE1_DONE', 'phase 1 to be done', seen);
    await c.complete(m.id);
    await c.waitState(m.id, 'SUCCESS', 'the cutover to succeed', seen);
    let previous: Migration | undefined;
    for (const v of values) {
      const { percent, copiedBytes, totalBytes } = v.progress;
      const state = v.state.replace('MIGRATION_STATE_', '');
      expect(copiedBytes <= totalBytes, `progress reported ${copiedBytes} bytes copied of ${totalBytes} (${state})`, 'continue');
      if (previous && percent < previous.progress.percent) {
        fail(`percent went backwards from ${previous.progress.percent} to ${percent} (copied bytes ${previous.progress.copiedBytes} -> ${copiedBytes}) in ${state}`, 'continue (progress.copiedBytes)');
      }
      if (percent >= 100) expect(DONE_STATES.has(v.state), `percent reached ${percent} in ${state}, before phase 1 was done`, 'continue');
      if (DONE_STATES.has(v.state)) expect(percent === 100, `percent is ${percent} in ${state}; phase 1 is done, so it must be 100`, 'continue');
      previous = v;
    }
    // ferryd never shows copied bytes going back: it holds them and counts what the driver went back by as recopied_bytes. No array restarted here, so there must be none.
    const recopied = Math.max(0, ...values.map((v) => Number(v.progress.recopiedBytes ?? 0)));
    expect(recopied === 0, `continue reported fewer bytes copied than before, by ${recopied} bytes in all (ferryd's recopied_bytes), though no array restarted: copied bytes must not go back`, 'continue (progress.copiedBytes)');
    const between = new Set(values.filter((v) => v.progress.percent > 0 && v.progress.percent < 100).map((v) => v.progress.percent));
    c.note(`${values.length} values watched, ${between.size} distinct percents between 0 and 100`);
    if (between.size === 0) c.note('no value between 0 and 100 % was seen: does the driver honour max_bandwidth_bytes_per_sec? (a larger shareSizeBytes helps)');
  },
};

/** CompleteMigration before PHASE1_DONE is refused, and so is a direct complete. */
export const completeBeforePhase1: Check = {
  id: 'complete-before-phase1',
  title: 'complete before PHASE1_DONE is refused with FAILED_PRECONDITION (by ferryd, and by the driver when called directly)',
  async run(c) {
    const share = await c.share();
    const m = await c.start(share, { maxBandwidthBytesPerSec: c.slowBandwidth });
    await expectRefused('CompleteMigration in STARTING', 'FAILED_PRECONDITION', () => c.h.client.completeMigration(m.id));
    const now = await c.waitFor(m.id, (x) => PAST_STARTING.has(x.state), 'IN_PROGRESS');
    if (now.state === 'MIGRATION_STATE_IN_PROGRESS') {
      let accepted = false;
      try {
        await c.h.client.completeMigration(m.id);
        accepted = true;
      } catch (err) {
        expect(codeOf(err) === 'FAILED_PRECONDITION', `CompleteMigration in IN_PROGRESS was refused with ${describeError(err)}; the contract says FAILED_PRECONDITION`, 'CompleteMigration');
      }
      if (accepted) {
        // Accepted only if phase 1 finished between the watch and the call.
        const after = await c.h.client.getMigration(m.id);
        expect(after.phase1DoneAt, 'CompleteMigration was accepted in IN_PROGRESS', 'CompleteMigration');
        c.note('phase 1 finished just before CompleteMigration in IN_PROGRESS arrived');
      }
    } else if (!DONE_STATES.has(now.state)) await c.failEnded(now, 'waiting for IN_PROGRESS');

    // The driver itself: a complete that reaches it while the first copy is still running must not cut over.
    const other = await c.share();
    const direct = c.direct(other, { maxBandwidthBytesPerSec: c.slowBandwidth });
    const driver = await c.driver();
    await direct.start(driver);
    const first = await direct.continueOnce(driver);
    if (first.result.phase1Done) {
      c.note('the direct migration was done with phase 1 at its first continue, so the driver-level refusal was not exercised');
      return;
    }
    let result: unknown;
    try {
      result = await driver.complete(direct.args());
    } catch (err) {
      expect(codeOf(err) === 'FAILED_PRECONDITION', `complete called directly before phase 1 was done threw ${describeError(err)}; the contract says FAILED_PRECONDITION`, 'complete');
      return;
    }
    fail(`complete called directly before phase 1 was done returned ${JSON.stringify((result as { status?: string }).status)} instead of refusing with FAILED_PRECONDITION`, 'complete');
  },
};

/** Each continue answers within the daemon's deadline and never goes back on copied data. */
export const continueDeadline: Check = {
  id: 'continue-deadline',
  title: `continue returns within its deadline (${DEFAULT_DEADLINES.continue} ms) and never goes back on copied data`,
  async run(c) {
    const share = await c.share();
    const direct = c.direct(share, { maxBandwidthBytesPerSec: c.slowBandwidth });
    // The guard of this driver waits as long as a migration may take: a continue past its deadline is measured here, not cut short by the guard.
    const driver = await c.driver({ continue: c.settings.timeouts.migrationMs });
    await direct.start(driver);
    const samples: ContinueSample[] = await direct.continueUntilPhase1(driver);
    // And on, as the engine keeps the destination warm in PHASE1_DONE.
    for (let i = 0; i < c.settings.repeat; i++) samples.push(await direct.continueOnce(driver, 'continue (in PHASE1_DONE)'));
    let previous = -1;
    for (const [i, { ms, result }] of samples.entries()) {
      const { copiedBytes, totalBytes } = result.progress;
      expect(ms <= DEFAULT_DEADLINES.continue, `continue call ${i + 1} took ${Math.round(ms)} ms; its deadline is ${DEFAULT_DEADLINES.continue} ms`, 'continue');
      expect(copiedBytes <= totalBytes, `continue call ${i + 1} reported ${copiedBytes} bytes copied of ${totalBytes}`, 'continue');
      expect(copiedBytes >= previous, `copied bytes went back from ${previous} to ${copiedBytes} at continue call ${i + 1}`, 'continue (progress.copiedBytes)');
      if (result.phase1Done) expect(copiedBytes === totalBytes, `continue call ${i + 1} reported phase 1 done with ${copiedBytes} of ${totalBytes} bytes copied`, 'continue');
      previous = copiedBytes;
    }
    const slowest = Math.max(...samples.map((s) => s.ms));
    c.note(`${samples.length} continue calls, the slowest took ${slowest.toFixed(1)} ms`);
    await direct.cancelUntilDone(driver);
  },
};
