/** Pure logic of a migration record: ids, the state machine, and progress that never lies. */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { canTransition, isMigrationId, newMigrationId, observeMigrationId, STATES, TERMINAL_STATES, toProgress } from '../../daemon/migration.ts';

describe('migration ids', () => {
  test('sort in creation order, also many in one millisecond', () => {
    const ids = Array.from({ length: 1000 }, () => newMigrationId(1_700_000_000_000));
    assert.deepEqual([...ids].sort(), ids);
    assert.ok(ids.every(isMigrationId));
    assert.equal(new Set(ids).size, ids.length);
  });

  test('sort after every id seen at load, even if the clock went back', () => {
    const future = newMigrationId(Date.now() + 86_400_000);
    observeMigrationId(future);
    assert.ok(newMigrationId() > future);
  });
});

describe('the state machine', () => {
  test('terminal states lead nowhere, and COMPLETING cannot be cancelled', () => {
    for (const from of TERMINAL_STATES) for (const to of STATES) assert.equal(canTransition(from, to), false, `${from} -> ${to}`);
    assert.equal(canTransition('COMPLETING', 'CANCELLING'), false);
    assert.equal(canTransition('COMPLETING', 'PHASE1_DONE'), true);
    assert.equal(canTransition('STARTING', 'PHASE1_DONE'), false);
  });
});

describe('toProgress', () => {
  const p = { totalBytes: 1000, copiedBytes: 1000, dirtyBytes: 50, dirtyRateBytesPerSec: 1, throughputBytesPerSec: 10, iteration: 2, etaSeconds: 3 };
  test('caps percent below 100 until phase 1 is done', () => {
    assert.equal(toProgress(p, false).percent, 99.9);
    assert.equal(toProgress(p, false).remainingBytes, 50);
    assert.equal(toProgress(p, true).percent, 100);
    assert.equal(toProgress(p, true).etaSeconds, 0);
  });
  test('never reports more copied than the total', () => {
    assert.equal(toProgress({ ...p, copiedBytes: 5000 }, false).copiedBytes, 1000);
    assert.equal(toProgress({ ...p, totalBytes: 0, copiedBytes: 0 }, false).percent, 0);
  });
});
