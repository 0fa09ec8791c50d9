/**
 * The bridge's host data path: the twelve data-path RPCs of DriverService
 * served by a module driver's `dataSource` and `dataDestination` members.
 *
 * - A backend whose driver lacks the member answers UNIMPLEMENTED.
 * - Every request is checked before the driver sees it (REQUIRED fields
 *   set, lengths above 0, pieces of 1 byte to 1 MiB): INVALID_ARGUMENT
 *   naming the field, as driver.proto promises a driver.
 * - ReadExtents writes as the client reads (it waits for 'drain'), checks
 *   the module's pieces against the extents asked, and stops the module's
 *   iterator (its `return()`) when the client cancels or a piece is bad.
 * - WriteExtents hands the module an AsyncIterable over the incoming
 *   messages, pulled as the module reads; a client that cancels ends it
 *   with an error.
 */
import type * as grpc from '@grpc/grpc-js';
import { FerryError, MAX_EXTENT_DATA_BYTES, type DataCall, type DataDestination, type DataSource, type Driver, type Extent, type ExtentData } from '../plugins/api/index.ts';
import type { ExtentData as WireExtentDataIn } from '../build/types/ferry/driver/v1/ExtentData.ts';
import type { Extent__Output as WireExtent } from '../build/types/ferry/driver/v1/Extent.ts';
import type { MigrationSpec__Output as WireSpec } from '../build/types/ferry/driver/v1/MigrationSpec.ts';
import type { WriteExtentsRequest__Output as WriteMessage } from '../build/types/ferry/driver/v1/WriteExtentsRequest.ts';
import type { Log } from '../lib/log.ts';
import { clientStream, serverStream, unary } from '../lib/rpc.ts';
import { changedToWire, digestToWire, driverStatusMapper, ExtentCursor, extentDataFromWire, extentDataToWire, extentFromWire, snapshotToWire, specFromWire } from './driver-wire.ts';

/** A server call of any shape: it tells when the client cancels. */
export interface AnyCall {
  readonly cancelled: boolean;
  once(event: 'cancelled', listener: () => void): unknown;
  on(event: 'cancelled', listener: () => void): unknown;
}

/** What the data-path handlers need of the bridge. */
export interface BridgeContext {
  /** The driver of an open backend; throws FerryError. */
  driverOf(backend: string): Promise<Driver>;
  /** Aborts when the client cancels the call or its deadline passes. */
  signalOf(call: AnyCall): AbortSignal;
  log: Log;
}

/** The fields every data-path request begins with. */
interface Head {
  backend: string;
  migration: WireSpec | null;
}

/** INVALID_ARGUMENT naming the method and the field. */
const invalid = (method: string, what: string) => new FerryError('INVALID_ARGUMENT', `${method}: ${what}`);

function required(method: string, field: string, value: string): string {
  if (value === '') throw invalid(method, `${field} is REQUIRED`);
  return value;
}

function positive(method: string, field: string, value: number): number {
  if (!(value > 0)) throw invalid(method, `${field} is REQUIRED and must be greater than 0`);
  return value;
}

/** Extents of a request: at least one, each longer than 0 and within what a JS number holds. */
function extentsOf(method: string, field: string, wire: WireExtent[]): Extent[] {
  if (wire.length === 0) throw invalid(method, `${field} is REQUIRED: at least one`);
  return wire.map((e, i) => {
    if (!(e.length > 0)) throw invalid(method, `${field}[${i}].length must be greater than 0`);
    if (!Number.isSafeInteger(e.offset + e.length)) throw invalid(method, `${field}[${i}] ends past 2^53 bytes`);
    return extentFromWire(e);
  });
}

/** One piece of a request: 1 byte to 1 MiB. */
function pieceOf(method: string, field: string, wire: WriteMessage['extent']): ExtentData {
  if (!wire) throw invalid(method, `${field} is REQUIRED`);
  if (wire.data.length === 0 || wire.data.length > MAX_EXTENT_DATA_BYTES) throw invalid(method, `${field}.data must be 1 to ${MAX_EXTENT_DATA_BYTES} bytes, got ${wire.data.length}`);
  return extentDataFromWire(wire);
}

/** Resolves when the client cancels `call` (at once if it already has). */
function cancellation(call: AnyCall): Promise<typeof CANCELLED> {
  return new Promise((resolve) => (call.cancelled ? resolve(CANCELLED) : call.once('cancelled', () => resolve(CANCELLED))));
}
const CANCELLED = Symbol('cancelled');

/** The DriverService handlers of the data path. */
export function dataPathHandlers(bridge: BridgeContext): grpc.UntypedServiceImplementation {
  const { log } = bridge;
  /** The member `part` of the request's backend, and the call it receives; throws FerryError. */
  async function open<P extends 'dataSource' | 'dataDestination'>(method: string, part: P, request: Head, call: AnyCall): Promise<{ member: NonNullable<Driver[P]>; dataCall: DataCall }> {
    required(method, 'backend', request.backend);
    if (!request.migration) throw invalid(method, 'migration is REQUIRED');
    const migration = specFromWire(request.migration);
    const driver = await bridge.driverOf(request.backend);
    const member = driver[part];
    if (!member) {
      const feature = part === 'dataSource' ? 'data_source' : 'data_destination';
      throw new FerryError('UNIMPLEMENTED', `${method}: backend ${request.backend} does not serve ${feature} (its driver has no ${part})`);
    }
    return { member: member as NonNullable<Driver[P]>, dataCall: { migration, signal: bridge.signalOf(call), log: log.child({ backend: request.backend, migration: migration.id }) } };
  }

  /** A unary data-path handler over one member. */
  function handler<Req extends Head, P extends 'dataSource' | 'dataDestination'>(
    method: string,
    part: P,
    fn: (member: NonNullable<Driver[P]>, request: Req, dataCall: DataCall) => Promise<unknown>,
  ): grpc.handleUnaryCall<Req, unknown> {
    return unary<Req, unknown>(method, log, driverStatusMapper, async (request, call) => {
      const { member, dataCall } = await open(method, part, request, call);
      return fn(member, request, dataCall);
    });
  }
  const source = <Req extends Head>(method: string, fn: (s: DataSource, r: Req, c: DataCall) => Promise<unknown>) => handler<Req, 'dataSource'>(method, 'dataSource', fn);
  const destination = <Req extends Head>(method: string, fn: (d: DataDestination, r: Req, c: DataCall) => Promise<unknown>) => handler<Req, 'dataDestination'>(method, 'dataDestination', fn);

  return {
    CreateSnapshot: source<Head & { snapshotId: string }>('CreateSnapshot', async (s, r, c) => snapshotToWire(await s.createSnapshot({ ...c, snapshotId: required('CreateSnapshot', 'snapshot_id', r.snapshotId) }))),
    DeleteSnapshot: source<Head & { snapshotId: string }>('DeleteSnapshot', async (s, r, c) => {
      await s.deleteSnapshot({ ...c, snapshotId: required('DeleteSnapshot', 'snapshot_id', r.snapshotId) });
      return {};
    }),
    ListChangedExtents: source<Head & { baseSnapshotId: string; snapshotId: string; startOffset: number; maxExtents: number }>('ListChangedExtents', async (s, r, c) => {
      const snapshotId = required('ListChangedExtents', 'snapshot_id', r.snapshotId);
      const maxExtents = positive('ListChangedExtents', 'max_extents', r.maxExtents);
      return changedToWire(await s.listChangedExtents({ ...c, baseSnapshotId: r.baseSnapshotId, snapshotId, startOffset: r.startOffset, maxExtents }));
    }),
    ReadExtents: serverStream<Head & { snapshotId: string; extents: WireExtent[] }, WireExtentDataIn>('ReadExtents', log, driverStatusMapper, async (request, call) => {
      const { member, dataCall } = await open('ReadExtents', 'dataSource', request, call);
      const snapshotId = required('ReadExtents', 'snapshot_id', request.snapshotId);
      const extents = extentsOf('ReadExtents', 'extents', request.extents);
      const cursor = new ExtentCursor(extents);
      const gone = cancellation(call);
      const pieces = member.readExtents({ ...dataCall, snapshotId, extents })[Symbol.asyncIterator]();
      let finished = false;
      try {
        for (;;) {
          const next = await Promise.race([pieces.next(), gone]);
          if (next === CANCELLED) return;
          if (next.done) break;
          const problem = cursor.accept(next.value);
          if (problem) throw new FerryError('DRIVER_ERROR', `ReadExtents: the driver's readExtents yielded a malformed piece: ${problem}`);
          if (!call.write(extentDataToWire(next.value))) {
            const drained = new Promise<void>((resolve) => call.once('drain', resolve));
            if ((await Promise.race([drained, gone])) === CANCELLED) return;
          }
        }
        finished = true;
        const problem = cursor.finish();
        if (problem) throw new FerryError('DRIVER_ERROR', `ReadExtents: the driver's readExtents ended too soon: ${problem}`);
      } finally {
        // The client went away, or a piece was bad: the module stops reading. Not awaited: a module stuck in next() answers return() only after it.
        if (!finished) void Promise.resolve(pieces.return?.()).catch((err: unknown) => log.warn({ err: (err as Error)?.message }, 'readExtents: return() failed'));
      }
    }),
    FreezeWrites: source<Head & { leaseMs: number }>('FreezeWrites', async (s, r, c) => {
      await s.freezeWrites({ ...c, leaseMs: positive('FreezeWrites', 'lease_ms', r.leaseMs) });
      return {};
    }),
    ReleaseWrites: source<Head & { committed: boolean }>('ReleaseWrites', async (s, r, c) => {
      await s.releaseWrites({ ...c, committed: r.committed });
      return {};
    }),
    RetireSource: source<Head>('RetireSource', async (s, _r, c) => {
      await s.retireSource(c);
      return {};
    }),
    CreateTarget: destination<Head & { targetId: string; sizeBytes: number; metadata: Record<string, string>; shareType: string }>('CreateTarget', async (d, r, c) => {
      const targetId = required('CreateTarget', 'target_id', r.targetId);
      const sizeBytes = positive('CreateTarget', 'size_bytes', r.sizeBytes);
      const { promoted } = await d.createTarget({ ...c, targetId, sizeBytes, metadata: { ...r.metadata }, shareType: r.shareType });
      return { promoted };
    }),
    WriteExtents: clientStream<WriteMessage, unknown>('WriteExtents', log, driverStatusMapper, async (call) => {
      const gone = cancellation(call);
      const messages = call[Symbol.asyncIterator]() as AsyncIterator<WriteMessage>;
      const read = async (): Promise<IteratorResult<WriteMessage>> => {
        const next = await Promise.race([messages.next(), gone]);
        if (next === CANCELLED) throw new FerryError('UNAVAILABLE', 'WriteExtents: ferryd cancelled the call');
        return next;
      };
      const first = await read();
      if (first.done) throw invalid('WriteExtents', 'the stream ended before its first message (backend, migration, target_id)');
      const { member, dataCall } = await open('WriteExtents', 'dataDestination', first.value, call);
      const targetId = required('WriteExtents', 'target_id', first.value.targetId);
      async function* pieces(): AsyncGenerator<ExtentData> {
        if (first.value.extent) yield pieceOf('WriteExtents', 'message 0: extent', first.value.extent);
        for (let index = 1; ; index++) {
          const next = await read();
          if (next.done) return;
          yield pieceOf('WriteExtents', `message ${index}: extent`, next.value.extent);
        }
      }
      const { writtenBytes } = await member.writeExtents({ ...dataCall, targetId, data: pieces() });
      return { writtenBytes };
    }),
    FlushTarget: destination<Head & { targetId: string; ranges: WireExtent[] }>('FlushTarget', async (d, r, c) => {
      const targetId = required('FlushTarget', 'target_id', r.targetId);
      const ranges = extentsOf('FlushTarget', 'ranges', r.ranges);
      const { digests } = await d.flushTarget({ ...c, targetId, ranges });
      return { digests: digests.map(digestToWire) };
    }),
    PromoteTarget: destination<Head & { targetId: string }>('PromoteTarget', async (d, r, c) => {
      await d.promoteTarget({ ...c, targetId: required('PromoteTarget', 'target_id', r.targetId) });
      return {};
    }),
    DiscardTarget: destination<Head & { targetId: string }>('DiscardTarget', async (d, r, c) => {
      await d.discardTarget({ ...c, targetId: required('DiscardTarget', 'target_id', r.targetId) });
      return {};
    }),
  };
}
