/**
 * Drivers' change feeds (Driver.watchChanges) as the engine uses them, over
 * real gRPC, LevelDB and the plugin loader, with the scripted driver's
 * streams steered by the test: a parked migration is polled rarely while
 * its backend's feed is open, is called at once when the feed names it, and
 * goes back to its driver's polls when the feed ends.
 */
import assert from 'node:assert/strict';
import { beforeEach, describe, test } from 'node:test';
import type { TestContext } from 'node:test';
import { control } from '../fixtures/plugins/scripted/index.ts';
import { inProcessDaemon, scriptedConfig, tempDir, waitForState } from '../helpers.ts';

const HOUR = 3_600_000;
const START = { share: { backend: 'a', shareId: 's1' }, destination: 'b#p1', writable: true };

/** A daemon whose scripted drivers offer change feeds, parked polls an hour apart, and the feed of backend a open. */
async function feedDaemon(t: TestContext) {
  control.offersChanges = true;
  const { client } = await inProcessDaemon(t, scriptedConfig(tempDir(t), { engine: { parkedPollMs: HOUR } }));
  // One stream per backend; a driver says '' first on every connect, which makes the feed live.
  await control.streams$(2);
  control.change({ migrationId: '' });
  return client;
}

/** Starts a migration, waits for PHASE1_DONE, and returns it once its runner sleeps on the parked poll. */
async function parked(client: Awaited<ReturnType<typeof feedDaemon>>, shareId = 's1') {
  const m = await client.startMigration({ ...START, share: { backend: 'a', shareId } });
  await waitForState(client, m.id, 'PHASE1_DONE');
  // The continue that saw phase 1 done may have been made before the feed was live: let it pass.
  const calls = control.count('continue', m.id);
  control.change({ migrationId: m.id });
  await control.calls$('continue', calls + 1, m.id);
  return m;
}

describe('change feeds', () => {
  beforeEach(() => control.reset());

  test('a change names a parked migration: its next call is made at once, not at the parked poll an hour away', { timeout: 30_000 }, async (t) => {
    const client = await feedDaemon(t);
    const m = await parked(client);
    // The array failed the job while it was parked; the feed says so.
    control.fail('continue', 'FAILED_PRECONDITION');
    const before = control.count('continue', m.id);
    control.change({ migrationId: m.id });
    await control.calls$('continue', before + 1, m.id);
    const failed = await waitForState(client, m.id, 'ERROR');
    assert.equal(failed.error?.code, 'FAILED_PRECONDITION');
  });

  test('an unknown id or a malformed change calls nobody; an empty id calls every migration of the backend', { timeout: 30_000 }, async (t) => {
    const client = await feedDaemon(t);
    const m = await parked(client);
    const other = await parked(client, 's2');
    // Unparked, m would now be called every millisecond: the wait below for `other` would see it called.
    control.nextPollMs = 1;
    const before = control.count('continue', m.id);
    control.change({ migrationId: 'mig-0000000000000000-00000000' });
    control.change({ migrationId: 42 });
    control.change('garbage');
    control.change(undefined);
    // A stream is read in order: once the change after them has called its migration, they were all read.
    const otherBefore = control.count('continue', other.id);
    for (let round = 1; round <= 5; round++) {
      control.change({ migrationId: other.id });
      await control.calls$('continue', otherBefore + round, other.id);
    }
    assert.equal(control.count('continue', m.id), before, 'a change that names no migration of this backend called one');
    control.change({ migrationId: '' });
    await Promise.all([control.calls$('continue', before + 1, m.id), control.calls$('continue', otherBefore + 6, other.id)]);
    // The daemon still serves and the migration still completes.
    await client.completeMigration(m.id);
    await waitForState(client, m.id, 'SUCCESS');
  });

  test('with the feed open a copy is polled at most every progressPersistMs, and the feed announces its phase 1 done', { timeout: 30_000 }, async (t) => {
    control.offersChanges = true;
    const { client } = await inProcessDaemon(t, scriptedConfig(tempDir(t), { engine: { parkedPollMs: HOUR, progressPersistMs: HOUR } }));
    await control.streams$(2);
    // `other` reaches PHASE1_DONE before the feed is live (it would otherwise be polled hourly), then parks on it.
    const other = await client.startMigration({ ...START, share: { backend: 'a', shareId: 's2' } });
    await waitForState(client, other.id, 'PHASE1_DONE');
    const calls = control.count('continue', other.id);
    control.change({ migrationId: '' });
    await control.calls$('continue', calls + 1, other.id);
    control.nextPollMs = 1;
    const m = await client.startMigration(START);
    await control.calls$('continue', 1, m.id);
    const before = control.count('continue', m.id);
    // Polled every millisecond, as the driver asks, the copy would be called again while `other` is, five times over.
    for (let round = 1; round <= 5; round++) {
      const n = control.count('continue', other.id);
      control.change({ migrationId: other.id });
      await control.calls$('continue', n + 1, other.id);
    }
    assert.equal(control.count('continue', m.id), before, 'a copy was polled as the driver asks, with the feed open');
    // Each change calls it once; the fourth chunk finishes phase 1.
    for (let n = before; control.count('continue', m.id) < 4; n++) {
      control.change({ migrationId: m.id });
      await control.calls$('continue', n + 1, m.id);
    }
    await waitForState(client, m.id, 'PHASE1_DONE');
  });

  test('when the feed ends, parked migrations go back to their driver\'s polls, and the feed is opened again', { timeout: 30_000 }, async (t) => {
    const client = await feedDaemon(t);
    const m = await parked(client);
    const before = control.count('continue', m.id);
    control.endStreams(new Error('array connection lost'));
    // Called at once (anything may have been missed), then again at the driver's 5 ms.
    await control.calls$('continue', before + 2, m.id);
    await control.streams$(3);
    await client.completeMigration(m.id);
    await waitForState(client, m.id, 'SUCCESS');
  });
});
