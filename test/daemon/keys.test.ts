/** The engine's record keys (daemon/keys.ts): the start fingerprint and the sorted ids ListMigrations pages through. */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { test } from 'node:test';
import { canonicalHash, firstAfter, insertSorted } from '../../daemon/keys.ts';

const sha256 = (text: string) => createHash('sha256').update(text).digest('hex');

test('the fingerprint hash ignores key order, and is the SHA-256 of the same canonical JSON as ever (records keep it across restarts)', () => {
  assert.equal(canonicalHash({ b: [1, { d: 2, c: 'x' }], a: true }), canonicalHash({ a: true, b: [1, { c: 'x', d: 2 }] }));
  assert.notEqual(canonicalHash({ a: 1 }), canonicalHash({ a: 2 }));
  assert.equal(canonicalHash({ b: [true, 'x'], a: 1, c: { z: null, y: 'q' } }), sha256('{"a":1,"b":[true,"x"],"c":{"y":"q","z":null}}'));
});

test('ids inserted out of order stay sorted, and a page starts after the id it is given', () => {
  const ids: string[] = [];
  for (const id of ['m-03', 'm-05', 'm-01', 'm-04', 'm-02']) insertSorted(ids, id);
  assert.deepEqual(ids, ['m-01', 'm-02', 'm-03', 'm-04', 'm-05']);
  assert.equal(firstAfter(ids, 'm-00'), 0);
  assert.equal(firstAfter(ids, 'm-03'), 3);
  assert.equal(firstAfter(ids, 'm-035'), 3);
  assert.equal(firstAfter(ids, 'm-05'), 5);
});
