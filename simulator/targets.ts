/**
 * Targets: shares-to-be that the host data path writes, invisible to
 * ListShares and GetShare, counted in their pool, then promoted to be a
 * share in one synced batch (the commit point). When the share lives on
 * this process already (its source is another array this process hosts, or
 * another pool), the promote moves the share record to the target's place
 * and keeps the former place as "retiring" until RetireShare deletes it;
 * writes waiting at the share's frozen gate then land on the new place.
 * When it does not, the promote makes the share.
 */
import { crc32c } from '@node-rs/crc32';
import { ArrayError } from './errors.ts';
import type { BlockStore } from './blockstore.ts';
import type { ShareGates } from './datapath.ts';
import { newFileId } from './jobs.ts';
import type { MetaStore } from './metadata.ts';
import { keys, MAX_IO_BYTES } from './model.ts';
import type { ShareRecord } from './model.ts';
import type { Mutex } from './mutex.ts';
import type { Pools, Reservation } from './pools.ts';
import type { SnapshotManager } from './snapshots.ts';
import type { Log } from '../lib/log.ts';

/** A target, as persisted. */
export interface TargetRecord {
  targetId: string;
  backend: string;
  pool: string;
  fileId: string;
  sizeBytes: number;
  metadata: Record<string, string>;
  shareType: string;
  createdAtMs: number;
  /** The share it was promoted to be; '' before. */
  promotedTo: string;
}

/** What CreateTarget takes. */
export interface CreateTargetInput {
  targetId: string;
  backend: string;
  pool: string;
  sizeBytes: number;
  metadata: Record<string, string>;
  shareType: string;
}

/** One piece of WriteTarget. */
export interface TargetPiece {
  offset: number;
  data: Uint8Array;
  crc32c: number;
}

/** A checksummed range. */
export interface RangeDigest {
  offset: number;
  length: number;
  crc32c: number;
}

/** What the target manager works with. */
export interface TargetDeps {
  store: MetaStore;
  blocks: BlockStore;
  pools: Pools;
  shares: Map<string, ShareRecord>;
  gates: ShareGates;
  snapshots: SnapshotManager;
  lock: Mutex;
  log: Log;
  /** The active job on a share, '' when none. */
  activeJob: (share: ShareRecord) => string;
  /** Deletes a share, its data and its workloads (called under the lock). */
  removeShare: (shareId: string) => Promise<void>;
}

/** Every target of the array. */
export class TargetManager {
  private readonly deps: TargetDeps;
  private readonly targets = new Map<string, TargetRecord>();

  private constructor(deps: TargetDeps) {
    this.deps = deps;
  }

  /** Loads the targets. */
  static async open(deps: TargetDeps): Promise<TargetManager> {
    const m = new TargetManager(deps);
    for (const [, rec] of await deps.store.entries<TargetRecord>('target!')) {
      m.targets.set(rec.targetId, rec);
      deps.pools.noteTarget(rec.targetId, rec);
    }
    return m;
  }

  /** The space targets not yet promoted hold. */
  *reservations(): Iterable<Reservation> {
    for (const t of this.targets.values()) if (!t.promotedTo) yield { backend: t.backend, pool: t.pool, bytes: t.sizeBytes };
  }

  /** The data files of targets not yet promoted (a promoted one's is its share's). */
  fileIds(): string[] {
    return [...this.targets.values()].filter((t) => !t.promotedTo).map((t) => t.fileId);
  }

  /** CreateTarget: idempotent on the id. */
  create(input: CreateTargetInput): Promise<TargetRecord> {
    return this.deps.lock.run(async () => {
      const existing = this.targets.get(input.targetId);
      if (existing) {
        if (existing.backend !== input.backend || existing.pool !== input.pool || existing.sizeBytes !== input.sizeBytes) {
          throw new ArrayError(
            'OBJECT_EXISTS',
            `target ${input.targetId} already exists in ${existing.backend}/${existing.pool} with ${existing.sizeBytes} bytes`,
          );
        }
        return existing;
      }
      this.deps.pools.check(input.backend, input.pool, { backend: 'backend', pool: 'pool' });
      const free = this.deps.pools.free(input.backend, input.pool);
      if (input.sizeBytes > free) {
        throw new ArrayError('NO_SPACE', `pool ${input.backend}/${input.pool} lacks room for target ${input.targetId}: need ${input.sizeBytes} bytes, ${free} free`);
      }
      const rec: TargetRecord = {
        targetId: input.targetId,
        backend: input.backend,
        pool: input.pool,
        fileId: newFileId(),
        sizeBytes: input.sizeBytes,
        metadata: { ...input.metadata },
        shareType: input.shareType || 'default',
        createdAtMs: Date.now(),
        promotedTo: '',
      };
      await this.deps.blocks.create(rec.fileId, rec.sizeBytes);
      await this.deps.store.put(keys.target(rec.targetId), rec, { sync: true });
      this.targets.set(rec.targetId, rec);
      this.deps.pools.noteTarget(rec.targetId, rec);
      this.deps.log.info({ target: rec.targetId, backend: rec.backend, pool: rec.pool, sizeBytes: rec.sizeBytes }, 'target created');
      return rec;
    });
  }

  /** A target, or NO_SUCH_OBJECT. */
  get(targetId: string): TargetRecord {
    const rec = this.targets.get(targetId);
    if (!rec) throw new ArrayError('NO_SUCH_OBJECT', `target ${targetId} not found`);
    return rec;
  }

  /**
   * WriteTarget: writes the pieces in order, each checked against its
   * CRC-32C first (BAD_CHECKSUM: nothing of it is written); resolves with
   * the bytes written once they are all durable.
   */
  async write(targetId: string, pieces: AsyncIterable<TargetPiece>): Promise<number> {
    let written = 0;
    let fileId = '';
    for await (const piece of pieces) {
      const rec = this.get(targetId);
      if (rec.promotedTo) throw new ArrayError('WRONG_STATE', `target ${targetId} was promoted to be share ${rec.promotedTo}; write to the share`);
      const { offset, data } = piece;
      if (data.length === 0 || data.length > MAX_IO_BYTES) throw new ArrayError('BAD_REQUEST', `data is ${data.length} bytes; 1 byte to 1 MiB per message`);
      if (!Number.isSafeInteger(offset) || offset < 0 || offset + data.length > rec.sizeBytes) {
        throw new ArrayError('BAD_REQUEST', `offset ${offset} + ${data.length} bytes is not within target ${targetId} (${rec.sizeBytes} bytes)`);
      }
      const crc = crc32c(data as Buffer);
      if (crc !== piece.crc32c) {
        throw new ArrayError('BAD_CHECKSUM', `the ${data.length} bytes at offset ${offset} do not match their CRC-32C (sent ${piece.crc32c}, computed ${crc}); nothing of them was written`);
      }
      await this.deps.blocks.writeUnsynced(rec.fileId, offset, data);
      fileId = rec.fileId;
      written += data.length;
    }
    if (fileId) await this.deps.blocks.sync(fileId);
    else this.get(targetId);
    return written;
  }

  /** ChecksumTarget: the CRC-32C of each range as the target durably holds it. */
  async checksum(targetId: string, ranges: Array<{ offset: number; length: number }>): Promise<RangeDigest[]> {
    const rec = this.get(targetId);
    await this.deps.blocks.sync(rec.fileId);
    const out: RangeDigest[] = [];
    for (const { offset, length } of ranges) {
      if (!Number.isSafeInteger(offset) || offset < 0 || !(length > 0) || offset + length > rec.sizeBytes) {
        throw new ArrayError('BAD_REQUEST', `range at ${offset} of ${length} bytes is not within target ${targetId} (${rec.sizeBytes} bytes)`);
      }
      let crc = 0;
      for (let at = offset; at < offset + length; at += MAX_IO_BYTES) {
        crc = crc32c(await this.deps.blocks.read(rec.fileId, at, Math.min(MAX_IO_BYTES, offset + length - at)), crc);
      }
      out.push({ offset, length, crc32c: crc });
    }
    return out;
  }

  /** PromoteTarget: the commit point; idempotent. Resolves with the share. */
  promote(targetId: string, shareId: string): Promise<ShareRecord> {
    return this.deps.lock.run(async () => {
      const rec = this.get(targetId);
      if (rec.promotedTo) {
        if (rec.promotedTo !== shareId) throw new ArrayError('WRONG_STATE', `target ${targetId} was promoted to be share ${rec.promotedTo}, not ${shareId}`);
        return this.deps.shares.get(shareId) ?? fail(`share ${shareId} of promoted target ${targetId} is gone`);
      }
      const existing = this.deps.shares.get(shareId);
      let share: ShareRecord;
      if (existing) {
        if (existing.retiring) throw new ArrayError('WRONG_STATE', `share ${shareId} still has a former place to retire (RetireShare first)`);
        const job = this.deps.activeJob(existing);
        if (job) throw new ArrayError('WRONG_STATE', `share ${shareId} is being moved by job ${job}`);
        // Writes admitted now would land on the former place after the last snapshot: they would be lost.
        if (!this.deps.gates.gate(shareId).frozen) throw new ArrayError('WRONG_STATE', `share ${shareId} is not frozen; FreezeShare before promoting a target to be it`);
        share = existing;
        share.retiring = { backend: share.backend, pool: share.pool, fileId: share.fileId };
        share.movedAway = false;
      } else {
        share = { shareId, backend: '', pool: '', fileId: '', sizeBytes: 0, metadata: {}, snapshots: 0, shareType: '', createdAtMs: Date.now(), jobId: '' };
      }
      share.backend = rec.backend;
      share.pool = rec.pool;
      share.fileId = rec.fileId;
      share.sizeBytes = rec.sizeBytes;
      share.metadata = { ...rec.metadata };
      share.shareType = rec.shareType;
      rec.promotedTo = shareId;
      this.deps.pools.noteTarget(targetId, rec);
      this.deps.pools.noteShare(shareId);
      await this.deps.store.write(
        [
          { key: keys.share(shareId), value: share },
          { key: keys.target(targetId), value: rec },
        ],
        { sync: true },
      );
      this.deps.shares.set(shareId, share);
      this.deps.pools.noteShare(shareId);
      this.deps.log.info({ target: targetId, share: shareId, backend: rec.backend, pool: rec.pool, retiring: share.retiring?.backend ?? '' }, 'target promoted');
      return share;
    });
  }

  /** DiscardTarget: one that does not exist is success; a promoted one is WRONG_STATE. */
  discard(targetId: string): Promise<void> {
    return this.deps.lock.run(async () => {
      const rec = this.targets.get(targetId);
      if (!rec) return;
      if (rec.promotedTo) throw new ArrayError('WRONG_STATE', `target ${targetId} was promoted to be share ${rec.promotedTo}; it is the share now`);
      await this.deps.store.write([{ key: keys.target(targetId), value: null }], { sync: true });
      this.targets.delete(targetId);
      this.deps.pools.noteTarget(targetId, undefined);
      await this.deps.blocks.remove(rec.fileId);
      this.deps.log.info({ target: targetId }, 'target discarded');
    });
  }

  /**
   * RetireShare: after a promote, deletes the share's former place on
   * `sourceBackend` and the snapshots based on it; for a share moved to
   * another array (ReleaseShare committed), deletes the share. Idempotent.
   */
  retire(shareId: string, sourceBackend: string): Promise<void> {
    return this.deps.lock.run(async () => {
      const share = this.deps.shares.get(shareId);
      if (!share) return;
      if (share.retiring && share.retiring.backend === sourceBackend) {
        const { fileId } = share.retiring;
        await this.deps.snapshots.deleteOfShare(shareId, fileId);
        delete share.retiring;
        this.deps.pools.noteShare(shareId);
        await this.deps.store.put(keys.share(shareId), share, { sync: true });
        await this.deps.blocks.remove(fileId);
        this.deps.log.info({ share: shareId, backend: sourceBackend }, 'former place retired');
        return;
      }
      if (share.backend !== sourceBackend) return;
      if (!share.movedAway) throw new ArrayError('WRONG_STATE', `share ${shareId} still lives on ${sourceBackend}: no target was promoted to be it and no committed release moved it away`);
      await this.deps.snapshots.deleteOfShare(shareId);
      await this.deps.removeShare(shareId);
      this.deps.log.info({ share: shareId, backend: sourceBackend }, 'share moved to another array retired');
    });
  }
}

function fail(message: string): never {
  throw new ArrayError('ARRAY_FAULT', message);
}
