/**
 * The guard of the host data path: DataSource and DataDestination calls
 * bounded, translated and checked as every other driver call is (guard.ts
 * does the bounding and translating; this file knows the calls and what a
 * right answer is). Streams are guarded piece by piece: every ExtentData a
 * source sends is checked against the extents asked for and against its
 * CRC-32C before the mover sees it, and the whole stream has the call's
 * deadline.
 */
import { crc32c } from '@node-rs/crc32';
import {
  FerryError,
  MAX_EXTENT_DATA_BYTES,
  type ChangedExtents,
  type DataDestination,
  type DataSource,
  type Extent,
  type ExtentData,
  type ExtentDigest,
  type Logger,
  type MigrationSpec,
  type SnapshotInfo,
  type TargetInfo,
} from '../plugins/api/index.ts';
import { followAbort } from './abort-fanout.ts';
import type { GuardedDriver } from './guard.ts';
import { isObject, isWhole, need } from './shape.ts';
import { readFerryError } from './untrusted.ts';

/** What the mover passes with every data-path call; the guard adds the signal. */
export interface DataArgs {
  migration: MigrationSpec;
  log: Logger;
}

const isUint32 = (v: unknown): v is number => isWhole(v) && v <= 0xffff_ffff;
const ignore = (): void => undefined;

function checkExtents(v: unknown, what: string): Extent[] {
  need(Array.isArray(v), `${what} must be an array`);
  let end = 0;
  for (const [i, e] of (v as unknown[]).entries()) {
    need(isObject(e) && isWhole(e.offset) && isWhole(e.length) && e.length > 0, `${what}[${i}] must be { offset, length } with length > 0`);
    const x = e as unknown as Extent;
    need(x.offset >= end, `${what}[${i}] overlaps or precedes the extent before it`);
    end = x.offset + x.length;
  }
  return v as Extent[];
}

const check = {
  snapshot(v: unknown): SnapshotInfo {
    need(isObject(v), 'createSnapshot must return an object');
    const s = v as Record<string, unknown>;
    need(isWhole(s.sizeBytes) && (s.sizeBytes as number) > 0, 'sizeBytes must be a whole number > 0');
    need(isWhole(s.blockSizeBytes) && (s.blockSizeBytes as number) > 0, 'blockSizeBytes must be a whole number > 0');
    need(isObject(s.metadata) && Object.values(s.metadata).every((x) => typeof x === 'string'), 'metadata must be an object of strings');
    need(typeof s.shareType === 'string', 'shareType must be a string');
    return v as unknown as SnapshotInfo;
  },
  changed(startOffset: number) {
    return (v: unknown): ChangedExtents => {
      need(isObject(v), 'listChangedExtents must return an object');
      const r = v as Record<string, unknown>;
      const extents = checkExtents(r.extents, 'extents');
      need(isWhole(r.nextOffset) && (r.nextOffset as number) > startOffset, `nextOffset must be a whole number past startOffset ${startOffset}`);
      need(extents.every((e) => e.offset >= startOffset && e.offset + e.length <= (r.nextOffset as number)), 'every extent must lie between startOffset and nextOffset');
      return v as unknown as ChangedExtents;
    };
  },
  target(v: unknown): TargetInfo {
    need(isObject(v) && typeof v.promoted === 'boolean', 'createTarget must return { promoted: boolean }');
    return v as unknown as TargetInfo;
  },
  written(v: unknown): { writtenBytes: number } {
    need(isObject(v) && isWhole(v.writtenBytes), 'writeExtents must return { writtenBytes }');
    return v as { writtenBytes: number };
  },
  digests(ranges: Extent[]) {
    return (v: unknown): { digests: ExtentDigest[] } => {
      need(isObject(v) && Array.isArray(v.digests), 'flushTarget must return { digests: [] }');
      const digests = v.digests as unknown[];
      need(digests.length === ranges.length, `flushTarget answered ${digests.length} digests for ${ranges.length} ranges`);
      for (const [i, d] of digests.entries()) {
        const r = ranges[i]!;
        need(isObject(d) && d.offset === r.offset && d.length === r.length, `digests[${i}] must be for the range asked (${r.offset}+${r.length})`);
        need(isUint32((d as Record<string, unknown>).crc32c), `digests[${i}].crc32c must be an unsigned 32-bit number`);
      }
      return v as { digests: ExtentDigest[] };
    };
  },
};

/** The source half of the host path, guarded. */
export class GuardedDataSource {
  constructor(
    private readonly guard: GuardedDriver,
    private readonly source: DataSource,
    private readonly deadlineMs: number,
  ) {}

  private run<T>(name: keyof DataSource, args: DataArgs, fn: (signal: AbortSignal) => unknown, checker: (v: unknown) => T, outer?: AbortSignal): Promise<T> {
    return this.guard.call(name, this.deadlineMs, args.migration.id, fn, checker, outer);
  }

  createSnapshot(args: DataArgs & { snapshotId: string }, outer?: AbortSignal): Promise<SnapshotInfo> {
    return this.run('createSnapshot', args, (signal) => this.source.createSnapshot({ ...args, signal }), check.snapshot, outer);
  }

  deleteSnapshot(args: DataArgs & { snapshotId: string }, outer?: AbortSignal): Promise<void> {
    return this.run('deleteSnapshot', args, (signal) => this.source.deleteSnapshot({ ...args, signal }), ignore, outer);
  }

  listChangedExtents(args: DataArgs & { baseSnapshotId: string; snapshotId: string; startOffset: number; maxExtents: number }, outer?: AbortSignal): Promise<ChangedExtents> {
    return this.run('listChangedExtents', args, (signal) => this.source.listChangedExtents({ ...args, signal }), check.changed(args.startOffset), outer);
  }

  freezeWrites(args: DataArgs & { leaseMs: number }, outer?: AbortSignal): Promise<void> {
    return this.run('freezeWrites', args, (signal) => this.source.freezeWrites({ ...args, signal }), ignore, outer);
  }

  releaseWrites(args: DataArgs & { committed: boolean }, outer?: AbortSignal): Promise<void> {
    return this.run('releaseWrites', args, (signal) => this.source.releaseWrites({ ...args, signal }), ignore, outer);
  }

  retireSource(args: DataArgs, outer?: AbortSignal): Promise<void> {
    return this.run('retireSource', args, (signal) => this.source.retireSource({ ...args, signal }), ignore, outer);
  }

  /**
   * The bytes of `extents` in the snapshot, as checked pieces: each one
   * where the one before it ended, within the extents asked for, at most
   * MAX_EXTENT_DATA_BYTES, matching its CRC-32C (else DATA_LOSS); the
   * stream must cover every extent (else DRIVER_ERROR). The whole stream
   * is bounded by the data-path deadline; leaving the loop early stops the
   * driver's iterator.
   */
  async *readExtents(args: DataArgs & { snapshotId: string; extents: Extent[] }, outer?: AbortSignal): AsyncGenerator<ExtentData> {
    const name = 'readExtents';
    const controller = new AbortController();
    const timer = setTimeout(() => controller.abort(new FerryError('DEADLINE_EXCEEDED', `${this.guard.who} did not finish ${name} within ${this.deadlineMs} ms`)), this.deadlineMs);
    const unfollow = outer ? followAbort(outer, controller) : () => {};
    let iterator: AsyncIterator<ExtentData> | undefined;
    const fail = (err: unknown): FerryError => {
      if (controller.signal.aborted && err === controller.signal.reason) return readFerryError(err) ? (err as FerryError) : this.guard.abandoned(name, err);
      if (err instanceof FerryError && err.message.startsWith(this.guard.who)) return err;
      return this.guard.translate(err, name, args.migration.id);
    };
    const broken = (what: string) => new FerryError('DRIVER_ERROR', `${this.guard.who} returned an invalid ${name} piece: ${what}`);
    try {
      try {
        iterator = this.source.readExtents({ ...args, signal: controller.signal })[Symbol.asyncIterator]();
      } catch (err) {
        throw fail(err);
      }
      const aborted = new Promise<never>((_, reject) => {
        const onAbort = () => reject(controller.signal.reason);
        if (controller.signal.aborted) onAbort();
        else controller.signal.addEventListener('abort', onAbort, { once: true });
      });
      aborted.catch(() => undefined);
      for (const extent of args.extents) {
        let at = extent.offset;
        const end = extent.offset + extent.length;
        while (at < end) {
          let step: IteratorResult<ExtentData>;
          try {
            step = await Promise.race([iterator.next(), aborted]);
          } catch (err) {
            throw fail(err);
          }
          if (step.done) throw broken(`the stream ended at offset ${at}, before the extents asked for were covered`);
          const piece = step.value as unknown;
          let offset: unknown, data: unknown, crc: unknown;
          try {
            ({ offset, data, crc32c: crc } = piece as ExtentData);
          } catch {
            throw broken('reading it threw');
          }
          if (!(data instanceof Uint8Array) || data.length === 0 || data.length > MAX_EXTENT_DATA_BYTES) throw broken(`data must be 1 to ${MAX_EXTENT_DATA_BYTES} bytes`);
          if (offset !== at) throw broken(`it starts at ${String(offset)}, where ${at} was due`);
          if (at + data.length > end) throw broken(`it runs past the extent's end at ${end}`);
          if (!isUint32(crc)) throw broken('crc32c must be an unsigned 32-bit number');
          if (crc32c(data) !== crc) {
            throw new FerryError('DATA_LOSS', `${this.guard.who} sent ${data.length} bytes at offset ${at} of snapshot ${args.snapshotId} that do not match their CRC-32C`);
          }
          at += data.length;
          yield { offset: at - data.length, data, crc32c: crc };
        }
      }
    } finally {
      clearTimeout(timer);
      unfollow();
      // Stops the driver's stream whether we finished, broke out or failed; it must not throw at us.
      void Promise.resolve()
        .then(() => iterator?.return?.())
        .catch(() => undefined);
    }
  }
}

/** The destination half of the host path, guarded. */
export class GuardedDataDestination {
  constructor(
    private readonly guard: GuardedDriver,
    private readonly destination: DataDestination,
    private readonly deadlineMs: number,
  ) {}

  private run<T>(name: keyof DataDestination, args: DataArgs, fn: (signal: AbortSignal) => unknown, checker: (v: unknown) => T, outer?: AbortSignal): Promise<T> {
    return this.guard.call(name, this.deadlineMs, args.migration.id, fn, checker, outer);
  }

  createTarget(args: DataArgs & { targetId: string; sizeBytes: number; metadata: Record<string, string>; shareType: string }, outer?: AbortSignal): Promise<TargetInfo> {
    return this.run('createTarget', args, (signal) => this.destination.createTarget({ ...args, signal }), check.target, outer);
  }

  /** Writes the pieces `data` yields (the mover's own, already checked). */
  writeExtents(args: DataArgs & { targetId: string; data: AsyncIterable<ExtentData> }, outer?: AbortSignal): Promise<{ writtenBytes: number }> {
    return this.run('writeExtents', args, (signal) => this.destination.writeExtents({ ...args, signal }), check.written, outer);
  }

  flushTarget(args: DataArgs & { targetId: string; ranges: Extent[] }, outer?: AbortSignal): Promise<{ digests: ExtentDigest[] }> {
    return this.run('flushTarget', args, (signal) => this.destination.flushTarget({ ...args, signal }), check.digests(args.ranges), outer);
  }

  promoteTarget(args: DataArgs & { targetId: string }, outer?: AbortSignal): Promise<void> {
    return this.run('promoteTarget', args, (signal) => this.destination.promoteTarget({ ...args, signal }), ignore, outer);
  }

  discardTarget(args: DataArgs & { targetId: string }, outer?: AbortSignal): Promise<void> {
    return this.run('discardTarget', args, (signal) => this.destination.discardTarget({ ...args, signal }), ignore, outer);
  }
}
