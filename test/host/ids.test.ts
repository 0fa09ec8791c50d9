/** Migration and dry-run ids: unique, time-ordered, and telling one from the other. */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { isMigrationId, newDryRunId, newMigrationId, observeMigrationId } from '../../host/ids.ts';

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

  test('a dry run gets an id of its own each time, never one that passes for a migration id', () => {
    const ids = Array.from({ length: 100 }, () => newDryRunId());
    assert.equal(new Set(ids).size, ids.length);
    for (const id of ids) {
      assert.match(id, /^dry-run-[0-9a-f]{16}-[0-9a-f]{8}$/);
      assert.equal(isMigrationId(id), false);
    }
  });
});
