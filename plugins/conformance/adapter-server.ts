/**
 * A TypeScript ConformanceAdapter served as the ferry.driver.v1.ConformanceAdapter
 * gRPC service: the other end of remote-adapter.ts. A vendor whose adapter
 * is written in TypeScript but whose driver runs elsewhere (an endpoint
 * plugin) can serve it with this and point `--adapter-address` at it; the
 * kit's own tests serve the simulator's adapter with it.
 *
 * Errors: a thrown value whose `code` is a gRPC status name (FerryError's
 * codes are) is answered with that status and its message; anything else
 * with UNKNOWN and its message, since the kit only reports it.
 */
import * as grpc from '@grpc/grpc-js';
import { HealthImplementation } from 'grpc-health-check';
import type { Log } from '../../lib/log.ts';
import { silentLog } from '../../lib/log.ts';
import { bind, serviceDefinition, shutdown, unary, type ErrorStatus } from '../../lib/rpc.ts';
import type { CreateShareRequest__Output } from '../../build/types/ferry/driver/v1/CreateShareRequest.ts';
import type { SetupRequest__Output } from '../../build/types/ferry/driver/v1/SetupRequest.ts';
import type { WriteShareRequest__Output } from '../../build/types/ferry/driver/v1/WriteShareRequest.ts';
import type { AdapterModule, ConformanceAdapter } from './adapter.ts';
import { ADAPTER_SERVICE } from './remote-adapter.ts';
import { fromStruct, toStruct } from '../../lib/struct.ts';

/** The health service name a driver process serves once it answers (driver.proto). */
export const DRIVER_HEALTH_NAME = 'ferry.driver.v1.DriverService';

/** A served adapter. */
export interface AdapterServer {
  /** The bound address ("unix:PATH" or "host:port"). */
  address: string;
  /** Stops serving (the adapter itself is torn down by the kit's Teardown call, not here). */
  close(): Promise<void>;
}

/** What a thrown value becomes on the wire. */
function mapError(err: unknown): ErrorStatus {
  const code = (err as { code?: unknown } | null)?.code;
  const status = typeof code === 'string' && code in grpc.status && typeof grpc.status[code as keyof typeof grpc.status] === 'number' ? (grpc.status[code as keyof typeof grpc.status] as grpc.status) : grpc.status.UNKNOWN;
  const message = err instanceof Error ? err.message : String(err);
  return { code: status, message, reason: typeof code === 'string' ? code : 'UNKNOWN', domain: 'ferry.driver.v1' };
}

/**
 * Serves the adapters `createAdapter` makes at `address`, with
 * grpc.health.v1 reporting "ferry.driver.v1.DriverService" SERVING (as a
 * driver process does, so the kit waits for it the same way). Each Setup
 * makes a new adapter with the config the kit sent; the other calls go to
 * the last one made (FAILED_PRECONDITION before the first Setup).
 */
export async function serveAdapter(createAdapter: AdapterModule['createAdapter'], address: string, log: Log = silentLog()): Promise<AdapterServer> {
  let current: ConformanceAdapter | undefined;
  const adapter = (): ConformanceAdapter => {
    if (!current) throw Object.assign(new Error('Setup was not called'), { code: 'FAILED_PRECONDITION' });
    return current;
  };
  const server = new grpc.Server();
  const health = new HealthImplementation({ '': 'SERVING', [DRIVER_HEALTH_NAME]: 'SERVING' });
  health.addToServer(server);
  const u = <Req, Res>(method: string, fn: (req: Req) => Promise<Res>) => unary<Req, Res>(method, log, mapError, (req) => fn(req));
  server.addService(serviceDefinition(ADAPTER_SERVICE), {
    Setup: u('Setup', async (req: SetupRequest__Output) => {
      current = await createAdapter(fromStruct(req.config));
      const s = await current.setup();
      return {
        backends: s.backends.map((b) => ({ name: b.name, options: toStruct(b.options) })),
        sourcePool: s.sourcePool,
        destinationPool: s.destinationPool,
        smallPool: s.smallPool ?? '',
      };
    }),
    CreateShare: u('CreateShare', async (req: CreateShareRequest__Output) => ({ shareId: await adapter().createShare(req.backend, req.pool, req.sizeBytes) })),
    WriteShare: u('WriteShare', async (req: WriteShareRequest__Output) => {
      await adapter().writeShare(req.shareId, req.offset, req.data);
      return {};
    }),
    ChecksumShare: u('ChecksumShare', async (req: { shareId: string }) => ({ sha256: await adapter().checksum(req.shareId) })),
    LocateShare: u('LocateShare', async (req: { shareId: string }) => {
      const where = await adapter().locate(req.shareId);
      if (!where) throw Object.assign(new Error(`no share ${req.shareId}`), { code: 'NOT_FOUND' });
      return where;
    }),
    ListShares: u('ListShares', async (req: { backend: string }) => ({ names: await adapter().listShares(req.backend) })),
    DeleteShare: u('DeleteShare', async (req: { shareId: string }) => {
      await adapter().deleteShare(req.shareId);
      return {};
    }),
    Teardown: u('Teardown', async () => {
      // A Teardown without a Setup (the kit's Setup failed) has nothing to stop.
      await current?.teardown();
      return {};
    }),
  });
  const bound = await bind(server, address);
  return { address: bound, close: () => shutdown(server, 1_000) };
}
