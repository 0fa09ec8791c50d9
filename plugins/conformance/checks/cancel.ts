/**
 * Cancel through ferryd in each state that allows it: STARTING (while the
 * driver's start is in flight), IN_PROGRESS and PHASE1_DONE, each asked N
 * times. Afterwards the source must be where it was with its bytes, and the
 * destination backend must hold nothing new.
 */
import { expect, skip } from '../failure.ts';
import { needsWrapper, PAST_STARTING, stateName, type Check } from './check.ts';

const CANCEL_STATES = ['MIGRATION_STATE_CANCELLING', 'MIGRATION_STATE_CANCELLED'];

async function cancelRepeatedly(c: Parameters<Check['run']>[0], id: string): Promise<boolean> {
  let phase1Done = false;
  for (let k = 1; k <= c.settings.repeat; k++) {
    const r = await c.cancel(id);
    expect(CANCEL_STATES.includes(r.state), `CancelMigration call ${k} of ${c.settings.repeat} returned the migration in ${stateName(r.state)}`, 'CancelMigration');
    if (k === 1) phase1Done = r.phase1DoneAt !== null;
  }
  return phase1Done;
}

export const cancelInStarting: Check = {
  id: 'cancel-starting',
  title: 'cancel in STARTING (while start is in flight) leaves the source intact and no destination behind',
  gate: needsWrapper,
  async run(c) {
    const share = await c.share();
    const before = await c.destinationListing();
    // Hold ferryd's start before the driver sees it: the migration cannot leave STARTING meanwhile.
    const hold = c.hold('start', 'before', share);
    const m = await c.start(share);
    await c.reached(hold, 'ferryd to call start');
    await cancelRepeatedly(c, m.id);
    hold.release();
    await c.waitState(m.id, 'CANCELLED', 'the cancel to finish');
    const started = c.h.control.events.some((e) => e.phase === 'after' && e.call === 'start' && e.migration === m.id && e.ok);
    c.note(started ? 'start reached the array after the cancel was accepted' : 'start failed after the cancel was accepted');
    await c.expectUntouched(share, before, 'after CANCELLED', 'cancel');
  },
};

export const cancelInProgress: Check = {
  id: 'cancel-in-progress',
  title: 'cancel in IN_PROGRESS leaves the source intact and no destination behind',
  async run(c) {
    const share = await c.share();
    const before = await c.destinationListing();
    const m = await c.start(share, { maxBandwidthBytesPerSec: c.slowBandwidth });
    const now = await c.waitFor(m.id, (x) => PAST_STARTING.has(x.state), 'IN_PROGRESS');
    if (!PAST_STARTING.has(now.state)) await c.failEnded(now, 'waiting for IN_PROGRESS');
    const phase1DoneAtCancel = await cancelRepeatedly(c, m.id);
    await c.waitState(m.id, 'CANCELLED', 'the cancel to finish');
    await c.expectUntouched(share, before, 'after CANCELLED', 'cancel');
    if (now.state !== 'MIGRATION_STATE_IN_PROGRESS' || phase1DoneAtCancel) skip('not exercised: phase 1 was done before the cancel arrived (does the driver honour max_bandwidth_bytes_per_sec? a larger shareSizeBytes helps); the cancel from PHASE1_DONE was correct');
  },
};

export const cancelInPhase1Done: Check = {
  id: 'cancel-phase1-done',
  title: 'cancel in PHASE1_DONE leaves the source intact and no destination behind',
  async run(c) {
    const share = await c.share();
    const before = await c.destinationListing();
    const m = await c.start(share);
    await c.waitState(m.id, 'PHASE1_DONE', 'phase 1 to be done');
    await cancelRepeatedly(c, m.id);
    await c.waitState(m.id, 'CANCELLED', 'the cancel to finish');
    await c.expectUntouched(share, before, 'after CANCELLED', 'cancel');
  },
};
