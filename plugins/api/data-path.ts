/**
 * The host data path of the driver contract: the optional halves a driver
 * offers (Driver.dataSource, Driver.dataDestination) so that ferryd can move
 * a share between arrays that cannot reach each other. Part of the
 * specification in driver.ts.
 */
import type { MigrationCall } from './driver.ts';

// The host data path: ferryd moves a share between two backends whose
// arrays cannot reach each other, like a host that mounts both and copies,
// but live. Phase 1 takes point-in-time snapshots of the source and copies
// what changed between them (snapshot 1 whole, then each delta) until the
// delta fits the cutover window. The cutover freezes the source, snapshots
// it a last time, copies and verifies that delta, promotes the destination's
// target to be the share (the commit point), releases the writes (which now
// land on the destination) and retires the source. Modelled on EBS direct
// APIs, Ceph `rbd diff --from-snap`, VMware changed block tracking and ZFS
// incremental send.
//
// Rules every data-path call keeps, as the rest of the contract does:
// - Every object is named by an id ferryd derives from the migration id
//   (snapshot `<migration>-s<pass>`, target `<migration>-t`). A call is
//   idempotent: repeated after a crash, it finds what the first call made
//   and answers as the first did; deleting what is gone is success.
// - Offsets and lengths are in bytes; every extent lies within the share.
// - Every ExtentData carries the CRC-32C (Castagnoli) of its bytes; the
//   receiver checks it before it uses the bytes and throws DATA_LOSS when
//   it does not match.
// - The call's `migration.dataPath` is `host`; `signal` aborts at the
//   call's deadline or at shutdown, as for every call.

/** A byte range of a share. */
export interface Extent {
  offset: number;
  length: number;
}

/** Bytes of a share at an offset, with their CRC-32C. At most MAX_EXTENT_DATA_BYTES. */
export interface ExtentData {
  offset: number;
  data: Uint8Array;
  /** CRC-32C (Castagnoli, as iSCSI and ext4 use it) of `data`, as an unsigned 32-bit number. */
  crc32c: number;
}

/** The most bytes one ExtentData carries (it must fit a 4 MiB gRPC message with room to spare). */
export const MAX_EXTENT_DATA_BYTES = 1024 * 1024;

/** What every data-path call receives. */
export type DataCall = Omit<MigrationCall, 'checkpoint'>;

/** A snapshot of the source share. */
export interface SnapshotInfo {
  /** The share's size when the snapshot was taken. */
  sizeBytes: number;
  /** The share's metadata then (what the target is created with when preserve_metadata is asked). */
  metadata: Record<string, string>;
  /** The share's type then. */
  shareType: string;
  /** The unit the array tracks changes in; changed extents are multiples of it (except at the share's end). */
  blockSizeBytes: number;
}

/** One page of changed extents. */
export interface ChangedExtents {
  /** In increasing offset order, not overlapping, none empty. */
  extents: Extent[];
  /** Where the next page starts; equal to the share's size when this was the last page. */
  nextOffset: number;
}

/**
 * The source half of the host data path, for the share `migration.source`.
 * Writes to the share go on while it is used (the share stays writable
 * unless `migration.writable` is false, when the driver may refuse writes
 * from the first snapshot on), except while frozen.
 */
export interface DataSource {
  /**
   * Take a point-in-time snapshot of the share named `snapshotId`: what
   * any later read of it returns is the share's content at one instant
   * between the call and its answer, whatever is written meanwhile, until
   * it is deleted. Durable once answered (it survives a restart of the
   * array). Idempotent: a snapshot of that id that exists is answered
   * again, not taken again.
   */
  createSnapshot(call: DataCall & { snapshotId: string }): Promise<SnapshotInfo>;

  /** Delete a snapshot. Idempotent: one that does not exist is success. */
  deleteSnapshot(call: DataCall & { snapshotId: string }): Promise<void>;

  /**
   * The extents that may differ between snapshot `baseSnapshotId` and
   * snapshot `snapshotId` (both of this share, the base taken first), from
   * `startOffset` on, at most `maxExtents` of them. With `baseSnapshotId`
   * '' every extent that may hold data (a whole-share copy). Must cover
   * every byte written between the two snapshots; may cover more (a
   * tracking block's worth). Read-only. NOT_FOUND when a snapshot is gone.
   */
  listChangedExtents(call: DataCall & { baseSnapshotId: string; snapshotId: string; startOffset: number; maxExtents: number }): Promise<ChangedExtents>;

  /**
   * The bytes of `extents` in snapshot `snapshotId`, in the order asked,
   * as ExtentData pieces of at most MAX_EXTENT_DATA_BYTES that together
   * cover each extent exactly. Read-only; NOT_FOUND when the snapshot is
   * gone. ferryd stops reading (breaks out of the loop) when it has what
   * it needs or the signal aborts.
   */
  readExtents(call: DataCall & { snapshotId: string; extents: Extent[] }): AsyncIterable<ExtentData>;

  /**
   * Freeze writes to the share for `leaseMs` from now: a write that
   * arrives while frozen waits when `migration.nondisruptive` is true,
   * else fails; a write in flight finishes before this answers, so a
   * snapshot taken after it is the share's final content. Repeating the
   * call renews the lease. When the lease ends without a release the share
   * thaws by itself, as if released uncommitted: a dead ferryd never leaves
   * a share frozen.
   */
  freezeWrites(call: DataCall & { leaseMs: number }): Promise<void>;

  /**
   * End the freeze. `committed` false: the migration rolled back and the
   * share goes on where it is. `committed` true: the destination's target
   * was promoted to be the share; the waiting writes go to it (or fail, if
   * the array cannot redirect them and `migration.nondisruptive` is false).
   * Idempotent; releasing a share that is not frozen is success.
   */
  releaseWrites(call: DataCall & { committed: boolean }): Promise<void>;

  /**
   * After the commit: delete the source's copy of the share and every
   * snapshot of this migration. Idempotent. Only called once the target
   * was promoted.
   */
  retireSource(call: DataCall): Promise<void>;
}

/** What createTarget answers. */
export interface TargetInfo {
  /** True when the target was already promoted to be the share (the call repeats one from before a crash that committed). */
  promoted: boolean;
}

/** A digest of a range of a target, as flushTarget answers it. */
export interface ExtentDigest extends Extent {
  /** CRC-32C of the range's bytes as the target holds them, durably. */
  crc32c: number;
}

/**
 * The destination half of the host data path, in `migration.destination`.
 * A target is a share-to-be: invisible to clients until promoted, then the
 * share itself, under the source's share id.
 */
export interface DataDestination {
  /**
   * Create the target `targetId` of `sizeBytes` in the destination pool,
   * with `metadata` and `shareType` (the share's own, or
   * `migration.newShareType` when set). Its bytes read as zeros until
   * written. Idempotent: a target of that id is answered again (with
   * `promoted` true when it was promoted since). RESOURCE_EXHAUSTED when
   * the pool lacks room.
   */
  createTarget(call: DataCall & { targetId: string; sizeBytes: number; metadata: Record<string, string>; shareType: string }): Promise<TargetInfo>;

  /**
   * Write `data` to the target, piece by piece in the order given, each
   * checked against its CRC-32C first (DATA_LOSS when one does not match:
   * nothing of that piece is written). Answers the bytes written once they
   * are all durable. Writing the same bytes again is harmless. Calls for
   * disjoint extents of one target may run at once (ferryd writes several
   * batches of a pass concurrently).
   */
  writeExtents(call: DataCall & { targetId: string; data: AsyncIterable<ExtentData> }): Promise<{ writtenBytes: number }>;

  /** The CRC-32C of each range as the target durably holds it, in the order asked. Read-only. */
  flushTarget(call: DataCall & { targetId: string; ranges: Extent[] }): Promise<{ digests: ExtentDigest[] }>;

  /**
   * The commit point: the target becomes the share `migration.source.shareId`
   * on this backend, at once and wholly. Called only while the source is
   * frozen and every byte of its last snapshot is verified on the target.
   * Idempotent: promoting a promoted target is success.
   */
  promoteTarget(call: DataCall & { targetId: string }): Promise<void>;

  /**
   * Delete the target and what was written to it. Idempotent: one that
   * does not exist is success. FAILED_PRECONDITION for a promoted target
   * (it is the share now).
   */
  discardTarget(call: DataCall & { targetId: string }): Promise<void>;
}
