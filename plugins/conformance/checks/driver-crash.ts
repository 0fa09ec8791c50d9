/**
 * The driver dies: for a plugin of kind process, the driver process ferryd
 * started is SIGKILLed mid-copy and mid-cutover (ferryd and the array live
 * on). ferryd must start it again, make the calls that were in flight again
 * from the last persisted checkpoint, and end the migration right. The pid
 * comes from ferryd's log ("driver process started", with plugin and pid).
 */
import { describeError, expect, fail } from '../failure.ts';
import type { CheckContext } from '../context.ts';
import type { Harness } from '../harness.ts';
import { stateName, type Check } from './check.ts';

/** A gate: only a process plugin has a driver process of its own. */
function needsProcess(h: Harness): string | null {
  return h.kind === 'process' ? null : `the plugin is of kind ${h.kind}: there is no driver process for the kit to kill (crash-in-progress kills ferryd itself)`;
}

/** Kills the driver process and notes what happened; fails naming what ferryd did not log. */
async function killDriver(c: CheckContext, when: string): Promise<void> {
  try {
    const { killed, restarted } = await c.h.killDriverProcess();
    c.note(`driver process ${killed} SIGKILLed ${when}; ferryd started it again as ${restarted}`);
  } catch (err) {
    fail(describeError(err), 'driver process supervision (ferryd)');
  }
}

export const driverKilledInProgress: Check = {
  id: 'driver-killed-in-progress',
  title: 'the driver process SIGKILLed in IN_PROGRESS: ferryd starts it again, the copy resumes from the checkpoint and the migration ends with the data moved',
  gate: needsProcess,
  async run(c) {
    const share = await c.share();
    const before = await c.destinationListing();
    const m = await c.start(share, { maxBandwidthBytesPerSec: c.slowBandwidth });
    const now = await c.waitFor(m.id, (x) => x.state !== 'MIGRATION_STATE_STARTING' && (x.state !== 'MIGRATION_STATE_IN_PROGRESS' || x.progress.copiedBytes > 0), 'IN_PROGRESS with some data copied');
    if (now.state !== 'MIGRATION_STATE_IN_PROGRESS') {
      if (now.state !== 'MIGRATION_STATE_PHASE1_DONE') await c.failEnded(now, 'waiting for IN_PROGRESS');
      c.note('phase 1 was done before the kill (does the driver honour max_bandwidth_bytes_per_sec?); the kill was in PHASE1_DONE');
    }
    await killDriver(c, `at ${now.progress.percent} % copied`);
    await c.waitState(m.id, 'PHASE1_DONE', 'phase 1 to be done after the driver restarted');
    await c.complete(m.id);
    await c.waitState(m.id, 'SUCCESS', 'the cutover to succeed');
    await c.expectMoved(share, before, 'after SUCCESS');
  },
};

export const driverKilledCompleting: Check = {
  id: 'driver-killed-completing',
  title: 'the driver process SIGKILLed in COMPLETING: ferryd starts it again, complete resumes from the checkpoint and the migration ends with the data moved',
  gate: needsProcess,
  async run(c) {
    const share = await c.share();
    const before = await c.destinationListing();
    const m = await c.start(share);
    await c.waitState(m.id, 'PHASE1_DONE', 'phase 1 to be done');
    const accepted = await c.complete(m.id);
    expect(accepted.state === 'MIGRATION_STATE_COMPLETING', `CompleteMigration answered ${stateName(accepted.state)}, not COMPLETING`, 'CompleteMigration');
    // Killed as soon as the cutover is asked for: ferryd's complete call is then in flight or about to be.
    await killDriver(c, 'right after CompleteMigration was accepted');
    const after = await c.h.client.getMigration(m.id);
    if (after.state === 'MIGRATION_STATE_SUCCESS') c.note('the cutover had ended by the time ferryd restarted the driver; the kill may have come after it');
    await c.waitState(m.id, 'SUCCESS', 'the cutover to succeed after the driver restarted');
    await c.expectMoved(share, before, 'after SUCCESS');
  },
};
