/**
 * The engine dies: ferryd is SIGKILLed at a chosen point and started again
 * on the same data dir, so the migration resumes with new driver instances
 * and the last persisted checkpoint. The array lives on (as a vendor's
 * does). The kit's pass-through wrapper holds the driver's answer where the
 * point must be exact: after start or complete ran on the array but before
 * ferryd could persist what it returned.
 */
import { expect } from '../failure.ts';
import { needsWrapper, stateName, type Check } from './check.ts';

export const crashInStarting: Check = {
  id: 'crash-starting',
  title: 'ferryd killed in STARTING after start reached the array (its result lost) and restarted: start is made again and the migration ends right',
  gate: needsWrapper,
  async run(c) {
    const share = await c.share();
    const before = await c.destinationListing();
    const hold = c.hold('start', 'after', share);
    const m = await c.start(share);
    await c.reached(hold, 'start to return (its result is then withheld from ferryd)');
    // Hold the restarted engine's first start, to see the state it resumed in.
    const again = c.hold('start', 'before', share);
    await c.restartEngine();
    await c.reached(again, 'the restarted ferryd to make start again');
    const resumed = await c.h.client.getMigration(m.id);
    expect(resumed.state === 'MIGRATION_STATE_STARTING', `after the restart the migration is ${stateName(resumed.state)}, not STARTING`);
    again.release();
    await c.waitState(m.id, 'PHASE1_DONE', 'phase 1 to be done after the restart');
    const made = await c.newOnDestination(before);
    expect(made.length <= 1, `start made again after the restart left ${made.length} destinations: ${made.join(', ')}`, 'start');
    await c.complete(m.id);
    await c.waitState(m.id, 'SUCCESS', 'the cutover to succeed');
    await c.expectMoved(share, before, 'after SUCCESS');
  },
};

export const crashInProgress: Check = {
  id: 'crash-in-progress',
  title: 'ferryd killed in IN_PROGRESS and restarted: the copy resumes and the migration ends with the data moved',
  async run(c) {
    const share = await c.share();
    const before = await c.destinationListing();
    const m = await c.start(share, { maxBandwidthBytesPerSec: c.slowBandwidth });
    const now = await c.waitFor(m.id, (x) => x.state !== 'MIGRATION_STATE_STARTING' && (x.state !== 'MIGRATION_STATE_IN_PROGRESS' || x.progress.copiedBytes > 0), 'IN_PROGRESS with some data copied');
    if (now.state !== 'MIGRATION_STATE_IN_PROGRESS') {
      if (now.state !== 'MIGRATION_STATE_PHASE1_DONE') await c.failEnded(now, 'waiting for IN_PROGRESS');
      c.note('phase 1 was done before the kill (does the driver honour max_bandwidth_bytes_per_sec?); the restart was in PHASE1_DONE');
    } else c.note(`killed at ${now.progress.percent} %`);
    await c.restartEngine();
    const resumed = await c.h.client.getMigration(m.id);
    expect(['MIGRATION_STATE_IN_PROGRESS', 'MIGRATION_STATE_PHASE1_DONE'].includes(resumed.state), `after the restart the migration is ${stateName(resumed.state)}`);
    await c.waitState(m.id, 'PHASE1_DONE', 'phase 1 to be done after the restart');
    await c.complete(m.id);
    await c.waitState(m.id, 'SUCCESS', 'the cutover to succeed');
    await c.expectMoved(share, before, 'after SUCCESS');
  },
};

export const crashInCompleting: Check = {
  id: 'crash-completing',
  title: 'ferryd killed in COMPLETING after complete ran (its result lost) and restarted: complete resumes from the checkpoint and the migration ends with the data moved',
  gate: needsWrapper,
  async run(c) {
    const share = await c.share();
    const before = await c.destinationListing();
    const m = await c.start(share);
    await c.waitState(m.id, 'PHASE1_DONE', 'phase 1 to be done');
    const hold = c.hold('complete', 'after', share);
    await c.complete(m.id);
    await c.reached(hold, 'complete to return (its result is then withheld from ferryd)');
    const first = await hold.reached;
    const answer = first.ok ? `returned ${String((first.result as { status?: unknown } | undefined)?.status)}` : `threw ${first.code}: ${first.message}`;
    c.note(`the first complete ${answer}; ferryd was killed before persisting it`);
    const again = c.hold('complete', 'before', share);
    await c.restartEngine();
    await c.reached(again, 'the restarted ferryd to make complete again');
    const resumed = await c.h.client.getMigration(m.id);
    expect(resumed.state === 'MIGRATION_STATE_COMPLETING', `after the restart the migration is ${stateName(resumed.state)}, not COMPLETING`);
    again.release();
    await c.waitState(m.id, 'SUCCESS', 'the cutover to succeed after the restart');
    await c.expectMoved(share, before, 'after SUCCESS');
  },
};
