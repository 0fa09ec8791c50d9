/**
 * The host data path of SimulatorService (snapshots, freezes, targets):
 * request checks and the two streaming RPCs, ReadSnapshot (server
 * streaming, a few reads ahead of the network, paced by the stream's
 * backpressure) and WriteTarget (client streaming, read as an async
 * iterable so that grpc-js pauses the sender while a piece is written).
 */
import type * as grpc from '@grpc/grpc-js';
import { crc32c } from '@node-rs/crc32';
import type { SimArray, ShareView } from './array.ts';
import { ArrayError } from './errors.ts';
import { bool, num, required, str, ts } from './fields.ts';
import type { Req } from './fields.ts';
import { MAX_LEASE_MS } from './leases.ts';
import { MAX_IO_BYTES } from './model.ts';
import type { SnapshotRecord } from './snapshots.ts';
import type { TargetPiece, TargetRecord } from './targets.ts';

/** The most extents or ranges one request may name. */
export const MAX_EXTENTS_PER_CALL = 100_000;

/** Snapshot reads kept in flight ahead of the stream: the disk works while gRPC sends. */
const READ_AHEAD = 8;

/** How service.ts registers handlers (each applies the service-level faults first). */
export interface HandlerKit {
  unary(method: string, fn: (req: Req) => Promise<unknown> | unknown): void;
  serverStream(method: string, fn: (req: Req, call: grpc.ServerWritableStream<Req, unknown>) => Promise<void>): void;
  clientStream(method: string, fn: (messages: AsyncIterable<Req>) => Promise<unknown>): void;
  shareOut(share: ShareView): unknown;
}

/** A caller-chosen object id: at most 128 characters of [A-Za-z0-9._-]. */
function objectId(req: Req, field: string): string {
  const id = required(req, field);
  if (!/^[A-Za-z0-9._-]{1,128}$/.test(id)) throw new ArrayError('BAD_REQUEST', `${field} must be at most 128 characters of [A-Za-z0-9._-]`);
  return id;
}

function extents(req: Req, field: string): Array<{ offset: number; length: number }> {
  const list = (req[field] ?? []) as Req[];
  if (list.length > MAX_EXTENTS_PER_CALL) throw new ArrayError('BAD_REQUEST', `${field} has ${list.length} entries; at most ${MAX_EXTENTS_PER_CALL}`);
  return list.map((e, i) => {
    const offset = num(e, 'offset');
    const length = num(e, 'length');
    if (!Number.isSafeInteger(offset) || offset < 0 || !Number.isSafeInteger(length) || length <= 0) {
      throw new ArrayError('BAD_REQUEST', `${field}[${i}] must have an offset of 0 or more and a length of 1 or more`);
    }
    return { offset, length };
  });
}

function snapshotOut(s: SnapshotRecord) {
  return {
    snapshotId: s.snapshotId,
    shareId: s.shareId,
    backend: s.place.backend,
    pool: s.place.pool,
    sizeBytes: s.sizeBytes,
    metadata: s.metadata,
    shareType: s.shareType,
    blockSizeBytes: s.blockSizeBytes,
    createdAt: ts(s.createdAtMs),
  };
}

function targetOut(t: TargetRecord) {
  return {
    targetId: t.targetId,
    backend: t.backend,
    pool: t.pool,
    sizeBytes: t.sizeBytes,
    metadata: t.metadata,
    shareType: t.shareType,
    promoted: t.promotedTo !== '',
    shareId: t.promotedTo,
  };
}

/** Resolves when the stream can take more, or was cancelled. */
export function writable(call: grpc.ServerWritableStream<Req, unknown>): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      call.off('drain', done);
      call.off('cancelled', done);
      resolve();
    };
    call.on('drain', done);
    call.on('cancelled', done);
  });
}

/** Registers the host data path's RPCs. */
export function addHostPathHandlers(kit: HandlerKit, array: SimArray): void {
  kit.unary('CreateSnapshot', async (req) => snapshotOut(await array.createSnapshot(required(req, 'share_id'), objectId(req, 'snapshot_id'))));
  kit.unary('DeleteSnapshot', async (req) => {
    await array.snapshots.delete(required(req, 'snapshot_id'));
    return {};
  });
  kit.unary('ListChangedExtents', (req) => {
    const maxExtents = num(req, 'max_extents');
    if (!(maxExtents >= 1 && maxExtents <= MAX_EXTENTS_PER_CALL)) throw new ArrayError('BAD_REQUEST', `max_extents must be 1 to ${MAX_EXTENTS_PER_CALL}, got ${maxExtents}`);
    const { extents: list, nextOffset, rec } = array.snapshots.changed(str(req, 'share_id'), str(req, 'base_snapshot_id'), required(req, 'snapshot_id'), num(req, 'start_offset'), maxExtents);
    return { extents: list, nextOffset, blockSizeBytes: rec.blockSizeBytes };
  });
  kit.serverStream('ReadSnapshot', async (req, call) => {
    const snapshotId = required(req, 'snapshot_id');
    const list = extents(req, 'extents');
    const { sizeBytes } = array.snapshots.get(snapshotId);
    for (const [i, e] of list.entries()) {
      if (e.offset + e.length > sizeBytes) throw new ArrayError('BAD_REQUEST', `extents[${i}] (${e.offset} + ${e.length}) is past the end of snapshot ${snapshotId} (${sizeBytes} bytes)`);
    }
    const pieces = (function* () {
      for (const e of list) for (let at = e.offset; at < e.offset + e.length; at += MAX_IO_BYTES) yield { offset: at, length: Math.min(MAX_IO_BYTES, e.offset + e.length - at) };
    })();
    const ahead: Array<{ offset: number; data: Promise<Buffer> }> = [];
    const fill = () => {
      while (ahead.length < READ_AHEAD) {
        const next = pieces.next();
        if (next.done) return;
        const data = array.snapshots.read(snapshotId, next.value.offset, next.value.length);
        // Reads still ahead when the caller cancels are dropped unread.
        data.catch(() => undefined);
        ahead.push({ offset: next.value.offset, data });
      }
    };
    fill();
    while (ahead.length > 0 && !call.cancelled) {
      const { offset, data: pending } = ahead.shift()!;
      const data = await pending;
      if (call.cancelled) return;
      fill();
      if (!call.write({ offset, data, crc32c: crc32c(data) })) await writable(call);
    }
  });

  kit.unary('FreezeShare', async (req) => {
    const leaseMs = num(req, 'lease_ms');
    if (!(leaseMs >= 1 && leaseMs <= MAX_LEASE_MS)) throw new ArrayError('BAD_REQUEST', `lease_ms must be 1 to ${MAX_LEASE_MS}, got ${leaseMs}`);
    await array.leases.freeze(required(req, 'share_id'), required(req, 'holder'), leaseMs, bool(req, 'wait'));
    return {};
  });
  kit.unary('ReleaseShare', async (req) => {
    await array.releaseShare(required(req, 'share_id'), required(req, 'holder'), bool(req, 'committed'));
    return {};
  });

  kit.unary('CreateTarget', async (req) => {
    const sizeBytes = num(req, 'size_bytes');
    if (!(sizeBytes > 0) || !Number.isSafeInteger(sizeBytes)) throw new ArrayError('BAD_REQUEST', 'size_bytes is required and must be greater than 0');
    const rec = await array.targets.create({
      targetId: objectId(req, 'target_id'),
      backend: required(req, 'backend'),
      pool: required(req, 'pool'),
      sizeBytes,
      metadata: (req.metadata ?? {}) as Record<string, string>,
      shareType: str(req, 'share_type'),
    });
    return targetOut(rec);
  });
  kit.clientStream('WriteTarget', async (messages) => {
    let targetId = '';
    const pieces = (async function* (): AsyncGenerator<TargetPiece> {
      for await (const msg of messages) {
        const id = required(msg, 'target_id');
        if (targetId && id !== targetId) throw new ArrayError('BAD_REQUEST', `target_id changed within the stream (${targetId}, then ${id})`);
        targetId = id;
        yield { offset: num(msg, 'offset'), data: (msg.data ?? Buffer.alloc(0)) as Buffer, crc32c: num(msg, 'crc32c') };
      }
    })();
    // The first message names the target; an empty stream writes nothing.
    const first = await pieces.next();
    if (first.done) return { writtenBytes: 0 };
    const all = (async function* () {
      yield first.value;
      yield* pieces;
    })();
    return { writtenBytes: await array.targets.write(targetId, all) };
  });
  kit.unary('ChecksumTarget', async (req) => ({ digests: await array.targets.checksum(required(req, 'target_id'), extents(req, 'ranges')) }));
  kit.unary('PromoteTarget', async (req) => {
    const share = await array.targets.promote(required(req, 'target_id'), required(req, 'share_id'));
    return kit.shareOut(array.getShare(share.shareId));
  });
  kit.unary('DiscardTarget', async (req) => {
    await array.targets.discard(required(req, 'target_id'));
    return {};
  });
  kit.unary('RetireShare', async (req) => {
    await array.targets.retire(required(req, 'share_id'), required(req, 'source_backend'));
    return {};
  });
}
