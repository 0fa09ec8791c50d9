/**
 * The host data path of the simulator's driver: the contract's `dataSource`
 * and `dataDestination` on the array's snapshot, freeze and target RPCs.
 * Every id comes from ferryd (`<migration>-s<pass>`, `<migration>-t`) and is
 * passed through: the array is idempotent on it, so a call repeated after a
 * crash finds what the first one made. The freeze's holder is the migration
 * id, so only this migration renews or releases it.
 */
import { FerryError, MAX_EXTENT_DATA_BYTES } from '@ferry/driver-api';
import type {
  ChangedExtents,
  DataCall,
  DataDestination,
  DataSource,
  Extent,
  ExtentData,
  ExtentDigest,
  SnapshotInfo,
  TargetInfo,
} from '@ferry/driver-api';
import type { ArrayClient } from './client.ts';
import type { ChecksumTargetResponse__Output } from './gen/ferry/simulator/v1/ChecksumTargetResponse.ts';
import type { ListChangedExtentsResponse__Output } from './gen/ferry/simulator/v1/ListChangedExtentsResponse.ts';
import type { Snapshot__Output as ArraySnapshot } from './gen/ferry/simulator/v1/Snapshot.ts';
import type { SnapshotData__Output } from './gen/ferry/simulator/v1/SnapshotData.ts';
import type { Target__Output as ArrayTarget } from './gen/ferry/simulator/v1/Target.ts';
import type { WriteTargetResponse__Output } from './gen/ferry/simulator/v1/WriteTargetResponse.ts';

/** The source half, for shares of this driver's backend. */
export class SimDataSource implements DataSource {
  constructor(
    private readonly array: ArrayClient,
    private readonly backend: string,
  ) {}

  async createSnapshot(call: DataCall & { snapshotId: string }): Promise<SnapshotInfo> {
    const { migration, signal } = call;
    const snap = await this.array
      .call<ArraySnapshot>('CreateSnapshot', { shareId: migration.source.shareId, snapshotId: call.snapshotId }, signal)
      .catch((err: unknown) => {
        if (err instanceof FerryError && err.code === 'NOT_FOUND') {
          throw new FerryError('NOT_FOUND', `share ${migration.source.shareId} not found on backend ${this.backend}`, { cause: err });
        }
        throw err;
      });
    return { sizeBytes: snap.sizeBytes, metadata: { ...snap.metadata }, shareType: snap.shareType, blockSizeBytes: snap.blockSizeBytes };
  }

  async deleteSnapshot(call: DataCall & { snapshotId: string }): Promise<void> {
    await this.array.call('DeleteSnapshot', { snapshotId: call.snapshotId }, call.signal);
  }

  async listChangedExtents(call: DataCall & { baseSnapshotId: string; snapshotId: string; startOffset: number; maxExtents: number }): Promise<ChangedExtents> {
    const res = await this.array.call<ListChangedExtentsResponse__Output>(
      'ListChangedExtents',
      {
        shareId: call.migration.source.shareId,
        baseSnapshotId: call.baseSnapshotId,
        snapshotId: call.snapshotId,
        startOffset: call.startOffset,
        // The array answers at most 100000 a page; asking for more is asking for its largest page.
        maxExtents: Math.min(call.maxExtents, 100_000),
      },
      call.signal,
    );
    return { extents: res.extents.map((e) => ({ offset: e.offset, length: e.length })), nextOffset: res.nextOffset };
  }

  async *readExtents(call: DataCall & { snapshotId: string; extents: Extent[] }): AsyncIterable<ExtentData> {
    // The array's pieces are at most 1 MiB, which is MAX_EXTENT_DATA_BYTES: they pass through as they come.
    for await (const piece of this.array.stream<SnapshotData__Output>('ReadSnapshot', { snapshotId: call.snapshotId, extents: call.extents }, call.signal)) {
      if (piece.data.length > MAX_EXTENT_DATA_BYTES) throw new FerryError('DRIVER_ERROR', `the array sent ${piece.data.length} bytes in one piece; at most ${MAX_EXTENT_DATA_BYTES}`);
      yield { offset: piece.offset, data: piece.data, crc32c: piece.crc32c };
    }
  }

  async freezeWrites(call: DataCall & { leaseMs: number }): Promise<void> {
    const { migration } = call;
    await this.array.call('FreezeShare', { shareId: migration.source.shareId, holder: migration.id, leaseMs: call.leaseMs, wait: migration.nondisruptive }, call.signal);
  }

  async releaseWrites(call: DataCall & { committed: boolean }): Promise<void> {
    const { migration } = call;
    await this.array.call('ReleaseShare', { shareId: migration.source.shareId, holder: migration.id, committed: call.committed }, call.signal);
  }

  async retireSource(call: DataCall): Promise<void> {
    // The array deletes the share's former place on this backend and the snapshots based on it (this migration's).
    await this.array.call('RetireShare', { shareId: call.migration.source.shareId, sourceBackend: this.backend }, call.signal);
  }
}

/** The destination half, for targets in this driver's backend. */
export class SimDataDestination implements DataDestination {
  constructor(
    private readonly array: ArrayClient,
    private readonly backend: string,
  ) {}

  async createTarget(call: DataCall & { targetId: string; sizeBytes: number; metadata: Record<string, string>; shareType: string }): Promise<TargetInfo> {
    const target = await this.array.call<ArrayTarget>(
      'CreateTarget',
      { targetId: call.targetId, backend: this.backend, pool: call.migration.destination.pool, sizeBytes: call.sizeBytes, metadata: call.metadata, shareType: call.shareType },
      call.signal,
    );
    return { promoted: target.promoted };
  }

  async writeExtents(call: DataCall & { targetId: string; data: AsyncIterable<ExtentData> }): Promise<{ writtenBytes: number }> {
    const { targetId } = call;
    const messages = (async function* () {
      for await (const piece of call.data) yield { targetId, offset: piece.offset, data: piece.data, crc32c: piece.crc32c };
    })();
    const res = await this.array.sendStream<WriteTargetResponse__Output>('WriteTarget', messages, call.signal);
    return { writtenBytes: res.writtenBytes };
  }

  async flushTarget(call: DataCall & { targetId: string; ranges: Extent[] }): Promise<{ digests: ExtentDigest[] }> {
    const res = await this.array.call<ChecksumTargetResponse__Output>('ChecksumTarget', { targetId: call.targetId, ranges: call.ranges }, call.signal);
    return { digests: res.digests.map((d) => ({ offset: d.offset, length: d.length, crc32c: d.crc32c })) };
  }

  async promoteTarget(call: DataCall & { targetId: string }): Promise<void> {
    await this.array.call('PromoteTarget', { targetId: call.targetId, shareId: call.migration.source.shareId }, call.signal);
  }

  async discardTarget(call: DataCall & { targetId: string }): Promise<void> {
    await this.array.call('DiscardTarget', { targetId: call.targetId }, call.signal);
  }
}
