/**
 * Point-in-time snapshots of shares, copy-on-write, for the host data path
 * (as EBS snapshots with their changed-block API, `rbd diff --from-snap`,
 * ZFS incremental send).
 *
 * A snapshot is its share's data file as it was, plus a side file (a sparse
 * file of the share's size) holding the old content of every block written
 * since. Taking one copies nothing: it records the snapshot and, for every
 * older snapshot of the share, which blocks were written between that one
 * and this one. Before the first write to a block after a snapshot, that
 * write copies the old block to the snapshot's side file, makes it durable
 * (fdatasync, group-committed), durably marks the block preserved (the
 * snapshot's bitmap in LevelDB), sets the in-memory bit, and only then
 * writes the share. So a SIGKILL at any instant leaves every snapshot
 * correct: a block marked preserved has its old content in the side file;
 * one not marked was never overwritten.
 *
 * A reader reads the share, then looks at the in-memory bits: a block
 * preserved by then is read from the side file instead (the share block is
 * only overwritten after its bit is set, so a block not set after the read
 * was read before any overwrite).
 *
 * The preserved bitmap is also "the blocks written since the snapshot", so
 * a copy of it made when a later snapshot is taken (with the share's writes
 * held off for that instant) is the changed set between the two.
 */
import { ArrayError } from './errors.ts';
import { Bitmap, toRuns } from './bitmap.ts';
import type { BlockStore } from './blockstore.ts';
import { newFileId } from './jobs.ts';
import type { MetaOp, MetaStore } from './metadata.ts';
import { keys, shareNotFound } from './model.ts';
import type { Place, ShareRecord } from './model.ts';
import { Mutex } from './mutex.ts';
import type { Log } from '../lib/log.ts';

/** The longest extent ListChangedExtents answers (a whole-share listing is cut into these). */
export const MAX_CHANGED_EXTENT_BYTES = 64 * 1024 * 1024;

/** A snapshot, as persisted. */
export interface SnapshotRecord {
  snapshotId: string;
  shareId: string;
  /** Where the share's data was when the snapshot was taken: its base. */
  place: Place;
  /** The side file holding the old content of blocks written since. */
  sideFileId: string;
  sizeBytes: number;
  blockSizeBytes: number;
  metadata: Record<string, string>;
  shareType: string;
  createdAtMs: number;
  /** Orders the snapshots of one share: a later snapshot has a larger one. */
  seq: number;
}

/** A byte range. */
export interface ByteRange {
  offset: number;
  length: number;
}

class Snapshot {
  /** Blocks whose old content is durable in the side file and marked so: what readers trust. */
  readonly preserved: Bitmap;
  /** Blocks whose side copy is durable (persisted as the bitmap; set before `preserved`). */
  readonly durable: Bitmap;
  /** Blocks being preserved right now, and the work doing it. */
  readonly pending = new Map<number, Promise<void>>();

  constructor(
    readonly rec: SnapshotRecord,
    bits: Bitmap,
  ) {
    this.preserved = bits;
    this.durable = bits.clone();
  }
}

/** Holds a share's writes off while one of its snapshots is taken or deleted. */
class WriteBarrier {
  private inflight = 0;
  private closed: Promise<void> | null = null;
  private drainWaiters: Array<() => void> = [];

  /** Admits a write (after a snapshot being taken, if one is). */
  async enter(): Promise<void> {
    while (this.closed) await this.closed;
    this.inflight++;
  }

  /** Ends an admitted write (after its pwrite). */
  leave(): void {
    this.inflight--;
    if (this.inflight === 0) for (const w of this.drainWaiters.splice(0)) w();
  }

  /** Runs `fn` with no write between its copy-on-write and its pwrite. Callers serialise. */
  async exclusive<T>(fn: () => T): Promise<T> {
    let open!: () => void;
    this.closed = new Promise((resolve) => (open = resolve));
    try {
      if (this.inflight > 0) await new Promise<void>((resolve) => this.drainWaiters.push(resolve));
      return fn();
    } finally {
      this.closed = null;
      open();
    }
  }
}

/** What the snapshot manager works with. */
export interface SnapshotDeps {
  store: MetaStore;
  blocks: BlockStore;
  blockSizeBytes: number;
  shares: ReadonlyMap<string, ShareRecord>;
  log: Log;
}

/** Every snapshot of the array. */
export class SnapshotManager {
  private readonly deps: SnapshotDeps;
  private readonly snaps = new Map<string, Snapshot>();
  /** Changed sets, by `${snapshot}!${base}`. */
  private readonly changes = new Map<string, Bitmap>();
  private readonly barriers = new Map<string, WriteBarrier>();
  private readonly mutexes = new Map<string, Mutex>();
  private seq = 0;

  private constructor(deps: SnapshotDeps) {
    this.deps = deps;
  }

  /** Loads the snapshots and their bitmaps. */
  static async open(deps: SnapshotDeps): Promise<SnapshotManager> {
    const m = new SnapshotManager(deps);
    const bits = new Map((await deps.store.entries<string>('snapp!')).map(([k, v]) => [k.slice('snapp!'.length), v]));
    for (const [, rec] of await deps.store.entries<SnapshotRecord>('snap!')) {
      const count = blockCount(rec);
      const saved = bits.get(rec.snapshotId);
      m.snaps.set(rec.snapshotId, new Snapshot(rec, saved ? Bitmap.fromBuffer(count, Buffer.from(saved, 'base64')) : new Bitmap(count)));
      m.seq = Math.max(m.seq, rec.seq);
    }
    for (const [key, value] of await deps.store.entries<string>('snapc!')) {
      const [, id] = key.split('!');
      const snap = m.snaps.get(id!);
      if (snap) m.changes.set(key.slice('snapc!'.length), Bitmap.fromBuffer(blockCount(snap.rec), Buffer.from(value, 'base64')));
    }
    return m;
  }

  /** Every data file a snapshot needs (its side file and its base), for the orphan sweep. */
  fileIds(): string[] {
    return [...this.snaps.values()].flatMap((s) => [s.rec.sideFileId, s.rec.place.fileId]);
  }

  /** The snapshots of a share, oldest first. */
  ofShare(shareId: string): SnapshotRecord[] {
    return [...this.snaps.values()].filter((s) => s.rec.shareId === shareId).map((s) => s.rec).sort((a, b) => a.seq - b.seq);
  }

  /** A snapshot, or NO_SUCH_OBJECT. */
  get(snapshotId: string): SnapshotRecord {
    return this.snapshot(snapshotId).rec;
  }

  /**
   * Called by every write of a share after its gate, before its pwrite:
   * preserves what the write overwrites in every snapshot based on the
   * share's data file. Resolves with the function to call after the pwrite.
   */
  async beforeWrite(share: ShareRecord, offset: number, length: number): Promise<() => void> {
    const barrier = this.barrier(share.shareId);
    await barrier.enter();
    try {
      const snaps = [...this.snaps.values()].filter((s) => s.rec.place.fileId === share.fileId);
      if (snaps.length > 0) await this.preserve(snaps, offset, length);
    } catch (err) {
      barrier.leave();
      throw err;
    }
    let left = false;
    return () => {
      if (left) return;
      left = true;
      barrier.leave();
    };
  }

  /** CreateSnapshot: idempotent on the id. */
  async create(shareId: string, snapshotId: string): Promise<SnapshotRecord> {
    const known = this.snaps.get(snapshotId);
    if (known) return this.same(known.rec, shareId);
    if (!this.deps.shares.has(shareId)) throw shareNotFound(shareId);
    return this.mutex(shareId).run(async () => {
      const again = this.snaps.get(snapshotId);
      if (again) return this.same(again.rec, shareId);
      const before = this.deps.shares.get(shareId);
      if (!before) throw shareNotFound(shareId);
      if (before.movedAway) throw new ArrayError('WRONG_STATE', `share ${shareId} was moved to another array`);
      // The side file exists before the snapshot does: a crash in between leaves an orphan the next open deletes.
      const sideFileId = newFileId();
      await this.deps.blocks.create(sideFileId, before.sizeBytes);
      let written: Promise<void> = Promise.resolve();
      const rec = await this.barrier(shareId).exclusive(() => {
        // No write is between its copy-on-write and its pwrite now: this instant is the snapshot's.
        const share = this.deps.shares.get(shareId)!;
        const rec: SnapshotRecord = {
          snapshotId,
          shareId,
          place: { backend: share.backend, pool: share.pool, fileId: share.fileId },
          sideFileId,
          sizeBytes: share.sizeBytes,
          blockSizeBytes: this.deps.blockSizeBytes,
          metadata: { ...share.metadata },
          shareType: share.shareType,
          createdAtMs: Date.now(),
          seq: ++this.seq,
        };
        const ops: MetaOp[] = [{ key: keys.snapshot(snapshotId), value: rec }];
        for (const older of this.snaps.values()) {
          if (older.rec.place.fileId !== share.fileId) continue;
          const changed = older.preserved.clone();
          this.changes.set(`${snapshotId}!${older.rec.snapshotId}`, changed);
          ops.push({ key: keys.changed(snapshotId, older.rec.snapshotId), value: changed.toBuffer().toString('base64') });
        }
        this.snaps.set(snapshotId, new Snapshot(rec, new Bitmap(blockCount(rec))));
        // Issued now, so it lands before (or with) any bitmap a later write persists for this snapshot.
        written = this.deps.store.write(ops, { sync: true });
        return rec;
      });
      // Writes the share took before the instant are in the snapshot: make them durable before answering.
      await Promise.all([written, this.deps.blocks.sync(rec.place.fileId)]);
      this.deps.log.info({ share: shareId, snapshot: snapshotId }, 'snapshot created');
      return rec;
    });
  }

  /** DeleteSnapshot: one that does not exist is success. */
  async delete(snapshotId: string): Promise<void> {
    const snap = this.snaps.get(snapshotId);
    if (!snap) return;
    const { shareId } = snap.rec;
    await this.mutex(shareId).run(async () => {
      if (!this.snaps.has(snapshotId)) return;
      await this.barrier(shareId).exclusive(() => this.snaps.delete(snapshotId));
      const ops: MetaOp[] = [
        { key: keys.snapshot(snapshotId), value: null },
        { key: keys.preserved(snapshotId), value: null },
      ];
      for (const key of [...this.changes.keys()]) {
        const [id, base] = key.split('!');
        if (id === snapshotId || base === snapshotId) {
          this.changes.delete(key);
          ops.push({ key: keys.changed(id!, base!), value: null });
        }
      }
      await this.deps.store.write(ops, { sync: true });
      await this.deps.blocks.remove(snap.rec.sideFileId);
      this.deps.log.info({ share: shareId, snapshot: snapshotId }, 'snapshot deleted');
    });
  }

  /** Deletes the snapshots of a share (all of them, or those based on `fileId`). */
  async deleteOfShare(shareId: string, fileId?: string): Promise<void> {
    for (const rec of this.ofShare(shareId)) if (fileId === undefined || rec.place.fileId === fileId) await this.delete(rec.snapshotId);
  }

  /**
   * ListChangedExtents: the blocks written between `baseId` and `snapshotId`
   * (every block when `baseId` is ''), from `startOffset` on, merged into
   * extents, at most `maxExtents` of them.
   */
  changed(shareId: string, baseId: string, snapshotId: string, startOffset: number, maxExtents: number): { extents: ByteRange[]; nextOffset: number; rec: SnapshotRecord } {
    const snap = this.snapshot(snapshotId);
    const { rec } = snap;
    if (shareId && rec.shareId !== shareId) throw new ArrayError('NO_SUCH_OBJECT', `snapshot ${snapshotId} is not of share ${shareId} (it is of ${rec.shareId})`);
    if (startOffset > rec.sizeBytes) throw new ArrayError('BAD_REQUEST', `start_offset ${startOffset} is past the end of the snapshot (${rec.sizeBytes} bytes)`);
    let bits: Bitmap | undefined;
    if (baseId) {
      const base = this.snapshot(baseId).rec;
      if (base.shareId !== rec.shareId) throw new ArrayError('BAD_REQUEST', `base_snapshot_id ${baseId} is of share ${base.shareId}, not ${rec.shareId}`);
      if (base.seq >= rec.seq) throw new ArrayError('BAD_REQUEST', `base_snapshot_id ${baseId} was taken after snapshot ${snapshotId}; the base must be the earlier one`);
      bits = this.changes.get(`${snapshotId}!${baseId}`);
      if (!bits) throw new ArrayError('WRONG_STATE', `snapshots ${baseId} and ${snapshotId} are of different places of share ${rec.shareId}; no changed set links them`);
    }
    const bs = rec.blockSizeBytes;
    const count = blockCount(rec);
    const maxRun = Math.max(1, Math.floor(MAX_CHANGED_EXTENT_BYTES / bs));
    const extents: ByteRange[] = [];
    let b = Math.floor(startOffset / bs);
    while (b < count && extents.length < maxExtents) {
      if (bits) {
        const next = bits.list(b, count, 1, true)[0];
        if (next === undefined) {
          b = count;
          break;
        }
        b = next;
      }
      let end = b + 1;
      while (end < count && end - b < maxRun && (!bits || bits.has(end))) end++;
      const offset = Math.max(b * bs, startOffset);
      extents.push({ offset, length: Math.min(end * bs, rec.sizeBytes) - offset });
      b = end;
    }
    if (bits && b < count) b = bits.list(b, count, 1, true)[0] ?? count;
    return { extents, nextOffset: Math.min(rec.sizeBytes, Math.max(startOffset, b * bs)), rec };
  }

  /** Reads `length` bytes of a snapshot at `offset`. */
  async read(snapshotId: string, offset: number, length: number): Promise<Buffer> {
    const snap = this.snapshot(snapshotId);
    const { rec } = snap;
    if (offset < 0 || length <= 0 || offset + length > rec.sizeBytes) {
      throw new ArrayError('BAD_REQUEST', `extent at ${offset} of ${length} bytes is not within snapshot ${snapshotId} (${rec.sizeBytes} bytes)`);
    }
    const data = await this.deps.blocks.read(rec.place.fileId, offset, length);
    // After the read: a block preserved by now may have been overwritten during it.
    const bs = rec.blockSizeBytes;
    const first = Math.floor(offset / bs);
    const last = Math.floor((offset + length - 1) / bs);
    const preserved = snap.preserved.list(first, last + 1, Infinity, true);
    for (const [start, n] of toRuns(preserved, Infinity)) {
      const from = Math.max(offset, start * bs);
      const to = Math.min(offset + length, (start + n) * bs);
      const old = await this.deps.blocks.read(rec.sideFileId, from, to - from);
      old.copy(data, from - offset);
    }
    return data;
  }

  private same(rec: SnapshotRecord, shareId: string): SnapshotRecord {
    if (rec.shareId !== shareId) throw new ArrayError('OBJECT_EXISTS', `snapshot ${rec.snapshotId} already exists, of share ${rec.shareId}`);
    return rec;
  }

  private snapshot(snapshotId: string): Snapshot {
    const snap = this.snaps.get(snapshotId);
    if (!snap) throw new ArrayError('NO_SUCH_OBJECT', `snapshot ${snapshotId} not found`);
    return snap;
  }

  /** Preserves the blocks of [offset, offset + length) that `snaps` have not preserved yet. */
  private async preserve(snaps: Snapshot[], offset: number, length: number): Promise<void> {
    const work: Array<Promise<void>> = [];
    for (const snap of snaps) {
      const bs = snap.rec.blockSizeBytes;
      const last = Math.min(blockCount(snap.rec) - 1, Math.floor((offset + length - 1) / bs));
      const need: number[] = [];
      for (let b = Math.floor(offset / bs); b <= last; b++) {
        if (snap.preserved.has(b)) continue;
        // Another write is preserving it: its copy is the old content, ours would not be.
        const pending = snap.pending.get(b);
        if (pending) work.push(pending);
        else need.push(b);
      }
      if (need.length === 0) continue;
      const task = this.copyOut(snap, need);
      for (const b of need) snap.pending.set(b, task);
      work.push(task);
    }
    await Promise.all(work);
  }

  /** Copies blocks to the side file, durably, then marks them preserved, durably. */
  private async copyOut(snap: Snapshot, blocks: number[]): Promise<void> {
    const { rec } = snap;
    const bs = rec.blockSizeBytes;
    try {
      for (const [start, n] of toRuns(blocks, Infinity)) {
        const from = start * bs;
        const to = Math.min(rec.sizeBytes, (start + n) * bs);
        const old = await this.deps.blocks.read(rec.place.fileId, from, to - from);
        await this.deps.blocks.write(rec.sideFileId, from, old);
      }
      for (const b of blocks) snap.durable.set(b);
      await this.deps.store.put(keys.preserved(rec.snapshotId), snap.durable.toBuffer().toString('base64'), { sync: true });
      for (const b of blocks) snap.preserved.set(b);
    } finally {
      for (const b of blocks) snap.pending.delete(b);
    }
  }

  private barrier(shareId: string): WriteBarrier {
    let barrier = this.barriers.get(shareId);
    if (!barrier) {
      barrier = new WriteBarrier();
      this.barriers.set(shareId, barrier);
    }
    return barrier;
  }

  private mutex(shareId: string): Mutex {
    let mutex = this.mutexes.get(shareId);
    if (!mutex) {
      mutex = new Mutex();
      this.mutexes.set(shareId, mutex);
    }
    return mutex;
  }
}

function blockCount(rec: SnapshotRecord): number {
  return Math.ceil(rec.sizeBytes / rec.blockSizeBytes);
}
