/**
 * A Driver (plugins/api/driver.ts) whose calls go over
 * ferry.driver.v1.DriverService to a driver in another process, started by
 * ferryd (kind process) or running elsewhere (kind endpoint). The guard wraps
 * it as it wraps a module driver.
 *
 * - The backend is opened (OpenBackend) at creation, and again before the
 *   first call after the link to the driver was lost and found again (a
 *   restarted process, a dropped connection): a driver keeps no backend
 *   across its own restart.
 * - A call's gRPC deadline is its deadline in ferryd's config; the guard's
 *   abort signal cancels it.
 * - A failure maps as driver.proto says (driver-wire.ts); a call cut off
 *   because the link went down is UNAVAILABLE, which the engine retries.
 * - `dataSource` and `dataDestination` are there exactly when the last
 *   OpenBackend answer's `features` says so (remote-data.ts makes the
 *   calls), so a driver restarted as another version is judged by what
 *   the new one serves. So is `watchChanges` (WatchChanges, a stream with
 *   no deadline).
 */
import type * as grpc from '@grpc/grpc-js';
import { FerryError } from '../plugins/api/index.ts';
import type {
  CancelResult,
  Capabilities,
  CompatibilityResult,
  CompleteResult,
  ContinueResult,
  DataDestination,
  DataSource,
  Driver,
  DriverChange,
  DriverProgress,
  MigrationCall,
  PoolInfo,
  StartResult,
} from '../plugins/api/index.ts';
import type { DriverServiceClient } from '../build/types/ferry/driver/v1/DriverService.ts';
import type { MigrationCall as WireCall } from '../build/types/ferry/driver/v1/MigrationCall.ts';
import type { Log } from '../lib/log.ts';
import type { Deadlines } from './deadlines.ts';
import type { DriverChange__Output } from '../build/types/ferry/driver/v1/DriverChange.ts';
import type { OpenBackendResponse__Output } from '../build/types/ferry/driver/v1/OpenBackendResponse.ts';
import {
  capabilitiesFromWire,
  checkpointFromWire,
  completeStatusFromWire,
  checkpointToWire,
  errorFromStatus,
  featuresFromWire,
  FEATURE_WIRE_NAMES,
  NO_FEATURES,
  progressFromWire,
  specToWire,
  toStruct,
  type Features,
} from './driver-wire.ts';
import { remoteDataDestination, remoteDataSource, type DataPathCalls, type DataMethod } from './remote-data.ts';

/** The connection to a driver, as a remote driver uses it. */
export interface DriverLink {
  /** What the driver is, for messages ("driver process of plugin X", "endpoint unix:/..."). */
  readonly describe: string;
  /** The client; throws FerryError UNAVAILABLE while the driver is not up. */
  client(): DriverServiceClient;
  /** Changes whenever the link was lost (the process exited, the connection dropped). */
  readonly generation: number;
}

type Method = 'OpenBackend' | 'Describe' | 'CheckCompatibility' | 'Start' | 'Continue' | 'Complete' | 'Cancel' | 'Progress' | DataMethod;
type Unary = (request: unknown, options: grpc.CallOptions, callback: (err: grpc.ServiceError | null, response?: unknown) => void) => grpc.ClientUnaryCall;

/** One backend of a remote driver. */
export class RemoteDriver implements Driver {
  private caps: Capabilities | undefined;
  private features: Features = NO_FEATURES;
  private readonly source: DataSource;
  private readonly destination: DataDestination;
  /** The link generation the backend was last opened on; -1 before the first open. */
  private openedOn = -1;
  private opening: Promise<void> | undefined;

  constructor(
    private readonly link: DriverLink,
    private readonly backend: string,
    private readonly options: Record<string, unknown>,
    private readonly daemonAddress: string,
    private readonly deadlines: Deadlines,
    /** The deadline of OpenBackend (the plugin load timeout). */
    private readonly openTimeoutMs: number,
    private readonly log: Log,
    /** Called once, when the driver is closed. */
    private readonly onClose: () => void = () => {},
  ) {
    const calls: DataPathCalls = {
      backend,
      prepare: (feature, signal) => this.prepare(feature, signal),
      unary: async (feature, method, request, signal) => {
        await this.prepare(feature, signal);
        return this.call(method, request, undefined, signal);
      },
      failure: (err, method, generation, signal) => this.failure(err, method, generation, signal),
    };
    this.source = remoteDataSource(calls);
    this.destination = remoteDataDestination(calls);
  }

  /** The source half of the host data path, while the backend's driver serves it (the same object each time). */
  get dataSource(): DataSource | undefined {
    return this.features.dataSource ? this.source : undefined;
  }

  /** The destination half of the host data path, while the backend's driver serves it (the same object each time). */
  get dataDestination(): DataDestination | undefined {
    return this.features.dataDestination ? this.destination : undefined;
  }

  /** Opens the backend on the driver (OpenBackend) and keeps its capabilities; concurrent callers share one call. Throws FerryError. */
  open(signal?: AbortSignal): Promise<void> {
    // Cleared only once settled (never synchronously inside the call), so that a failed open is not kept.
    this.opening ??= this.openOnce(signal).finally(() => (this.opening = undefined));
    return this.opening;
  }

  private async openOnce(signal?: AbortSignal): Promise<void> {
    const generation = this.link.generation;
    const res = (await this.call('OpenBackend', { backend: this.backend, options: toStruct(this.options), daemonAddress: this.daemonAddress }, this.openTimeoutMs, signal)) as OpenBackendResponse__Output;
    this.caps = capabilitiesFromWire(res.capabilities);
    this.features = featuresFromWire(res.features);
    this.openedOn = generation;
    this.log.info({ capabilities: this.caps, features: this.features, link: this.link.describe }, 'backend opened on its driver');
  }

  capabilities(): Capabilities {
    if (!this.caps) throw new FerryError('UNAVAILABLE', `backend ${this.backend} is not open on ${this.link.describe}`);
    return this.caps;
  }

  async describe({ signal }: { signal: AbortSignal }): Promise<{ pools: PoolInfo[] }> {
    const res = (await this.migrationless('Describe', { backend: this.backend }, this.deadlines.describe, signal)) as { pools: PoolInfo[] };
    return { pools: res.pools.map((p) => ({ name: p.name, capacityBytes: p.capacityBytes, freeBytes: p.freeBytes })) };
  }

  async checkCompatibility(call: Omit<MigrationCall, 'checkpoint'>): Promise<CompatibilityResult> {
    const res = (await this.perMigration('CheckCompatibility', { ...call, checkpoint: null }, this.deadlines.checkCompatibility)) as {
      capabilities?: Parameters<typeof capabilitiesFromWire>[0];
      reasons: string[];
      shareSizeBytes: number;
      destinationFreeBytes: number;
      destinationUnreachable?: boolean;
    };
    return {
      capabilities: capabilitiesFromWire(res.capabilities),
      reasons: res.reasons,
      shareSizeBytes: res.shareSizeBytes,
      destinationFreeBytes: res.destinationFreeBytes,
      ...(res.destinationUnreachable === true && { destinationUnreachable: true }),
    };
  }

  async start(call: MigrationCall): Promise<StartResult> {
    const res = (await this.perMigration('Start', call, this.deadlines.start)) as { checkpoint: Buffer };
    return { checkpoint: checkpointFromWire(res.checkpoint) };
  }

  async continue(call: MigrationCall): Promise<ContinueResult> {
    const res = (await this.perMigration('Continue', call, this.deadlines.continue)) as { progress: never; phase1Done: boolean; nextPollMs: number; checkpoint: Buffer };
    return {
      progress: progressFromWire(res.progress),
      phase1Done: res.phase1Done,
      ...(res.nextPollMs > 0 && { nextPollMs: res.nextPollMs }),
      checkpoint: checkpointFromWire(res.checkpoint),
    };
  }

  async complete(call: MigrationCall): Promise<CompleteResult> {
    const res = (await this.perMigration('Complete', call, this.deadlines.complete)) as {
      status: string;
      cutover: { freezeMs: number; finalDeltaBytes: number; verifiedBytes: number } | null;
      nextPollMs: number;
      reason: string;
      checkpoint: Buffer;
    };
    const checkpoint = checkpointFromWire(res.checkpoint);
    switch (completeStatusFromWire(res.status)) {
      case 'done':
        if (!res.cutover) throw new FerryError('DRIVER_ERROR', `Complete answered STATUS_DONE without cutover figures (driver.proto requires them)`);
        return { status: 'done', cutover: { freezeMs: res.cutover.freezeMs, finalDeltaBytes: res.cutover.finalDeltaBytes, verifiedBytes: res.cutover.verifiedBytes }, checkpoint };
      case 'in_progress':
        return { status: 'in_progress', ...(res.nextPollMs > 0 && { nextPollMs: res.nextPollMs }), checkpoint };
      case 'aborted':
        return { status: 'aborted', reason: res.reason, checkpoint };
      default:
        throw new FerryError('DRIVER_ERROR', `Complete answered status ${res.status}; it must be STATUS_DONE, STATUS_IN_PROGRESS or STATUS_ABORTED`);
    }
  }

  async cancel(call: MigrationCall): Promise<CancelResult> {
    const res = (await this.perMigration('Cancel', call, this.deadlines.cancel)) as { done: boolean; nextPollMs: number; checkpoint: Buffer };
    return { done: res.done, ...(res.nextPollMs > 0 && { nextPollMs: res.nextPollMs }), checkpoint: checkpointFromWire(res.checkpoint) };
  }

  async progress(call: MigrationCall): Promise<DriverProgress> {
    const res = (await this.perMigration('Progress', call, this.deadlines.progress)) as { progress: never };
    return progressFromWire(res.progress);
  }

  /** WatchChanges, while the backend's driver serves it (see Driver.watchChanges). */
  get watchChanges(): Driver['watchChanges'] {
    return this.features.changes ? (options) => this.changes(options.signal) : undefined;
  }

  private async *changes(signal: AbortSignal): AsyncGenerator<DriverChange> {
    const { client, generation } = await this.prepare('changes', signal);
    // No deadline: the stream stays open as long as the driver and ferryd do.
    const stream = client.WatchChanges({ backend: this.backend }, {});
    const onAbort = () => stream.cancel();
    signal.addEventListener('abort', onAbort, { once: true });
    const messages = stream[Symbol.asyncIterator]() as AsyncIterator<DriverChange__Output>;
    try {
      for (;;) {
        let next: IteratorResult<DriverChange__Output>;
        try {
          next = await messages.next();
        } catch (err) {
          throw this.failure(err as grpc.ServiceError, 'WatchChanges', generation, signal);
        }
        if (next.done) return;
        yield { migrationId: next.value.migrationId };
      }
    } finally {
      signal.removeEventListener('abort', onAbort);
      stream.cancel();
    }
  }

  async close(): Promise<void> {
    this.onClose();
  }

  private perMigration(method: Method, call: Omit<MigrationCall, 'log'>, deadlineMs: number): Promise<unknown> {
    const request: WireCall = { backend: this.backend, migration: specToWire(call.migration), checkpoint: checkpointToWire(call.checkpoint) };
    return this.migrationless(method, request, deadlineMs, call.signal);
  }

  /** A call made on an open backend: opened again first if the link was lost since. */
  private async migrationless(method: Method, request: unknown, deadlineMs: number | undefined, signal: AbortSignal): Promise<unknown> {
    if (this.openedOn !== this.link.generation) await this.open(signal);
    return this.call(method, request, deadlineMs, signal);
  }

  /**
   * Before a streaming data-path call: the backend open on the link as it
   * is now, and still serving `feature` (a driver restarted as a version
   * without it is UNIMPLEMENTED here, not asked). Throws FerryError.
   */
  private async prepare(feature: keyof Features, signal: AbortSignal): Promise<{ client: DriverServiceClient; generation: number }> {
    if (signal.aborted) throw signal.reason;
    if (this.openedOn !== this.link.generation) await this.open(signal);
    if (!this.features[feature]) {
      throw new FerryError('UNIMPLEMENTED', `backend ${this.backend} does not serve ${FEATURE_WIRE_NAMES[feature]} on ${this.link.describe} (its OpenBackend answer no longer offers it)`);
    }
    return { client: this.link.client(), generation: this.link.generation };
  }

  /** What a failed call rejects with: ferryd's own reason if it cancelled it, UNAVAILABLE if the link went down under it, else the driver's status. */
  private failure(err: grpc.ServiceError, method: string, generation: number, signal?: AbortSignal): unknown {
    // ferryd cancelled the call itself: it fails for ferryd's reason (a CANCELLED from the driver's side is another matter).
    if (signal?.aborted) return signal.reason;
    // The link went down under the call: it failed because the driver went away, whatever the channel said.
    if (this.link.generation !== generation) return new FerryError('UNAVAILABLE', `${method} was cut off: ${this.link.describe} went away during the call`);
    return errorFromStatus(err, method);
  }

  /** One unary call, with a deadline when given, cancelled by `signal`. Rejects with a FerryError. */
  private call(method: Method, request: unknown, deadlineMs: number | undefined, signal?: AbortSignal): Promise<unknown> {
    const client = this.link.client();
    const generation = this.link.generation;
    return new Promise((resolve, reject) => {
      if (signal?.aborted) return reject(signal.reason);
      const onAbort = () => pending.cancel();
      const options: grpc.CallOptions = deadlineMs === undefined ? {} : { deadline: Date.now() + deadlineMs };
      const pending = (client[method] as unknown as Unary).call(client, request, options, (err, response) => {
        signal?.removeEventListener('abort', onAbort);
        if (!err) return resolve(response);
        reject(this.failure(err, method, generation, signal));
      });
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }
}
