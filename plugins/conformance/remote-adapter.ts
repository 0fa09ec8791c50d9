/**
 * The adapter of a driver in any language: a ConformanceAdapter whose every
 * call is a ferry.driver.v1.ConformanceAdapter RPC (proto/ferry/driver/v1/
 * conformance.proto) to a server the vendor runs, beside their driver or
 * elsewhere. The kit uses it for plugins of kind process (on its own
 * instance of the plugin's command, adapter-process.ts) and endpoint, and
 * for `--adapter-address ADDR`.
 *
 * A failed call rejects with a RemoteAdapterError whose `code` is the gRPC
 * status name, so the kit's report reads "UNIMPLEMENTED: my-array:
 * implement Setup" as the server said it.
 */
import * as grpc from '@grpc/grpc-js';
import { clientConstructor } from '../../lib/rpc.ts';
import type { ChecksumShareResponse__Output } from '../../build/types/ferry/driver/v1/ChecksumShareResponse.ts';
import type { CreateShareResponse__Output } from '../../build/types/ferry/driver/v1/CreateShareResponse.ts';
import type { ListSharesResponse__Output } from '../../build/types/ferry/driver/v1/ListSharesResponse.ts';
import type { LocateShareResponse__Output } from '../../build/types/ferry/driver/v1/LocateShareResponse.ts';
import type { SetupResponse__Output } from '../../build/types/ferry/driver/v1/SetupResponse.ts';
import type { AdapterSetup, ConformanceAdapter, ShareLocation } from './adapter.ts';
import { fromStruct, toStruct } from '../../lib/struct.ts';

/** The service's full name in the compiled API. */
export const ADAPTER_SERVICE = 'ferry.driver.v1.ConformanceAdapter';

/** How long one adapter call may take by default; Setup and Teardown start and stop arrays. */
const CALL_DEADLINE_MS = 60_000;
const SETUP_DEADLINE_MS = 120_000;

/** Thrown when an adapter RPC fails: `code` is the gRPC status name, the message is the server's. */
export class RemoteAdapterError extends Error {
  constructor(
    /** The RPC, e.g. "Setup". */
    readonly method: string,
    /** The gRPC status name, e.g. "UNIMPLEMENTED". */
    readonly code: string,
    message: string,
  ) {
    super(message);
    this.name = 'RemoteAdapterError';
  }
}

let ctor: grpc.ServiceClientConstructor | undefined;

/** A ConformanceAdapter over gRPC. `address` is "unix:PATH" or "host:port". */
export class RemoteAdapter implements ConformanceAdapter {
  private readonly stub: grpc.Client & Record<string, Function>;

  constructor(
    /** Where the ConformanceAdapter service is served. */
    readonly address: string,
    /** Extra settings for Setup: the parsed `--config FILE`. */
    private readonly config: Record<string, unknown> = {},
  ) {
    ctor ??= clientConstructor(ADAPTER_SERVICE);
    this.stub = new ctor(address, grpc.credentials.createInsecure()) as unknown as grpc.Client & Record<string, Function>;
  }

  async setup(): Promise<AdapterSetup> {
    const r = await this.call<SetupResponse__Output>('Setup', { config: toStruct(this.config) }, SETUP_DEADLINE_MS);
    return {
      backends: r.backends.map((b) => ({ name: b.name, options: fromStruct(b.options) })) as AdapterSetup['backends'],
      sourcePool: r.sourcePool,
      destinationPool: r.destinationPool,
      ...(r.smallPool ? { smallPool: r.smallPool } : {}),
    };
  }

  async createShare(backend: string, pool: string, sizeBytes: number): Promise<string> {
    return (await this.call<CreateShareResponse__Output>('CreateShare', { backend, pool, sizeBytes })).shareId;
  }

  async writeShare(shareId: string, offset: number, data: Uint8Array): Promise<void> {
    await this.call('WriteShare', { shareId, offset, data: Buffer.from(data.buffer, data.byteOffset, data.byteLength) });
  }

  async checksum(shareId: string): Promise<string> {
    return (await this.call<ChecksumShareResponse__Output>('ChecksumShare', { shareId })).sha256;
  }

  /** NOT_FOUND from the server means the array has no such share: null. */
  async locate(shareId: string): Promise<ShareLocation | null> {
    try {
      const r = await this.call<LocateShareResponse__Output>('LocateShare', { shareId });
      return { backend: r.backend, pool: r.pool };
    } catch (err) {
      if (err instanceof RemoteAdapterError && err.code === 'NOT_FOUND') return null;
      throw err;
    }
  }

  async listShares(backend: string): Promise<string[]> {
    return (await this.call<ListSharesResponse__Output>('ListShares', { backend })).names;
  }

  async deleteShare(shareId: string): Promise<void> {
    await this.call('DeleteShare', { shareId });
  }

  /** Teardown on the server, then closes the connection (also when Teardown fails). */
  async teardown(): Promise<void> {
    try {
      await this.call('Teardown', {}, SETUP_DEADLINE_MS);
    } finally {
      this.close();
    }
  }

  /** Closes the connection without a Teardown. */
  close(): void {
    this.stub.close();
  }

  private call<T = unknown>(method: string, request: object, deadlineMs = CALL_DEADLINE_MS): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      // waitForReady: a server that is still coming up (or restarting) is waited for, up to the deadline.
      this.stub[method]!.call(this.stub, request, new grpc.Metadata({ waitForReady: true }), { deadline: Date.now() + deadlineMs }, (err: grpc.ServiceError | null, res: T) => {
        if (!err) return resolve(res);
        const code = grpc.status[err.code] ?? String(err.code);
        reject(new RemoteAdapterError(method, code, `${method} at ${this.address}: ${err.details || err.message}`));
      });
    });
  }
}
