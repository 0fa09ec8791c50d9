/**
 * The mover's own logic, against an array in memory whose every call can be
 * slowed or made to fail at an exact point: passes until the delta fits,
 * resuming from the saved place, the window's rollback, the commit found
 * again after a crash, DATA_LOSS copied again, cancel leaving nothing. The
 * same mover over the real simulator, with ferryd killed for real, is in
 * test/daemon/host-path.test.ts.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { crc32c } from '@node-rs/crc32';
import { DEFAULT_DEADLINES } from '../../host/deadlines.ts';
import { GuardedDriver } from '../../host/guard.ts';
import { HostPath, DEFAULT_HOST_PATH_OPTIONS } from '../../host/mover/host-path.ts';
import { MemoryPlaceStore, targetId } from '../../host/mover/place.ts';
import type { BackendEntry } from '../../host/plugins.ts';
import { silentLog } from '../../lib/log.ts';
import { FerryError, MAX_EXTENT_DATA_BYTES, type CompleteResult, type DataDestination, type DataSource, type Driver, type ExtentData, type MigrationSpec } from '../../plugins/api/index.ts';

const KiB = 1024;
const BLOCK = 4 * KiB;

/** One share, its snapshots and its target, in memory; `hooks` run before a call of that name. */
class MemoryArray {
  share: Buffer;
  location = 'src';
  /** Each snapshot's data, the blocks written since it, and those blocks as they were when each later snapshot was taken. */
  readonly snapshots = new Map<string, { data: Buffer; written: Set<number>; changedUntil: Map<string, Set<number>> }>();
  target: { data: Buffer; promoted: boolean } | undefined;
  frozen = false;
  readonly hooks = new Map<string, () => Promise<void> | void>();
  readonly calls: string[] = [];
  bytesRead = 0;

  constructor(size: number) {
    this.share = Buffer.alloc(size);
    for (let i = 0; i < size; i++) this.share[i] = (i * 7) % 251;
  }

  /** A client write; refused while frozen (the tests drive the freeze themselves). */
  write(offset: number, data: Buffer): void {
    if (this.frozen) throw new Error('frozen');
    data.copy(this.share, offset);
    for (let b = Math.floor(offset / BLOCK); b * BLOCK < offset + data.length; b++) for (const s of this.snapshots.values()) s.written.add(b);
  }

  private async hook(name: string): Promise<void> {
    this.calls.push(name);
    await this.hooks.get(name)?.();
  }

  readonly source: DataSource = {
    createSnapshot: async ({ snapshotId }) => {
      await this.hook('createSnapshot');
      if (!this.snapshots.has(snapshotId)) {
        for (const s of this.snapshots.values()) s.changedUntil.set(snapshotId, new Set(s.written));
        this.snapshots.set(snapshotId, { data: Buffer.from(this.share), written: new Set(), changedUntil: new Map() });
      }
      return { sizeBytes: this.share.length, metadata: { k: 'v' }, shareType: 'default', blockSizeBytes: BLOCK };
    },
    deleteSnapshot: async ({ snapshotId }) => {
      await this.hook('deleteSnapshot');
      this.snapshots.delete(snapshotId);
    },
    listChangedExtents: async ({ baseSnapshotId, snapshotId, startOffset }) => {
      await this.hook('listChangedExtents');
      if (!this.snapshots.has(snapshotId) || (baseSnapshotId && !this.snapshots.has(baseSnapshotId))) throw new FerryError('NOT_FOUND', 'no such snapshot');
      const size = this.share.length;
      if (!baseSnapshotId) return { extents: startOffset < size ? [{ offset: startOffset, length: size - startOffset }] : [], nextOffset: size };
      // Blocks written after the base was taken and before `snapshotId` was.
      const between = this.snapshots.get(baseSnapshotId)!.changedUntil.get(snapshotId) ?? new Set<number>();
      const changed = [...between].filter((b) => b * BLOCK >= startOffset).sort((a, b) => a - b);
      return { extents: changed.map((b) => ({ offset: b * BLOCK, length: BLOCK })), nextOffset: size };
    },
    readExtents: ({ snapshotId, extents }) => {
      const array = this;
      return (async function* (): AsyncGenerator<ExtentData> {
        await array.hook('readExtents');
        const snap = array.snapshots.get(snapshotId);
        if (!snap) throw new FerryError('NOT_FOUND', 'no such snapshot');
        for (const e of extents) {
          for (let at = e.offset; at < e.offset + e.length; at += MAX_EXTENT_DATA_BYTES) {
            const data = Buffer.from(snap.data.subarray(at, Math.min(e.offset + e.length, at + MAX_EXTENT_DATA_BYTES)));
            array.bytesRead += data.length;
            yield { offset: at, data, crc32c: crc32c(data) };
          }
        }
      })();
    },
    freezeWrites: async () => {
      await this.hook('freezeWrites');
      this.frozen = true;
    },
    releaseWrites: async ({ committed }) => {
      await this.hook(committed ? 'releaseWrites:committed' : 'releaseWrites');
      this.frozen = false;
    },
    retireSource: async () => {
      await this.hook('retireSource');
      this.snapshots.clear();
    },
  };

  readonly destination: DataDestination = {
    createTarget: async ({ sizeBytes }) => {
      await this.hook('createTarget');
      this.target ??= { data: Buffer.alloc(sizeBytes), promoted: false };
      return { promoted: this.target.promoted };
    },
    writeExtents: async ({ data }) => {
      await this.hook('writeExtents');
      let n = 0;
      for await (const piece of data) {
        if (crc32c(piece.data) !== piece.crc32c) throw new FerryError('DATA_LOSS', 'bad piece');
        Buffer.from(piece.data).copy(this.target!.data, piece.offset);
        n += piece.data.length;
      }
      return { writtenBytes: n };
    },
    flushTarget: async ({ ranges }) => {
      await this.hook('flushTarget');
      return { digests: ranges.map((r) => ({ ...r, crc32c: crc32c(this.target!.data.subarray(r.offset, r.offset + r.length)) })) };
    },
    promoteTarget: async () => {
      await this.hook('promoteTarget');
      this.target!.promoted = true;
      this.location = 'dst';
    },
    discardTarget: async () => {
      await this.hook('discardTarget');
      if (this.target?.promoted) throw new FerryError('FAILED_PRECONDITION', 'promoted');
      this.target = undefined;
    },
  };
}

const spec = (extra: Partial<MigrationSpec> = {}): MigrationSpec => ({
  id: 'mig-1',
  source: { backend: 'src', shareId: 's1' },
  destination: { backend: 'dst', pool: 'p' },
  writable: true,
  nondisruptive: true,
  preserveMetadata: true,
  preserveSnapshots: false,
  newShareType: '',
  maxBandwidthBytesPerSec: 0,
  maxDowntimeMs: 1_000,
  cutoverAction: 'abort',
  dataPath: 'host',
  ...extra,
});

function backends(array: MemoryArray): Map<string, BackendEntry> {
  const caps = () => ({ writable: true, nondisruptive: true, preserveMetadata: true, preserveSnapshots: false });
  const make = (name: string, half: object) => ({ name, driver: new GuardedDriver(name, { name: 'memory', version: '1' }, { capabilities: caps, ...half } as unknown as Driver, DEFAULT_DEADLINES, silentLog()) });
  return new Map([
    ['src', make('src', { dataSource: array.source })],
    ['dst', make('dst', { dataDestination: array.destination })],
  ]);
}

const OPTIONS = { ...DEFAULT_HOST_PATH_OPTIONS, batchBytes: 16 * KiB, warmIntervalMs: 5 };
const call = (s: MigrationSpec) => ({ migration: s, checkpoint: null, log: silentLog() });

async function untilPhase1(hp: HostPath, s: MigrationSpec): Promise<void> {
  for (;;) {
    const r = await hp.continue(call(s));
    if (r.phase1Done) return;
    await new Promise((resolve) => setTimeout(resolve, 2));
  }
}

async function completeUntilEnd(hp: HostPath, s: MigrationSpec): Promise<CompleteResult> {
  for (;;) {
    const r = await hp.complete(call(s));
    if (r.status !== 'in_progress') return r;
    await new Promise((resolve) => setTimeout(resolve, 2));
  }
}

describe('the mover', () => {
  test('copies the share whole, then what changed, until the delta fits; the cutover moves the last writes and retires the source', async () => {
    const array = new MemoryArray(256 * KiB);
    const hp = new HostPath(backends(array), new MemoryPlaceStore(), silentLog(), OPTIONS);
    const s = spec();
    await hp.start(call(s));
    array.write(8 * KiB, Buffer.alloc(5 * KiB, 1));
    await untilPhase1(hp, s);
    array.write(100 * KiB, Buffer.alloc(2 * KiB, 2));
    const r = await completeUntilEnd(hp, s);
    assert.equal(r.status, 'done');
    assert.equal(array.location, 'dst');
    assert.ok(array.target!.data.equals(array.share), 'the target differs from the share as it was at the freeze');
    assert.ok(array.calls.includes('releaseWrites:committed') && array.calls.includes('retireSource'));
    assert.equal(array.frozen, false);
    assert.equal(array.snapshots.size, 0, 'snapshots were left on the source');
    await hp.close();
  });

  test('a new mover on the saved place resumes the pass where the last verified batch ended', async () => {
    const array = new MemoryArray(512 * KiB);
    const places = new MemoryPlaceStore();
    const s = spec({ maxBandwidthBytesPerSec: 64 * KiB * 4 });
    const first = new HostPath(backends(array), places, silentLog(), OPTIONS);
    await first.start(call(s));
    // Let some batches land, then stop this mover as a crash would leave it: its place is all that remains.
    let progress = await first.continue(call(s));
    while (progress.progress.copiedBytes < 64 * KiB) progress = await new Promise((resolve) => setTimeout(resolve, 20)).then(() => first.continue(call(s)));
    await first.close();
    const copiedBefore = (await places.load('mig-1'))!.cursor;
    assert.ok(copiedBefore >= 64 * KiB);
    const readBefore = array.bytesRead;

    const second = new HostPath(backends(array), places, silentLog(), OPTIONS);
    const resumed = await second.continue(call({ ...s, maxBandwidthBytesPerSec: 0 }));
    assert.ok(resumed.progress.copiedBytes >= copiedBefore, 'progress went back after the restart');
    await untilPhase1(second, s);
    assert.ok(array.bytesRead - readBefore < 512 * KiB - copiedBefore + 64 * KiB, `the resumed pass read ${array.bytesRead - readBefore} bytes, more than what was left of it`);
    assert.equal((await completeUntilEnd(second, s)).status, 'done');
    assert.ok(array.target!.data.equals(array.share));
    await second.close();
  });

  test('past the window under ABORT, before the commit, the cutover rolls back: writes thaw on the source and phase 1 goes on', async () => {
    const array = new MemoryArray(64 * KiB);
    const hp = new HostPath(backends(array), new MemoryPlaceStore(), silentLog(), OPTIONS);
    const s = spec({ maxDowntimeMs: 50 });
    await hp.start(call(s));
    await untilPhase1(hp, s);
    let release!: () => void;
    const held = new Promise<void>((resolve) => (release = resolve));
    // The last snapshot, taken while frozen, hangs past the window.
    array.hooks.set('createSnapshot', () => (array.frozen ? held : undefined));
    const r = await completeUntilEnd(hp, s);
    release();
    assert.equal(r.status, 'aborted');
    assert.match((r as { reason: string }).reason, /did not fit the cutover window of 50 ms/);
    assert.equal(array.frozen, false, 'writes stayed frozen');
    assert.equal(array.location, 'src');
    assert.ok(!array.calls.includes('promoteTarget'));
    array.hooks.clear();
    await hp.continue(call(s));
    assert.equal((await completeUntilEnd(hp, s)).status, 'done', 'a later cutover did not succeed');
    await hp.close();
  });

  test('a crash after promote but before the commit was saved: the next mover asks the destination and rolls forward', async () => {
    const array = new MemoryArray(64 * KiB);
    const places = new MemoryPlaceStore();
    const s = spec();
    const first = new HostPath(backends(array), places, silentLog(), OPTIONS);
    await first.start(call(s));
    await untilPhase1(first, s);
    // Promote lands on the array, then "ferryd dies": the call never returns to this mover.
    array.hooks.set('promoteTarget', () => new Promise<void>(() => undefined));
    await first.complete(call(s));
    while (!array.calls.includes('promoteTarget')) await new Promise((resolve) => setTimeout(resolve, 2));
    array.target!.promoted = true;
    array.location = 'dst';
    assert.equal((await places.load('mig-1'))!.phase, 'promoting');
    array.hooks.clear();
    array.calls.length = 0;

    const second = new HostPath(backends(array), places, silentLog(), OPTIONS);
    const r = await completeUntilEnd(second, s);
    assert.equal(r.status, 'done');
    // Only the roll-forward: the source, no longer the share, is not snapshotted or frozen again.
    assert.deepEqual(array.calls, ['createTarget', 'releaseWrites:committed', 'retireSource']);
    assert.equal(await places.load('mig-1'), undefined, 'the place outlived the migration');
  });

  test('bytes that arrive wrong at the target (DATA_LOSS) are copied again', async () => {
    const array = new MemoryArray(64 * KiB);
    const hp = new HostPath(backends(array), new MemoryPlaceStore(), silentLog(), OPTIONS, { initial: 1, max: 5 });
    let corrupted = false;
    array.hooks.set('flushTarget', () => {
      if (!corrupted) {
        corrupted = true;
        array.target!.data[0] = array.target!.data[0]! ^ 0xff;
      }
    });
    const s = spec();
    await hp.start(call(s));
    await untilPhase1(hp, s);
    assert.ok(corrupted);
    assert.equal((await completeUntilEnd(hp, s)).status, 'done');
    assert.ok(array.target!.data.equals(array.share));
    await hp.close();
  });

  test('a shutdown during the cutover\'s unfrozen catch-up stops it at once, before any freeze; the next mover completes it', { timeout: 20_000 }, async () => {
    const array = new MemoryArray(64 * KiB);
    const places = new MemoryPlaceStore();
    const hp = new HostPath(backends(array), places, silentLog(), OPTIONS);
    const s = spec();
    await hp.start(call(s));
    await untilPhase1(hp, s);
    array.write(0, Buffer.alloc(BLOCK, 3));
    // The catch-up pass's write never answers: only the stop can end it.
    let entered!: () => void;
    const inWrite = new Promise<void>((resolve) => (entered = resolve));
    array.hooks.set('writeExtents', () => {
      entered();
      return new Promise<void>(() => undefined);
    });
    assert.equal((await hp.complete(call(s))).status, 'in_progress');
    await inWrite;
    await hp.close();
    assert.equal(array.frozen, false);
    assert.ok(!array.calls.includes('freezeWrites'), 'the cutover froze the source after the shutdown');

    array.hooks.delete('writeExtents');
    const next = new HostPath(backends(array), places, silentLog(), OPTIONS);
    const r = await completeUntilEnd(next, s);
    assert.equal(r.status, 'done');
    assert.ok(array.target!.data.equals(array.share));
    await next.close();
  });

  test('cancel leaves the source as it was and nothing at the destination', async () => {
    const array = new MemoryArray(64 * KiB);
    const places = new MemoryPlaceStore();
    const hp = new HostPath(backends(array), places, silentLog(), OPTIONS);
    const s = spec();
    await hp.start(call(s));
    await untilPhase1(hp, s);
    const before = Buffer.from(array.share);
    assert.deepEqual(await hp.cancel(call(s)), { done: true, checkpoint: null });
    assert.equal(array.target, undefined);
    assert.equal(array.snapshots.size, 0);
    assert.equal(array.location, 'src');
    assert.ok(array.share.equals(before));
    assert.equal(await places.load('mig-1'), undefined);
    assert.equal(targetId('mig-1'), 'mig-1-t');
  });
});
