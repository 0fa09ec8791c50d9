/**
 * The engine and the MigrationService over real gRPC, real LevelDB and the
 * real plugin loader, with a driver the test steers call by call (the
 * scripted fixture plugin). The same paths against the real simulator are in
 * simulator-e2e.test.ts.
 */
import assert from 'node:assert/strict';
import { beforeEach, describe, test } from 'node:test';
import { control } from '../fixtures/plugins/scripted/index.ts';
import { inProcessDaemon, pluginsDir, rejectsWith, scriptedConfig, tempDir, testConfig, waitForState } from '../helpers.ts';
import type { TestContext } from 'node:test';

async function scriptedDaemon(t: TestContext, engine: Record<string, number> = {}) {
  const config = scriptedConfig(tempDir(t), { engine });
  return { ...(await inProcessDaemon(t, config)), config };
}

const START = { share: { backend: 'a', shareId: 's1' }, destination: 'b#p1', writable: true };

describe('MigrationService with a scripted driver', () => {
  beforeEach(() => control.reset());

  test('runs a migration through every phase, one driver call at a time, handing each checkpoint back', async (t) => {
    const { client } = await scriptedDaemon(t);
    const started = await client.startMigration(START);
    assert.equal(started.state, 'MIGRATION_STATE_STARTING');
    assert.match(started.id, /^mig-/);

    const done = await waitForState(client, started.id, 'PHASE1_DONE');
    assert.equal(done.progress.percent, 100);
    assert.equal(done.progress.copiedBytes, 1000);
    assert.ok(done.phase1DoneAt && done.startedAt);

    const completing = await client.completeMigration(started.id);
    assert.equal(completing.state, 'MIGRATION_STATE_COMPLETING');
    const success = await waitForState(client, started.id, 'SUCCESS');
    assert.deepEqual(success.cutover, { freezeMs: 12.5, finalDeltaBytes: 4096, verifiedBytes: 8192 });
    assert.ok(success.finishedAt);

    const calls = control.calls.filter((c) => c.migration === started.id && c.call !== 'checkCompatibility');
    assert.equal(calls[0]?.call, 'start');
    assert.equal(calls.at(-1)?.call, 'complete');
    assert.ok(calls.every((c) => c.overlapping === 0), 'two driver calls for one migration overlapped');
    // The first continue gets start's checkpoint; each later one gets the previous continue's.
    assert.deepEqual(calls[1]?.checkpoint, { job: started.id, step: 'started' });
    assert.deepEqual(calls[2]?.checkpoint, { job: started.id, copied: 250 });
    assert.equal(control.jobs.get(started.id)?.started, 1);
  });

  test('percent stays below 100 until phase 1 is done', async (t) => {
    const { client } = await scriptedDaemon(t);
    const m = await client.startMigration(START);
    const seen: number[] = [];
    await client.waitFor(m.id, (x) => x.state === 'MIGRATION_STATE_PHASE1_DONE', (x) => {
      if (x.state !== 'MIGRATION_STATE_PHASE1_DONE') seen.push(x.progress.percent);
    });
    assert.ok(seen.length > 0);
    assert.ok(seen.every((p) => p < 100), `percent reached 100 before phase 1 was done: ${seen.join(',')}`);
    assert.deepEqual([...seen].sort((x, y) => x - y), seen, 'percent went backwards');
  });

  test('progress is shown once written: a change within progressPersistMs is shown later, even when the driver reports nothing new after it', { timeout: 30_000 }, async (t) => {
    // A driver whose checkpoint never changes: only the progress rule decides what is written.
    let copied = 0;
    let advancing = true;
    const progress = () => ({ totalBytes: 100_000_000, copiedBytes: copied, dirtyBytes: 0, dirtyRateBytesPerSec: 0, throughputBytesPerSec: 1000, iteration: 1, etaSeconds: 1 });
    control.answering.set('continue', () => {
      if (advancing) copied += 100;
      return { progress: progress(), phase1Done: false, nextPollMs: 5, checkpoint: { job: 'same' } };
    });
    const { client } = await scriptedDaemon(t, { progressPersistMs: 1000 });
    const m = await client.startMigration(START);
    // A value was just written; the next poll's, within the second, is not.
    await client.waitFor(m.id, (x) => Number(x.progress.copiedBytes) >= 300);
    await control.calls$('continue', control.count('continue', m.id) + 1, m.id);
    // Then the copy stalls: every later poll reports what that one did.
    advancing = false;
    const shown = await client.waitFor(m.id, (x) => Number(x.progress.copiedBytes) === copied);
    assert.equal(Number(shown.progress.copiedBytes), copied);
    await client.cancelMigration(m.id);
  });

  test('rejects bad requests with INVALID_ARGUMENT naming the field, and changes nothing', async (t) => {
    const { client } = await scriptedDaemon(t);
    await rejectsWith(client.startMigration({ destination: 'b#p1' } as never), 'INVALID_ARGUMENT', /share is required/);
    await rejectsWith(client.startMigration({ share: { backend: 'a', shareId: '' }, destination: 'b#p1' }), 'INVALID_ARGUMENT', /share\.share_id is required/);
    await rejectsWith(client.startMigration({ share: { backend: '', shareId: 's' }, destination: 'b#p1' }), 'INVALID_ARGUMENT', /share\.backend is required/);
    await rejectsWith(client.startMigration({ ...START, destination: 'b' }), 'INVALID_ARGUMENT', /destination "b" must be "backend#pool"/);
    await rejectsWith(client.startMigration({ ...START, destination: '' }), 'INVALID_ARGUMENT', /destination is required/);
    await rejectsWith(client.startMigration({ ...START, requestId: 'x'.repeat(129) }), 'INVALID_ARGUMENT', /request_id is longer than 128/);
    await rejectsWith(client.getMigration(''), 'INVALID_ARGUMENT', /id is required/);
    await rejectsWith(client.getMigration('x'.repeat(129)), 'INVALID_ARGUMENT', /^id is 129 bytes long; migration ids are at most 128$/);
    await rejectsWith(client.completeMigration('mig-\u0000'), 'INVALID_ARGUMENT', /id contains a character that is not printable ASCII/);
    await rejectsWith(client.cancelMigration('mig-é'), 'INVALID_ARGUMENT', /id contains a character that is not printable ASCII/);
    await rejectsWith(client.listMigrations({ pageSize: 5000 }), 'INVALID_ARGUMENT', /page_size must be 0 to 1000/);
    await rejectsWith(client.listMigrations({ pageToken: 'garbage' }), 'INVALID_ARGUMENT', /page_token/);
    assert.equal((await client.listMigrations()).migrations.length, 0);
    assert.equal(control.count('start'), 0);
  });

  test('treats ids as opaque: any id that names no migration is NOT_FOUND, with a google.rpc.ErrorInfo naming it', async (t) => {
    const { client } = await scriptedDaemon(t);
    for (const id of ['nope', 'mig-0000000000000000-00000000', 'x'.repeat(128), 'a b#c/d']) {
      for (const call of [() => client.getMigration(id), () => client.completeMigration(id), () => client.cancelMigration(id)]) {
        const err = await rejectsWith(call(), 'NOT_FOUND', /^no migration has id /);
        assert.equal(err.trailer, 'NOT_FOUND');
        assert.deepEqual(err.errorInfo, { reason: 'NOT_FOUND', domain: 'ferry.v1', metadata: { migration: id } });
      }
    }
  });

  test('sends the stable code and the migration state in ErrorInfo when a call comes in the wrong state', async (t) => {
    const { client } = await scriptedDaemon(t);
    const m = await client.startMigration(START);
    const err = await rejectsWith(client.completeMigration(m.id), 'FAILED_PRECONDITION');
    assert.equal(err.errorInfo?.reason, 'FAILED_PRECONDITION');
    assert.equal(err.errorInfo?.domain, 'ferry.v1');
    assert.equal(err.errorInfo?.metadata.migration, m.id);
    assert.match(err.errorInfo?.metadata.state ?? '', /^MIGRATION_STATE_(STARTING|IN_PROGRESS)$/);
    const again = await rejectsWith(client.startMigration(START), 'ALREADY_EXISTS');
    assert.equal(again.errorInfo?.metadata.migration, m.id);
  });

  test('serves on a unix socket when told to', async (t) => {
    const dir = tempDir(t);
    const file = { simulator: { embedded: false }, backends: [{ name: 'a', plugin: 'scripted' }, { name: 'b', plugin: 'scripted' }] };
    const config = { ...testConfig(`${dir}/data`, file, pluginsDir(dir, ['scripted'])), listen: `unix:${dir}/ferry.sock` };
    const { daemon, client } = await inProcessDaemon(t, config);
    assert.equal(daemon.address, `unix:${dir}/ferry.sock`);
    assert.equal((await client.listBackends()).backends.length, 2);
  });

  test('accepts Manila-style host@backend#pool destinations', async (t) => {
    const { client } = await scriptedDaemon(t);
    const m = await client.startMigration({ ...START, destination: 'host1@b#p1' });
    assert.equal(m.destination, 'b#p1');
  });

  test('answers NOT_FOUND, ALREADY_EXISTS, UNIMPLEMENTED, FAILED_PRECONDITION and RESOURCE_EXHAUSTED as documented', async (t) => {
    const { client } = await scriptedDaemon(t);
    await rejectsWith(client.startMigration({ ...START, share: { backend: 'zz', shareId: 's1' } }), 'NOT_FOUND', /backend zz is not configured/);
    await rejectsWith(client.startMigration({ ...START, destination: 'zz#p1' }), 'NOT_FOUND', /backend zz is not configured/);
    await rejectsWith(client.startMigration({ ...START, share: { backend: 'a', shareId: 'missing' } }), 'NOT_FOUND', /share missing does not exist/);
    await rejectsWith(client.getMigration('mig-0000000000000000-00000000'), 'NOT_FOUND', /no migration has id/);
    await rejectsWith(client.startMigration({ ...START, preserveSnapshots: true }), 'UNIMPLEMENTED', /does not support preserve_snapshots/);
    control.reasons = ['destination pool is read-only'];
    await rejectsWith(client.startMigration(START), 'FAILED_PRECONDITION', /destination pool is read-only/);
    control.reasons = [];
    control.freeBytes = 10;
    await rejectsWith(client.startMigration(START), 'RESOURCE_EXHAUSTED', /has 10 bytes free; share s1 needs 1000/);
    control.freeBytes = 1_000_000;
    assert.equal((await client.listMigrations()).migrations.length, 0, 'a refused start left a migration behind');

    const first = await client.startMigration(START);
    const err = await rejectsWith(client.startMigration({ ...START, destination: 'b#p2' }), 'ALREADY_EXISTS', new RegExp(first.id));
    assert.equal(err.code, 'ALREADY_EXISTS');
  });

  test('a driver that claims a capability but refuses it for this share fails the start with FAILED_PRECONDITION', async (t) => {
    const { client, daemon } = await scriptedDaemon(t);
    // The driver claims writable (fixed at its creation); checkCompatibility now refuses it for this share.
    control.capabilities = { writable: false, nondisruptive: true, preserveMetadata: true, preserveSnapshots: false };
    await rejectsWith(client.startMigration(START), 'FAILED_PRECONDITION', /cannot honour writable/);
    assert.equal(daemon.engine.activeCount, 0);
  });

  test('CheckCompatibility lists the reasons StartMigration refuses with, in the same words, flags spelt as the API spells them', async (t) => {
    const { client } = await scriptedDaemon(t);
    const check = (extra: object = {}) => client.checkCompatibility({ share: START.share, destination: START.destination, writable: true, ...extra });
    const refused = async (extra: object, status: string) => (await rejectsWith(client.startMigration({ ...START, ...extra }), status)).message;

    const snapshots = await check({ preserveSnapshots: true });
    assert.equal(snapshots.compatible, false);
    assert.deepEqual(snapshots.reasons, [await refused({ preserveSnapshots: true }, 'UNIMPLEMENTED')]);
    assert.match(snapshots.reasons[0]!, /^driver scripted \(backend a\) does not support preserve_snapshots$/);

    control.capabilities = { ...control.capabilities, writable: false };
    const writable = await check();
    assert.deepEqual(writable.reasons, [await refused({}, 'FAILED_PRECONDITION')]);
    assert.match(writable.reasons[0]!, /^driver scripted cannot honour writable for share a\/s1 to b#p1$/);
    assert.equal(writable.capabilities?.writable, false);
    control.capabilities = { ...control.capabilities, writable: true };

    control.reasons = ['destination pool is read-only', 'the share is locked'];
    const reasons = await check();
    assert.deepEqual(reasons.reasons, [await refused({}, 'FAILED_PRECONDITION')]);
    assert.equal(reasons.reasons[0], 'cannot migrate share a/s1 to b#p1: destination pool is read-only; the share is locked');
    control.reasons = [];

    control.freeBytes = 10;
    const room = await check();
    assert.deepEqual(room.reasons, [await refused({}, 'RESOURCE_EXHAUSTED')]);
    assert.deepEqual([room.compatible, room.shareSizeBytes, room.destinationFreeBytes], [false, 1000, 10]);
    control.freeBytes = 1_000_000;

    const ok = await check();
    assert.deepEqual([ok.compatible, ok.reasons], [true, []]);
    assert.equal((await client.listMigrations()).migrations.length, 0, 'a dry run or a refused start left a migration behind');
  });

  test('every dry run gives the driver a migration id of its own, never one a migration could have', async (t) => {
    const { client } = await scriptedDaemon(t);
    for (let i = 0; i < 3; i++) await client.checkCompatibility({ share: START.share, destination: START.destination });
    const m = await client.startMigration(START);
    const ids = control.calls.filter((c) => c.call === 'checkCompatibility').map((c) => c.migration!);
    assert.equal(ids.length, 4);
    assert.equal(new Set(ids).size, 4, `a dry-run id was used twice: ${ids.join(', ')}`);
    for (const id of ids.slice(0, 3)) assert.match(id, /^dry-run-[0-9a-f]{16}-[0-9a-f]{8}$/);
    assert.equal(ids[3], m.id);
  });

  test('request_id makes StartMigration idempotent, and a reuse with other fields is ALREADY_EXISTS', async (t) => {
    const { client } = await scriptedDaemon(t);
    const a = await client.startMigration({ ...START, requestId: 'req-1' });
    const again = await Promise.all([1, 2, 3].map(() => client.startMigration({ ...START, requestId: 'req-1' })));
    for (const b of again) assert.equal(b.id, a.id);
    await rejectsWith(client.startMigration({ ...START, requestId: 'req-1', maxDowntimeMs: 5 }), 'ALREADY_EXISTS', /request_id req-1 was used for migration/);
    assert.equal((await client.listMigrations()).migrations.length, 1);
  });

  test('refuses CompleteMigration before phase 1 is done, saying which state it is in', async (t) => {
    const { client } = await scriptedDaemon(t);
    const held = control.hold('start');
    const m = await client.startMigration(START);
    await held.entered;
    await rejectsWith(client.completeMigration(m.id), 'FAILED_PRECONDITION', /is STARTING, and CompleteMigration is accepted only in PHASE1_DONE/);
    held.release();
    await waitForState(client, m.id, 'PHASE1_DONE');
  });

  test('complete and cancel are idempotent; cancel is refused once the cutover began', async (t) => {
    const { client } = await scriptedDaemon(t);
    const m = await client.startMigration(START);
    await waitForState(client, m.id, 'PHASE1_DONE');
    const held = control.hold('complete');
    for (let i = 0; i < 3; i++) assert.equal((await client.completeMigration(m.id)).state, 'MIGRATION_STATE_COMPLETING');
    await held.entered;
    await rejectsWith(client.cancelMigration(m.id), 'FAILED_PRECONDITION', /is COMPLETING, .*a cutover attempt is running and cannot be cancelled/);
    held.release();
    await waitForState(client, m.id, 'SUCCESS');
    assert.equal((await client.completeMigration(m.id)).state, 'MIGRATION_STATE_SUCCESS');
    assert.equal(control.count('complete', m.id), 1);
    await rejectsWith(client.cancelMigration(m.id), 'FAILED_PRECONDITION', /already succeeded/);
  });

  for (const phase of ['STARTING', 'IN_PROGRESS', 'PHASE1_DONE'] as const) {
    test(`cancels from ${phase}, repeatably, and the driver is asked to cancel once`, async (t) => {
      const { client } = await scriptedDaemon(t);
      let held: ReturnType<typeof control.hold> | undefined;
      if (phase === 'STARTING') held = control.hold('start');
      if (phase === 'IN_PROGRESS') control.size = 1_000_000;
      const m = await client.startMigration(START);
      if (held) await held.entered;
      else await waitForState(client, m.id, phase);
      const results = await Promise.all([1, 2, 3].map(() => client.cancelMigration(m.id)));
      for (const r of results) assert.equal(r.state, 'MIGRATION_STATE_CANCELLING');
      held?.release();
      const end = await waitForState(client, m.id, 'CANCELLED');
      assert.notEqual(end.progress.percent, 100);
      assert.equal(control.count('cancel', m.id), 1);
      assert.equal(control.jobs.get(m.id)?.cancelled, true);
      assert.equal((await client.cancelMigration(m.id)).state, 'MIGRATION_STATE_CANCELLED');
      await rejectsWith(client.completeMigration(m.id), 'FAILED_PRECONDITION', /was cancelled/);
    });
  }

  test('concurrent complete and cancel on one migration: exactly one wins, and the loser is told why', async (t) => {
    const { client } = await scriptedDaemon(t);
    const m = await client.startMigration(START);
    await waitForState(client, m.id, 'PHASE1_DONE');
    // Keep a continue call in flight while both requests arrive.
    const held = control.hold('continue');
    await held.entered;
    const [complete, cancel] = await Promise.allSettled([client.completeMigration(m.id), client.cancelMigration(m.id)]);
    held.release();
    const winners = [complete, cancel].filter((r) => r.status === 'fulfilled');
    assert.equal(winners.length, 1, 'both or neither of complete and cancel succeeded');
    const loser = [complete, cancel].find((r) => r.status === 'rejected') as PromiseRejectedResult;
    assert.equal(loser.reason.code, 'FAILED_PRECONDITION');
    const end = await client.waitFor(m.id, () => false);
    assert.equal(end.state, complete.status === 'fulfilled' ? 'MIGRATION_STATE_SUCCESS' : 'MIGRATION_STATE_CANCELLED');
    assert.ok(!(control.count('complete', m.id) > 0 && control.count('cancel', m.id) > 0), 'the driver was asked both to complete and to cancel');
    assert.ok(control.calls.every((c) => c.overlapping === 0));
  });

  test('one slow driver call never stalls the other migrations', async (t) => {
    const { client } = await scriptedDaemon(t);
    const held = control.hold('continue');
    const slow = await client.startMigration(START);
    await held.entered;
    const fast = await client.startMigration({ ...START, share: { backend: 'a', shareId: 's2' } });
    await waitForState(client, fast.id, 'PHASE1_DONE');
    assert.equal((await client.getMigration(slow.id)).state, 'MIGRATION_STATE_IN_PROGRESS');
    held.release();
    await waitForState(client, slow.id, 'PHASE1_DONE');
  });

  test('retries a driver call that fails with UNAVAILABLE and goes on', async (t) => {
    const { client } = await scriptedDaemon(t);
    control.fail('continue', 'UNAVAILABLE', 3);
    const m = await client.startMigration(START);
    await waitForState(client, m.id, 'PHASE1_DONE');
    assert.ok(control.count('continue', m.id) >= 3 + 4);
  });

  test('a cutover that ran past its window returns to PHASE1_DONE and can be asked again', async (t) => {
    const { client } = await scriptedDaemon(t);
    control.completeOutcome = 'aborted';
    const m = await client.startMigration(START);
    await waitForState(client, m.id, 'PHASE1_DONE');
    await client.completeMigration(m.id);
    const back = await client.waitFor(m.id, (x) => x.state === 'MIGRATION_STATE_PHASE1_DONE' && x.lastCutoverAbort !== null);
    assert.equal(back.lastCutoverAbort?.code, 'CUTOVER_WINDOW_EXCEEDED');
    assert.match(back.lastCutoverAbort?.message ?? '', /window exceeded/);
    control.completeOutcome = 'done';
    await client.completeMigration(m.id);
    await waitForState(client, m.id, 'SUCCESS');
    assert.equal(control.count('complete', m.id), 2);
  });

  test('cancel during a cutover attempt is refused saying the attempt may still abort; once it aborts back to PHASE1_DONE, cancel is accepted', async (t) => {
    const { client } = await scriptedDaemon(t);
    control.completeOutcome = 'aborted';
    const m = await client.startMigration(START);
    await waitForState(client, m.id, 'PHASE1_DONE');
    const held = control.hold('complete');
    await client.completeMigration(m.id);
    await held.entered;
    const refused = await rejectsWith(
      client.cancelMigration(m.id),
      'FAILED_PRECONDITION',
      /is COMPLETING, and CancelMigration is accepted only in .*: a cutover attempt is running and cannot be cancelled; wait for it to end: in SUCCESS, or, if it aborts, back in PHASE1_DONE, where CancelMigration is accepted$/,
    );
    assert.doesNotMatch(refused.message, /rollback/);
    held.release();
    await client.waitFor(m.id, (x) => x.state === 'MIGRATION_STATE_PHASE1_DONE' && x.lastCutoverAbort !== null);
    assert.equal((await client.cancelMigration(m.id)).state, 'MIGRATION_STATE_CANCELLING');
    await waitForState(client, m.id, 'CANCELLED');
  });

  test('a complete that reports in_progress is called again until done', async (t) => {
    const { client } = await scriptedDaemon(t);
    const m = await client.startMigration(START);
    await waitForState(client, m.id, 'PHASE1_DONE');
    control.completeOutcome = 'in_progress';
    await client.completeMigration(m.id);
    await control.calls$('complete', 3, m.id);
    assert.ok(control.count('progress', m.id) >= 2, 'progress was not asked for while the cutover ran');
    control.completeOutcome = 'done';
    await waitForState(client, m.id, 'SUCCESS');
  });

  test('a copy that makes no progress ends in ERROR (STALLED) and its destination is cleaned up', async (t) => {
    const { client } = await scriptedDaemon(t, { stallTimeoutMs: 50 });
    control.advancing = false;
    const m = await client.startMigration(START);
    const end = await client.waitFor(m.id, () => false);
    assert.equal(end.state, 'MIGRATION_STATE_ERROR');
    assert.equal(end.error?.code, 'STALLED');
    assert.match(end.error?.message ?? '', /no progress/);
    assert.notEqual(end.progress.percent, 100);
    // Cleanup runs after the ERROR is persisted: the driver is asked to cancel (remove the destination).
    await control.calls$('cancel', 1, m.id);
  });

  for (const kind of ['garbage', 'THROW'] as const) {
    test(`a driver whose continue ${kind === 'garbage' ? 'returns garbage' : 'throws a plain Error'} fails the migration with DRIVER_ERROR, and the daemon serves on`, async (t) => {
      const { client } = await scriptedDaemon(t);
      if (kind === 'garbage') control.garbage.add('continue');
      else control.fail('continue', 'THROW', 1);
      const m = await client.startMigration(START);
      const end = await client.waitFor(m.id, () => false);
      assert.equal(end.state, 'MIGRATION_STATE_ERROR');
      assert.equal(end.error?.code, 'DRIVER_ERROR');
      assert.match(end.error?.message ?? '', kind === 'garbage' ? /invalid continue result: progress\.totalBytes/ : /unexpected error \(see the daemon log\)/);
      assert.doesNotMatch(end.error?.message ?? '', /at .*\.ts:\d+/, 'a stack trace reached the caller');
      control.garbage.clear();
      const next = await client.startMigration({ ...START, share: { backend: 'a', shareId: 's2' } });
      await waitForState(client, next.id, 'PHASE1_DONE');
    });
  }

  test('a driver call that hangs is abandoned at its deadline and retried', async (t) => {
    const { client } = await scriptedDaemon(t);
    control.hangs.add('continue');
    const m = await client.startMigration(START);
    await control.calls$('continue', 2, m.id);
    control.hangs.clear();
    await waitForState(client, m.id, 'PHASE1_DONE');
  });

  test('lists migrations in creation order, a page at a time, filtered by state and backend', async (t) => {
    const { client } = await scriptedDaemon(t);
    const ids: string[] = [];
    for (let i = 0; i < 5; i++) ids.push((await client.startMigration({ ...START, share: { backend: 'a', shareId: `s${i}` } })).id);
    const page1 = await client.listMigrations({ pageSize: 2 });
    assert.deepEqual(page1.migrations.map((m) => m.id), ids.slice(0, 2));
    const page2 = await client.listMigrations({ pageSize: 2, pageToken: page1.nextPageToken });
    assert.deepEqual(page2.migrations.map((m) => m.id), ids.slice(2, 4));
    const page3 = await client.listMigrations({ pageSize: 2, pageToken: page2.nextPageToken });
    assert.deepEqual(page3.migrations.map((m) => m.id), ids.slice(4));
    assert.equal(page3.nextPageToken, '');
    await client.cancelMigration(ids[0]!);
    await waitForState(client, ids[0]!, 'CANCELLED');
    const cancelled = await client.listMigrations({ state: 'MIGRATION_STATE_CANCELLED' });
    assert.deepEqual(cancelled.migrations.map((m) => m.id), [ids[0]]);
    assert.equal((await client.listMigrations({ backend: 'b' })).migrations.length, 5);
    assert.equal((await client.listMigrations({ backend: 'zz' })).migrations.length, 0);
  });

  test('many watchers of one migration each see it through to the end', async (t) => {
    const { client } = await scriptedDaemon(t);
    const m = await client.startMigration(START);
    const watchers = Array.from({ length: 50 }, () => client.waitFor(m.id, () => false));
    await waitForState(client, m.id, 'PHASE1_DONE');
    await client.completeMigration(m.id);
    const ends = await Promise.all(watchers);
    for (const end of ends) assert.equal(end.state, 'MIGRATION_STATE_SUCCESS');
    // A watch of a finished migration sends its value once and ends.
    const values = [];
    for await (const v of client.watch(m.id)) values.push(v);
    assert.equal(values.length, 1);
  });

  test('resumes every migration from its persisted state after a restart on the same data dir', async (t) => {
    const dir = tempDir(t);
    const file = { simulator: { embedded: false }, backends: [{ name: 'a', plugin: 'scripted' }, { name: 'b', plugin: 'scripted' }], engine: { minPollMs: 1 } };
    const plugins = pluginsDir(dir, ['scripted']);
    const { startDaemon } = await import('../../daemon/daemon.ts');
    const { silentLog } = await import('../../lib/log.ts');
    const { FerryClient } = await import('../../client/client.ts');
    const first = await startDaemon(testConfig(`${dir}/data`, file, plugins), silentLog());
    let client = new FerryClient(first.address);
    const held = control.hold('continue');
    const m = await client.startMigration(START);
    await held.entered;
    client.close();
    const closing = first.close(50);
    held.release();
    await closing;
    const before = control.count('start', m.id);
    const second = await startDaemon(testConfig(`${dir}/data`, file, plugins), silentLog());
    t.after(() => second.close(100));
    client = new FerryClient(second.address);
    t.after(() => client.close());
    assert.equal((await client.getMigration(m.id)).state, 'MIGRATION_STATE_IN_PROGRESS');
    await waitForState(client, m.id, 'PHASE1_DONE');
    assert.equal(control.count('start', m.id), before, 'start was issued again for a migration already IN_PROGRESS');
  });
});
