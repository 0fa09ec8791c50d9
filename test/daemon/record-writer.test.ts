/** Group commit of migration records (daemon/record-writer.ts), over a real LevelDB store. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { emptyProgress, type MigrationRecord } from '../../daemon/migration.ts';
import { RecordWriter } from '../../daemon/record-writer.ts';
import { Store } from '../../daemon/store.ts';
import { tempDir } from '../helpers.ts';
import { migrationSpec } from '../simulator/helpers.ts';

function record(id: string, copiedBytes = 0): MigrationRecord {
  return {
    v: 1,
    id,
    spec: migrationSpec(id, id),
    requestId: '',
    fingerprint: '',
    state: 'IN_PROGRESS',
    progress: { ...emptyProgress(), copiedBytes },
    checkpoint: null,
    createdAt: 0,
    updatedAt: 0,
  };
}

test('the writes of one tick go in one batch; each caller resolves once it is on disk; a record asked twice is written once, with its latest value', async (t) => {
  const store = await Store.open(tempDir(t));
  t.after(() => store.close());
  const batches: string[][] = [];
  const written: MigrationRecord[] = [];
  const writer = new RecordWriter({ saveAll: (records) => (batches.push(records.map((r) => r.id)), store.saveAll(records)) }, (copy) => written.push(copy));

  const a = record('a', 1);
  const writes = [writer.write(a), writer.write(record('b')), writer.write(record('c'))];
  a.progress = { ...a.progress, copiedBytes: 2 };
  writes.push(writer.write(a));
  await Promise.all(writes);
  assert.deepEqual(batches, [['a', 'b', 'c']]);
  assert.deepEqual(written.map((r) => [r.id, r.progress.copiedBytes]), [['a', 2], ['b', 0], ['c', 0]]);
  // `written` gets a copy: what is on disk, not the live record.
  assert.notEqual(written[0], a);
  const loaded = await store.loadMigrations();
  assert.deepEqual(loaded.map((r) => [r.id, r.progress.copiedBytes]), [['a', 2], ['b', 0], ['c', 0]]);
});

test('writes asked for while a batch is in flight go in the next one, after it: a record lands in the order it was written', async (t) => {
  const store = await Store.open(tempDir(t));
  t.after(() => store.close());
  const batches: [string, number][][] = [];
  let release!: () => void;
  const held = new Promise<void>((resolve) => (release = resolve));
  const writer = new RecordWriter(
    {
      saveAll: async (records) => {
        batches.push(records.map((r) => [r.id, r.progress.copiedBytes]));
        if (batches.length === 1) await held;
        await store.saveAll(records);
      },
    },
    () => undefined,
  );
  const a = record('a', 1);
  const first = writer.write(a);
  await new Promise((resolve) => setImmediate(resolve));
  assert.equal(batches.length, 1, 'the first batch is out');
  a.progress = { ...a.progress, copiedBytes: 2 };
  const second = writer.write(a);
  const third = writer.write(record('b'));
  await new Promise((resolve) => setImmediate(resolve));
  assert.equal(batches.length, 1, 'nothing more goes while a batch is in flight');
  release();
  await Promise.all([first, second, third]);
  assert.deepEqual(batches, [[['a', 1]], [['a', 2], ['b', 0]]]);
  assert.equal((await store.loadMigrations()).find((r) => r.id === 'a')!.progress.copiedBytes, 2);
});

test('a failed batch rejects each of its writes and writes nothing; the next batch is written', async (t) => {
  const store = await Store.open(tempDir(t));
  t.after(() => store.close());
  let fail = true;
  const written: string[] = [];
  const writer = new RecordWriter(
    {
      saveAll: async (records) => {
        if (fail) throw new Error('disk full');
        await store.saveAll(records);
      },
    },
    (copy) => written.push(copy.id),
  );
  const failed = [writer.write(record('a')), writer.write(record('b'))];
  for (const write of failed) await assert.rejects(write, /disk full/);
  assert.deepEqual(written, []);
  fail = false;
  await writer.write(record('c'));
  await writer.idle();
  assert.deepEqual(written, ['c']);
  assert.deepEqual((await store.loadMigrations()).map((r) => r.id), ['c']);
});
