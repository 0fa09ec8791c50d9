/**
 * The host data path of a remote driver: DataSource and DataDestination
 * (plugins/api/driver.ts) as calls of ferry.driver.v1.DriverService.
 *
 * - A call has no gRPC deadline of its own: the caller's `signal` (which
 *   aborts at the caller's deadline or at shutdown) cancels it.
 * - ReadExtents is read as the consumer pulls (HTTP/2 flow control holds
 *   the driver back); breaking out of the loop or aborting the signal
 *   cancels the call. Every piece is checked against the extents asked
 *   (ExtentCursor): a malformed one is DRIVER_ERROR and ends the call.
 * - WriteExtents writes as fast as the driver takes it: the next piece is
 *   pulled from the caller's iterable only once the stream has room, so
 *   memory does not grow with the data. A driver that answers early (a
 *   DATA_LOSS) stops the pulling.
 */
import type * as grpc from '@grpc/grpc-js';
import { FerryError, type DataCall, type DataDestination, type DataSource, type ExtentData } from '../plugins/api/index.ts';
import type { DriverServiceClient } from '../build/types/ferry/driver/v1/DriverService.ts';
import type { ExtentData__Output as WireExtentData } from '../build/types/ferry/driver/v1/ExtentData.ts';
import type { FlushTargetResponse__Output } from '../build/types/ferry/driver/v1/FlushTargetResponse.ts';
import type { ListChangedExtentsResponse__Output } from '../build/types/ferry/driver/v1/ListChangedExtentsResponse.ts';
import type { Snapshot__Output } from '../build/types/ferry/driver/v1/Snapshot.ts';
import type { Target__Output } from '../build/types/ferry/driver/v1/Target.ts';
import type { WriteExtentsRequest } from '../build/types/ferry/driver/v1/WriteExtentsRequest.ts';
import type { WriteExtentsResponse__Output } from '../build/types/ferry/driver/v1/WriteExtentsResponse.ts';
import { changedFromWire, digestFromWire, ExtentCursor, extentDataFromWire, extentDataProblem, extentDataToWire, extentToWire, snapshotFromWire, specToWire, type Features } from './driver-wire.ts';

/** The unary data-path methods of DriverService. */
export type DataMethod =
  | 'CreateSnapshot'
  | 'DeleteSnapshot'
  | 'ListChangedExtents'
  | 'FreezeWrites'
  | 'ReleaseWrites'
  | 'RetireSource'
  | 'CreateTarget'
  | 'FlushTarget'
  | 'PromoteTarget'
  | 'DiscardTarget';

/** What the data path needs of its RemoteDriver. */
export interface DataPathCalls {
  /** The backend every request names. */
  readonly backend: string;
  /** One unary call on the open backend, cancelled by `signal`; throws FerryError (UNIMPLEMENTED when `feature` is not served). */
  unary(feature: keyof Features, method: DataMethod, request: object, signal: AbortSignal): Promise<unknown>;
  /** The backend open and serving `feature`, and the client and link generation to stream on; throws FerryError. */
  prepare(feature: keyof Features, signal: AbortSignal): Promise<{ client: DriverServiceClient; generation: number }>;
  /** What a failed streaming call rejects with (ferryd's own reason, UNAVAILABLE for a lost link, or the driver's status). */
  failure(err: grpc.ServiceError, method: string, generation: number, signal: AbortSignal): unknown;
}

/** The fields every data-path request begins with. */
function head(calls: DataPathCalls, call: DataCall): { backend: string; migration: ReturnType<typeof specToWire> } {
  return { backend: calls.backend, migration: specToWire(call.migration) };
}

/** The source half, over the wire. */
export function remoteDataSource(calls: DataPathCalls): DataSource {
  const unary = (method: DataMethod, call: DataCall, fields: object) => calls.unary('dataSource', method, { ...head(calls, call), ...fields }, call.signal);
  return {
    async createSnapshot(call) {
      return snapshotFromWire((await unary('CreateSnapshot', call, { snapshotId: call.snapshotId })) as Snapshot__Output);
    },
    async deleteSnapshot(call) {
      await unary('DeleteSnapshot', call, { snapshotId: call.snapshotId });
    },
    async listChangedExtents(call) {
      const fields = { baseSnapshotId: call.baseSnapshotId, snapshotId: call.snapshotId, startOffset: call.startOffset, maxExtents: call.maxExtents };
      return changedFromWire((await unary('ListChangedExtents', call, fields)) as ListChangedExtentsResponse__Output);
    },
    readExtents: (call) => readExtents(calls, call),
    async freezeWrites(call) {
      await unary('FreezeWrites', call, { leaseMs: call.leaseMs });
    },
    async releaseWrites(call) {
      await unary('ReleaseWrites', call, { committed: call.committed });
    },
    async retireSource(call) {
      await unary('RetireSource', call, {});
    },
  };
}

/** The destination half, over the wire. */
export function remoteDataDestination(calls: DataPathCalls): DataDestination {
  const unary = (method: DataMethod, call: DataCall, fields: object) => calls.unary('dataDestination', method, { ...head(calls, call), ...fields }, call.signal);
  return {
    async createTarget(call) {
      const res = (await unary('CreateTarget', call, { targetId: call.targetId, sizeBytes: call.sizeBytes, metadata: { ...call.metadata }, shareType: call.shareType })) as Target__Output;
      return { promoted: res.promoted };
    },
    writeExtents: (call) => writeExtents(calls, call),
    async flushTarget(call) {
      const res = (await unary('FlushTarget', call, { targetId: call.targetId, ranges: call.ranges.map(extentToWire) })) as FlushTargetResponse__Output;
      return { digests: res.digests.map(digestFromWire) };
    },
    async promoteTarget(call) {
      await unary('PromoteTarget', call, { targetId: call.targetId });
    },
    async discardTarget(call) {
      await unary('DiscardTarget', call, { targetId: call.targetId });
    },
  };
}

/** ReadExtents as an async iterable; the call is made when the first piece is asked for. */
async function* readExtents(calls: DataPathCalls, call: Parameters<DataSource['readExtents']>[0]): AsyncGenerator<ExtentData> {
  const { signal } = call;
  const { client, generation } = await calls.prepare('dataSource', signal);
  const stream = client.ReadExtents({ ...head(calls, call), snapshotId: call.snapshotId, extents: call.extents.map(extentToWire) }, {});
  const onAbort = () => stream.cancel();
  signal.addEventListener('abort', onAbort, { once: true });
  const cursor = new ExtentCursor(call.extents);
  const messages = stream[Symbol.asyncIterator]() as AsyncIterator<WireExtentData>;
  try {
    for (;;) {
      let next: IteratorResult<WireExtentData>;
      try {
        next = await messages.next();
      } catch (err) {
        throw calls.failure(err as grpc.ServiceError, 'ReadExtents', generation, signal);
      }
      if (next.done) break;
      const piece = extentDataFromWire(next.value);
      const problem = cursor.accept(piece);
      if (problem) throw new FerryError('DRIVER_ERROR', `ReadExtents answered a malformed piece: ${problem}`);
      yield piece;
    }
    if (signal.aborted) throw signal.reason;
    const problem = cursor.finish();
    if (problem) throw new FerryError('DRIVER_ERROR', `ReadExtents answered too little: ${problem}`);
  } finally {
    signal.removeEventListener('abort', onAbort);
    // A consumer that stopped early, or a piece that did not check: the driver stops reading. A no-op once the call has ended.
    stream.cancel();
  }
}

/** WriteExtents: the caller's pieces as a client stream, pulled only as the stream has room. */
async function writeExtents(calls: DataPathCalls, call: Parameters<DataDestination['writeExtents']>[0]): Promise<{ writtenBytes: number }> {
  const { signal } = call;
  const { client, generation } = await calls.prepare('dataDestination', signal);
  let stream!: grpc.ClientWritableStream<WriteExtentsRequest>;
  let answeredEarly = false;
  /** The call's answer; its failure is kept as is, to be told apart from the caller's own. */
  let callError: grpc.ServiceError | undefined;
  const answered = new Promise<WriteExtentsResponse__Output>((resolve, reject) => {
    stream = client.WriteExtents({}, (err, res) => {
      answeredEarly = true;
      if (err) {
        callError = err;
        reject(err);
      } else resolve(res!);
    });
  });
  answered.catch(() => {});
  const onAbort = () => stream.cancel();
  signal.addEventListener('abort', onAbort, { once: true });
  try {
    stream.write({ ...head(calls, call), targetId: call.targetId });
    let index = 0;
    for await (const piece of call.data) {
      if (answeredEarly || signal.aborted) break;
      const problem = extentDataProblem(piece);
      if (problem) throw new FerryError('INVALID_ARGUMENT', `writeExtents: piece ${index}: ${problem}`);
      index++;
      if (!stream.write({ extent: extentDataToWire(piece) })) await drained(stream, answered);
      // Pull no more once the driver has answered (a refused piece): the answer is what counts.
      if (answeredEarly) break;
    }
    if (signal.aborted) throw signal.reason;
    if (!answeredEarly) stream.end();
    const res = await answered;
    return { writtenBytes: res.writtenBytes };
  } catch (err) {
    // The caller's pieces failed, or the driver refused one: the call ends here either way.
    stream.cancel();
    if (err === callError && callError) throw calls.failure(callError, 'WriteExtents', generation, signal);
    throw err;
  } finally {
    signal.removeEventListener('abort', onAbort);
  }
}

/** Resolves when the stream has room again, or the call was answered (or cancelled) meanwhile. */
function drained(stream: grpc.ClientWritableStream<WriteExtentsRequest>, answered: Promise<unknown>): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      stream.off('drain', done);
      resolve();
    };
    stream.once('drain', done);
    answered.then(done, done);
  });
}
