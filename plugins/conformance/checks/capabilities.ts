/**
 * Capability-gated checks: each runs only if the driver claims the
 * capability (ListBackends), and is skipped with the reason otherwise. A
 * claimed capability that does not hold fails.
 */
import type { StartMigrationRequest } from '../../../client/client.ts';
import type { Capabilities } from '../../api/index.ts';
import type { CheckContext, TestShare } from '../context.ts';
import { pattern } from '../data.ts';
import { skip } from '../failure.ts';
import { CAPABILITY_NAMES, PAST_STARTING, claims, type Check } from './check.ts';

const BLOCK = 4096;

/** A few writes spread over the share (start, quarters, end), `size` bytes each. */
async function spreadWrites(c: CheckContext, share: TestShare, tag: string, size: number): Promise<void> {
  const last = Math.max(0, share.sizeBytes - size);
  const offsets = [0, share.sizeBytes / 4, share.sizeBytes / 2, (3 * share.sizeBytes) / 4, last].map((o) => Math.min(last, Math.floor(o / BLOCK) * BLOCK));
  for (const [i, offset] of [...new Set(offsets)].entries()) await c.write(share, offset, pattern(`${tag}:${i}`, size), tag);
}

export const writableLosesNothing: Check = {
  id: 'writable',
  title: 'a writable migration keeps accepting writes during phase 1 and loses none',
  gate: claims('writable'),
  async run(c) {
    const share = await c.share();
    const before = await c.destinationListing();
    const m = await c.start(share, { writable: true, maxBandwidthBytesPerSec: c.slowBandwidth });
    const now = await c.waitFor(m.id, (x) => PAST_STARTING.has(x.state), 'IN_PROGRESS');
    if (!PAST_STARTING.has(now.state)) await c.failEnded(now, 'waiting for IN_PROGRESS');
    const tag = now.state === 'MIGRATION_STATE_IN_PROGRESS' ? 'during IN_PROGRESS' : `during ${now.state.replace('MIGRATION_STATE_', '')}`;
    await spreadWrites(c, share, tag, 16 * 1024);
    await c.waitState(m.id, 'PHASE1_DONE', 'phase 1 to be done');
    await spreadWrites(c, share, 'during PHASE1_DONE', 8 * 1024);
    await c.complete(m.id);
    await c.waitState(m.id, 'SUCCESS', 'the cutover to succeed');
    await c.expectMoved(share, before, 'after SUCCESS (every acknowledged write must be at the destination)');
    if (tag !== 'during IN_PROGRESS') c.note('phase 1 was done before the first writes (does the driver honour max_bandwidth_bytes_per_sec?)');
  },
};

export const nondisruptiveCutover: Check = {
  id: 'nondisruptive',
  title: 'a nondisruptive migration accepts writes through the cutover (they wait, not fail) and loses none',
  gate: claims('writable', 'nondisruptive'),
  async run(c) {
    const share = await c.share();
    const before = await c.destinationListing();
    const m = await c.start(share, { writable: true, nondisruptive: true });
    await c.waitState(m.id, 'PHASE1_DONE', 'phase 1 to be done');
    let stop = false;
    let writes = 0;
    const blocks = Math.max(1, Math.floor(share.sizeBytes / BLOCK));
    const writer = (async () => {
      while (!stop) {
        await c.write(share, (writes % blocks) * BLOCK, pattern(`cutover:${writes}`, BLOCK), 'during the cutover');
        writes++;
      }
    })();
    writer.catch(() => undefined);
    try {
      await c.complete(m.id);
      await c.waitState(m.id, 'SUCCESS', 'the cutover to succeed');
    } finally {
      stop = true;
      await writer;
    }
    await c.write(share, 0, pattern('after SUCCESS', BLOCK), 'after SUCCESS');
    c.note(`${writes} writes issued from PHASE1_DONE through the cutover, all acknowledged`);
    await c.expectMoved(share, before, 'after SUCCESS (every acknowledged write must be at the destination)');
  },
};

/** A check that a migration asking for `flag` is honoured end to end. */
function honoured(id: string, flag: 'preserveMetadata' | 'preserveSnapshots'): Check {
  const name = CAPABILITY_NAMES[flag];
  return {
    id,
    title: `a migration asking for ${name} is accepted and ends with the data moved`,
    gate: claims(flag as keyof Capabilities),
    async run(c) {
      const share = await c.share();
      const before = await c.destinationListing();
      const ask: Partial<StartMigrationRequest> = { [flag]: true };
      const report = await c.h.client.checkCompatibility({ share: { backend: c.h.source.name, shareId: share.id }, destination: c.h.destinationRef, ...ask });
      if (!report.compatible) skip(`driver claims ${name} but cannot honour it from ${c.h.source.name} to ${c.h.destinationRef}: ${report.reasons.join('; ')}`);
      const m = await c.start(share, ask);
      await c.waitState(m.id, 'PHASE1_DONE', 'phase 1 to be done');
      await c.complete(m.id);
      await c.waitState(m.id, 'SUCCESS', 'the cutover to succeed');
      await c.expectMoved(share, before, 'after SUCCESS');
      c.note(`the adapter cannot look at ${flag === 'preserveMetadata' ? 'metadata' : 'snapshots'}: this checks that the flag is honoured without error, not what arrived`);
    },
  };
}

export const preserveMetadata = honoured('preserve-metadata', 'preserveMetadata');
export const preserveSnapshots = honoured('preserve-snapshots', 'preserveSnapshots');
