/**
 * The data-path guard against a driver that gets the host data path wrong:
 * pieces at the wrong place, bytes that do not match their CRC-32C, a
 * stream that ends early or never ends, listings that go backwards. The
 * real guard over a driver written here call by call (each test scripts the
 * one misbehaviour it is about); a driver that gets it right is the
 * simulator's, in test/daemon/host-path.test.ts.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { crc32c } from '@node-rs/crc32';
import { DEFAULT_DEADLINES } from '../../host/deadlines.ts';
import { GuardedDriver } from '../../host/guard.ts';
import { silentLog } from '../../lib/log.ts';
import { FerryError, type DataDestination, type DataSource, type Driver, type ExtentData, type MigrationSpec } from '../../plugins/api/index.ts';

const spec: MigrationSpec = {
  id: 'mig-1',
  source: { backend: 'b1', shareId: 's1' },
  destination: { backend: 'b2', pool: 'p1' },
  writable: true,
  nondisruptive: true,
  preserveMetadata: false,
  preserveSnapshots: false,
  newShareType: '',
  maxBandwidthBytesPerSec: 0,
  maxDowntimeMs: 1000,
  cutoverAction: 'abort',
  dataPath: 'host',
};
const args = { migration: spec, log: silentLog() };

const piece = (offset: number, bytes: Buffer, crc = crc32c(bytes)): ExtentData => ({ offset, data: bytes, crc32c: crc });

const unused = () => Promise.reject(new Error('not called in this test'));

/** A driver whose data source reads with `read`, and whose other calls answer as scripted. */
function driverWith(source: Partial<DataSource>, destination?: Partial<DataDestination>, deadlineMs = 5_000): GuardedDriver {
  const base: DataSource = {
    createSnapshot: unused,
    deleteSnapshot: unused,
    listChangedExtents: unused,
    readExtents: () => ({ [Symbol.asyncIterator]: () => ({ next: unused }) }),
    freezeWrites: unused,
    releaseWrites: unused,
    retireSource: unused,
  };
  const driver = {
    capabilities: () => ({ writable: true, nondisruptive: true, preserveMetadata: true, preserveSnapshots: false }),
    dataSource: { ...base, ...source },
    dataDestination: destination ? { createTarget: unused, writeExtents: unused, flushTarget: unused, promoteTarget: unused, discardTarget: unused, ...destination } : undefined,
  } as unknown as Driver;
  return new GuardedDriver('b1', { name: 'scripted', version: '1' }, driver, { ...DEFAULT_DEADLINES, dataPath: deadlineMs }, silentLog());
}

async function readAll(guard: GuardedDriver, extents = [{ offset: 0, length: 8 }]): Promise<ExtentData[]> {
  const out: ExtentData[] = [];
  for await (const p of guard.dataSource!.readExtents({ ...args, snapshotId: 'mig-1-s1', extents })) out.push(p);
  return out;
}

async function failure(promise: Promise<unknown>): Promise<FerryError> {
  try {
    await promise;
  } catch (err) {
    assert.ok(err instanceof FerryError, `rejected with ${String(err)}`);
    return err;
  }
  assert.fail('the call succeeded');
}

describe('the data-path guard', () => {
  test('pieces that cover the extents asked for, with their CRC-32C, come through as sent', async () => {
    const a = Buffer.from('abcd');
    const b = Buffer.from('efgh');
    const guard = driverWith({
      async *readExtents() {
        yield piece(0, a);
        yield piece(4, b);
      },
    });
    const got = await readAll(guard);
    assert.deepEqual(
      got.map((p) => [p.offset, Buffer.from(p.data).toString()]),
      [
        [0, 'abcd'],
        [4, 'efgh'],
      ],
    );
  });

  test('bytes that do not match their CRC-32C are DATA_LOSS, naming the offset and the snapshot', async () => {
    const guard = driverWith({
      async *readExtents() {
        yield piece(0, Buffer.from('abcdefgh'), 12345);
      },
    });
    const err = await failure(readAll(guard));
    assert.equal(err.code, 'DATA_LOSS');
    assert.match(err.message, /driver scripted \(backend b1\) sent 8 bytes at offset 0 of snapshot mig-1-s1 that do not match their CRC-32C/);
  });

  for (const [what, pieces, message] of [
    ['a piece where another was due', [piece(4, Buffer.from('abcd'))], /starts at 4, where 0 was due/],
    ['a piece past the extent', [piece(0, Buffer.alloc(12))], /runs past the extent's end at 8/],
    ['a stream that ends early', [piece(0, Buffer.alloc(4))], /the stream ended at offset 4/],
    ['an empty piece', [piece(0, Buffer.alloc(0))], /data must be 1 to/],
  ] as const) {
    test(`${what} is DRIVER_ERROR saying what was wrong`, async () => {
      const guard = driverWith({
        async *readExtents() {
          yield* pieces;
        },
      });
      const err = await failure(readAll(guard));
      assert.equal(err.code, 'DRIVER_ERROR');
      assert.match(err.message, /driver scripted \(backend b1\) returned an invalid readExtents piece/);
      assert.match(err.message, message);
    });
  }

  test("a driver's FerryError in the middle of a stream keeps its code, and the call is named", async () => {
    const guard = driverWith({
      async *readExtents() {
        yield piece(0, Buffer.alloc(4));
        throw new FerryError('NOT_FOUND', 'snapshot mig-1-s1 is gone');
      },
    });
    const err = await failure(readAll(guard));
    assert.equal(err.code, 'NOT_FOUND');
    assert.match(err.message, /driver scripted \(backend b1\) failed in readExtents: snapshot mig-1-s1 is gone/);
  });

  test("leaving the loop early stops the driver's stream", async () => {
    let stopped = false;
    const guard = driverWith({
      async *readExtents() {
        try {
          yield piece(0, Buffer.alloc(4));
          yield piece(4, Buffer.alloc(4));
        } finally {
          stopped = true;
        }
      },
    });
    for await (const _ of guard.dataSource!.readExtents({ ...args, snapshotId: 's', extents: [{ offset: 0, length: 8 }] })) break;
    // The guard stops the driver's iterator without waiting for it: wait for the finally block to have run.
    await new Promise<void>((resolve) => setImmediate(resolve));
    assert.equal(stopped, true);
  });

  test('a stream that never ends fails at the data-path deadline, and the signal the driver holds aborts', async () => {
    let signal: AbortSignal | undefined;
    const guard = driverWith(
      {
        readExtents(call) {
          signal = call.signal;
          return { [Symbol.asyncIterator]: () => ({ next: () => new Promise<IteratorResult<ExtentData>>(() => undefined) }) };
        },
      },
      undefined,
      50,
    );
    const err = await failure(readAll(guard));
    assert.equal(err.code, 'DEADLINE_EXCEEDED');
    assert.match(err.message, /did not finish readExtents within 50 ms/);
    assert.equal(signal?.aborted, true);
  });

  test('a page of changed extents that overlaps, or a nextOffset that does not move on, is DRIVER_ERROR', async () => {
    for (const [answer, message] of [
      [{ extents: [{ offset: 0, length: 8 }, { offset: 4, length: 8 }], nextOffset: 16 }, /extents\[1\] overlaps/],
      [{ extents: [], nextOffset: 0 }, /nextOffset must be a whole number past startOffset 0/],
      [{ extents: [{ offset: 0, length: 32 }], nextOffset: 16 }, /every extent must lie between startOffset and nextOffset/],
    ] as const) {
      const guard = driverWith({ listChangedExtents: async () => answer as never });
      const err = await failure(guard.dataSource!.listChangedExtents({ ...args, baseSnapshotId: '', snapshotId: 's', startOffset: 0, maxExtents: 10 }));
      assert.equal(err.code, 'DRIVER_ERROR');
      assert.match(err.message, message);
    }
  });

  test('flushTarget must answer one digest per range asked, for that range', async () => {
    const guard = driverWith({}, { flushTarget: async () => ({ digests: [{ offset: 0, length: 8, crc32c: 1 }] }) });
    const err = await failure(guard.dataDestination!.flushTarget({ ...args, targetId: 't', ranges: [{ offset: 0, length: 8 }, { offset: 8, length: 8 }] }));
    assert.equal(err.code, 'DRIVER_ERROR');
    assert.match(err.message, /flushTarget answered 1 digests for 2 ranges/);
  });

  test('a driver without the data path, or whose member throws when read, offers none', () => {
    const caps = () => ({ writable: true, nondisruptive: true, preserveMetadata: true, preserveSnapshots: false });
    const none = new GuardedDriver('b1', { name: 'plain', version: '1' }, { capabilities: caps } as unknown as Driver, DEFAULT_DEADLINES, silentLog());
    assert.equal(none.dataSource, undefined);
    assert.equal(none.dataDestination, undefined);
    const hostile = {
      capabilities: caps,
      get dataSource(): never {
        throw new Error('no');
      },
    } as unknown as Driver;
    assert.equal(new GuardedDriver('b1', { name: 'hostile', version: '1' }, hostile, DEFAULT_DEADLINES, silentLog()).dataSource, undefined);
  });
});
