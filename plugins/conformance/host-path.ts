/**
 * A host-path migration the check drives by calling the drivers' data-path
 * halves itself, through ferryd's guard (so every piece a source sends is
 * checked for its place and CRC-32C, DATA_LOSS when it does not match), in
 * the mover's order: snapshot, target, copy what changed, freeze, last
 * snapshot, promote, release, retire. It remembers what it made, so that
 * clean-up removes it as ferryd's cancel would: release uncommitted,
 * discard the target, delete the snapshots (or, past the commit, retire
 * the source).
 */
import { crc32c } from '@node-rs/crc32';
import type { GuardedDataDestination, GuardedDataSource } from '../../host/guard-data.ts';
import type { GuardedDriver } from '../../host/guard.ts';
import { silentLog } from '../../lib/log.ts';
import { MAX_EXTENT_DATA_BYTES, type Extent, type ExtentData, type MigrationSpec, type SnapshotInfo } from '../api/index.ts';
import { describeError, expect, fail } from './failure.ts';

/** How many bytes one read, write and flush of a copy carries (the mover's default batch). */
const BATCH_BYTES = 4 * 1024 * 1024;

/** The pieces of `data` at `offset`, each at most MAX_EXTENT_DATA_BYTES, with its CRC-32C. */
export function piecesOf(offset: number, data: Uint8Array): ExtentData[] {
  const pieces: ExtentData[] = [];
  for (let at = 0; at < data.length; at += MAX_EXTENT_DATA_BYTES) {
    const bytes = data.subarray(at, Math.min(data.length, at + MAX_EXTENT_DATA_BYTES));
    pieces.push({ offset: offset + at, data: bytes, crc32c: crc32c(bytes) });
  }
  return pieces;
}

/** An AsyncIterable over `pieces`, as writeExtents takes them. */
async function* stream(pieces: readonly ExtentData[]): AsyncGenerator<ExtentData> {
  for (const p of pieces) yield p;
}

/** The total length of `extents`. */
export function extentBytes(extents: readonly Extent[]): number {
  return extents.reduce((n, e) => n + e.length, 0);
}

/** A migration driven through the data-path halves of a source and a destination driver. */
export class HostMigration {
  /** Snapshot ids created and not deleted since. */
  readonly snapshots = new Set<string>();
  /** Whether createTarget was ever answered (clean-up discards it). */
  targetMade = false;
  /** Whether freezeWrites was ever answered and no releaseWrites since. */
  frozen = false;
  /** Whether promoteTarget was ever answered: the share lives at the destination now. */
  committed = false;
  private retired = false;
  private readonly log = silentLog();

  constructor(
    readonly spec: MigrationSpec,
    private readonly sourceDriver: GuardedDriver,
    private readonly destinationDriver: GuardedDriver,
  ) {}

  /** The source half, guarded; fails the check if the driver has none. */
  get source(): GuardedDataSource {
    const s = this.sourceDriver.dataSource;
    return s ?? fail(`the source backend's driver (${this.spec.source.backend}) has no dataSource any more`, 'dataSource');
  }

  /** The destination half, guarded; fails the check if the driver has none. */
  get destination(): GuardedDataDestination {
    const d = this.destinationDriver.dataDestination;
    return d ?? fail(`the destination backend's driver (${this.spec.destination.backend}) has no dataDestination any more`, 'dataDestination');
  }

  /** What every data-path call is given (the guard adds the signal). */
  get args() {
    return { migration: this.spec, log: this.log };
  }

  /** The id ferryd gives the snapshot of pass `n`. */
  snapshotId(n: number): string {
    return `${this.spec.id}-s${n}`;
  }

  /** The id ferryd gives the target. */
  get targetId(): string {
    return `${this.spec.id}-t`;
  }

  /** Makes a driver call, failing the check with `label` as the call that broke. */
  async call<T>(label: string, fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      return fail(`${label} threw ${describeError(err)}`, label);
    }
  }

  /** createSnapshot of pass `n`. */
  async snapshot(n: number, label = `createSnapshot(${this.snapshotId(n)})`): Promise<SnapshotInfo> {
    const snapshotId = this.snapshotId(n);
    const info = await this.call(label, () => this.source.createSnapshot({ ...this.args, snapshotId }));
    this.snapshots.add(snapshotId);
    return info;
  }

  /** deleteSnapshot of pass `n`. */
  async deleteSnapshot(n: number, label = `deleteSnapshot(${this.snapshotId(n)})`): Promise<void> {
    const snapshotId = this.snapshotId(n);
    await this.call(label, () => this.source.deleteSnapshot({ ...this.args, snapshotId }));
    this.snapshots.delete(snapshotId);
  }

  /** Every changed extent between pass `base` (0: none, a whole-share listing) and pass `n`, page by page of `maxExtents`. */
  async changed(base: number, n: number, sizeBytes: number, maxExtents = 64): Promise<Extent[]> {
    const baseSnapshotId = base === 0 ? '' : this.snapshotId(base);
    const snapshotId = this.snapshotId(n);
    const label = `listChangedExtents(${baseSnapshotId || "''"}, ${snapshotId})`;
    const all: Extent[] = [];
    for (let startOffset = 0; startOffset < sizeBytes; ) {
      const page = await this.call(label, () => this.source.listChangedExtents({ ...this.args, baseSnapshotId, snapshotId, startOffset, maxExtents }));
      expect(page.extents.length <= maxExtents, `${label} from offset ${startOffset} answered ${page.extents.length} extents; at most ${maxExtents} were asked for`, label);
      expect(page.nextOffset <= sizeBytes, `${label} from offset ${startOffset} answered nextOffset ${page.nextOffset}, past the share's end at ${sizeBytes}`, label);
      const previous = all.at(-1);
      const first = page.extents[0];
      if (previous && first) expect(first.offset >= previous.offset + previous.length, `${label}: the page from offset ${startOffset} overlaps the page before it`, label);
      expect(page.extents.every((e) => e.offset + e.length <= sizeBytes), `${label} lists an extent past the share's end at ${sizeBytes}`, label);
      all.push(...page.extents);
      startOffset = page.nextOffset;
    }
    return all;
  }

  /** The bytes of `extents` of the snapshot of pass `n`, concatenated in order. */
  async read(n: number, extents: readonly Extent[], label = `readExtents(${this.snapshotId(n)})`): Promise<Buffer> {
    const snapshotId = this.snapshotId(n);
    const out: Buffer[] = [];
    await this.call(label, async () => {
      for await (const piece of this.source.readExtents({ ...this.args, snapshotId, extents: [...extents] })) out.push(Buffer.from(piece.data));
    });
    return Buffer.concat(out);
  }

  /** createTarget of the share's size, as the mover makes it from the first snapshot. */
  async createTarget(info: Pick<SnapshotInfo, 'sizeBytes' | 'metadata' | 'shareType'>, label = `createTarget(${this.targetId})`): Promise<{ promoted: boolean }> {
    const r = await this.call(label, () =>
      this.destination.createTarget({ ...this.args, targetId: this.targetId, sizeBytes: info.sizeBytes, metadata: this.spec.preserveMetadata ? info.metadata : {}, shareType: this.spec.newShareType || info.shareType }),
    );
    this.targetMade = true;
    return r;
  }

  /** writeExtents of `pieces`. */
  async write(pieces: readonly ExtentData[], label = `writeExtents(${this.targetId})`): Promise<{ writtenBytes: number }> {
    return this.call(label, () => this.destination.writeExtents({ ...this.args, targetId: this.targetId, data: stream(pieces) }));
  }

  /** flushTarget of `ranges`. */
  async flush(ranges: readonly Extent[], label = `flushTarget(${this.targetId})`) {
    return this.call(label, () => this.destination.flushTarget({ ...this.args, targetId: this.targetId, ranges: [...ranges] }));
  }

  /**
   * Copies what changed between pass `base` and pass `n` to the target, in
   * batches: read, write, flush, and each range's digest compared with the
   * CRC-32C of the bytes sent. Returns the bytes copied.
   */
  async copy(base: number, n: number, sizeBytes: number): Promise<number> {
    const extents = await this.changed(base, n, sizeBytes);
    let copied = 0;
    for (let i = 0; i < extents.length; ) {
      const batch: Extent[] = [];
      let bytes = 0;
      // Extents split at batch size, so that one batch never holds more than BATCH_BYTES.
      while (i < extents.length && bytes < BATCH_BYTES) {
        const e = extents[i]!;
        const take = Math.min(e.length, BATCH_BYTES - bytes);
        batch.push({ offset: e.offset, length: take });
        bytes += take;
        if (take === e.length) i++;
        else extents[i] = { offset: e.offset + take, length: e.length - take };
      }
      const data = await this.read(n, batch);
      const pieces: ExtentData[] = [];
      let at = 0;
      for (const e of batch) {
        pieces.push(...piecesOf(e.offset, data.subarray(at, at + e.length)));
        at += e.length;
      }
      await this.write(pieces);
      const { digests } = await this.flush(batch);
      at = 0;
      for (const [k, e] of batch.entries()) {
        const sent = crc32c(data.subarray(at, at + e.length));
        at += e.length;
        expect(digests[k]!.crc32c === sent, `flushTarget(${this.targetId}) answered CRC-32C ${digests[k]!.crc32c} for ${e.offset}+${e.length}, which was written with ${sent}`, `flushTarget(${this.targetId})`);
      }
      copied += bytes;
    }
    return copied;
  }

  /** freezeWrites for `leaseMs`. */
  async freeze(leaseMs: number, label = 'freezeWrites'): Promise<void> {
    await this.call(label, () => this.source.freezeWrites({ ...this.args, leaseMs }));
    this.frozen = true;
  }

  /** releaseWrites. */
  async release(committed: boolean, label = `releaseWrites(committed ${committed})`): Promise<void> {
    await this.call(label, () => this.source.releaseWrites({ ...this.args, committed }));
    this.frozen = false;
  }

  /** promoteTarget: the commit point. */
  async promote(label = `promoteTarget(${this.targetId})`): Promise<void> {
    await this.call(label, () => this.destination.promoteTarget({ ...this.args, targetId: this.targetId }));
    this.committed = true;
  }

  /** retireSource. */
  async retire(label = 'retireSource'): Promise<void> {
    await this.call(label, () => this.source.retireSource(this.args));
    this.retired = true;
    this.snapshots.clear();
  }

  /** discardTarget. */
  async discard(label = `discardTarget(${this.targetId})`): Promise<void> {
    await this.call(label, () => this.destination.discardTarget({ ...this.args, targetId: this.targetId }));
    this.targetMade = false;
  }

  /** Removes what this migration made, as ferryd's cancel does (or finishes the commit, past it). Throws what went wrong. */
  async cleanup(): Promise<void> {
    if (this.committed) {
      if (this.frozen) await this.source.releaseWrites({ ...this.args, committed: true });
      if (!this.retired) await this.source.retireSource(this.args);
      return;
    }
    if (this.frozen) await this.source.releaseWrites({ ...this.args, committed: false });
    if (this.targetMade) await this.destination.discardTarget({ ...this.args, targetId: this.targetId });
    for (const snapshotId of this.snapshots) await this.source.deleteSnapshot({ ...this.args, snapshotId });
  }
}
