/**
 * Errors map to the documented codes, as a caller of ferryd sees them (gRPC
 * status and the ferry-error-code trailer), and a refused start changes
 * nothing: no migration, no destination.
 */
import { randomSuffix } from '../data.ts';
import { expect } from '../failure.ts';
import type { CheckContext } from '../context.ts';
import { expectRefused, type Check } from './check.ts';

async function expectNoMigration(c: CheckContext, shareId: string, before: Set<string>): Promise<void> {
  const { migrations } = await c.h.client.listMigrations({ backend: c.h.source.name, pageSize: 1000 });
  expect(!migrations.some((m) => m.share.shareId === shareId), `a refused StartMigration left a migration of share ${shareId}`, 'StartMigration');
  const made = await c.newOnDestination(before);
  expect(made.length === 0, `a refused StartMigration left ${made.join(', ')} on the destination backend`, 'checkCompatibility');
}

export const unknownShare: Check = {
  id: 'error-unknown-share',
  title: 'an unknown share is NOT_FOUND (StartMigration and CheckCompatibility), and nothing is created',
  async run(c) {
    const before = await c.destinationListing();
    const shareId = `conformance-missing-${randomSuffix()}`;
    const share = { backend: c.h.source.name, shareId };
    await expectRefused('StartMigration of an unknown share', 'NOT_FOUND', () => c.h.client.startMigration({ share, destination: c.h.destinationRef }));
    await expectRefused('CheckCompatibility of an unknown share', 'NOT_FOUND', () => c.h.client.checkCompatibility({ share, destination: c.h.destinationRef }));
    await expectNoMigration(c, shareId, before);
  },
};

export const unknownPool: Check = {
  id: 'error-unknown-pool',
  title: 'an unknown destination pool is NOT_FOUND (StartMigration and CheckCompatibility), and nothing is created',
  async run(c) {
    const s = await c.share();
    const before = await c.destinationListing();
    const destination = `${c.h.destination.name}#conformance-missing-pool-${randomSuffix()}`;
    const share = { backend: c.h.source.name, shareId: s.id };
    await expectRefused('StartMigration to an unknown pool', 'NOT_FOUND', () => c.h.client.startMigration({ share, destination }));
    await expectRefused('CheckCompatibility to an unknown pool', 'NOT_FOUND', () => c.h.client.checkCompatibility({ share, destination }));
    await expectNoMigration(c, s.id, before);
    await c.expectUntouched(s, before, 'after the refused start', 'checkCompatibility');
  },
};

export const poolTooSmall: Check = {
  id: 'error-pool-too-small',
  title: 'a destination pool too small for the share is RESOURCE_EXHAUSTED, and nothing is created',
  gate: (h) => (h.setup.smallPool ? null : 'the adapter names no smallPool (optional: a destination pool with less room than the share)'),
  async run(c) {
    const s = await c.share();
    const before = await c.destinationListing();
    const destination = `${c.h.destination.name}#${c.h.setup.smallPool!}`;
    const share = { backend: c.h.source.name, shareId: s.id };
    await expectRefused('StartMigration to a pool too small', 'RESOURCE_EXHAUSTED', () => c.h.client.startMigration({ share, destination }));
    const report = await c.h.client.checkCompatibility({ share, destination });
    expect(!report.compatible, `CheckCompatibility says the share (${report.shareSizeBytes} bytes) fits a pool with ${report.destinationFreeBytes} bytes free`, 'checkCompatibility');
    await expectNoMigration(c, s.id, before);
    await c.expectUntouched(s, before, 'after the refused start', 'checkCompatibility');
  },
};
