/**
 * The driver's connection to its array: one gRPC channel per driver
 * instance (shared by every migration), calls that honour the daemon's
 * AbortSignal and a per-call deadline, and the translation of the array's
 * gRPC status codes into Ferry's error codes.
 *
 * A vendor replaces this file with the client of their own array's API;
 * the rest of the driver talks to it through `call`.
 */
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { fileURLToPath } from 'node:url';
import { FerryError } from '@ferry/driver-api';
import type { ErrorCode } from '@ferry/driver-api';

/** The array's API. A vendor's driver ships its own. */
const PROTO_ROOT = fileURLToPath(new URL('../../proto/', import.meta.url));
const PROTO_FILE = 'ferry/simulator/v1/simulator.proto';
const SERVICE = 'ferry.simulator.v1.SimulatorService';

/** camelCase fields, enums as names, 64-bit integers as numbers: what the code below reads. */
const LOADER_OPTIONS: protoLoader.Options = { keepCase: false, longs: Number, enums: String, defaults: true, oneofs: true, includeDirs: [PROTO_ROOT] };

/** gRPC status -> Ferry code. Anything else from the array means the driver and the array disagree: DRIVER_ERROR. */
const CODE_MAP: Partial<Record<grpc.status, ErrorCode>> = {
  [grpc.status.NOT_FOUND]: 'NOT_FOUND',
  [grpc.status.RESOURCE_EXHAUSTED]: 'RESOURCE_EXHAUSTED',
  [grpc.status.FAILED_PRECONDITION]: 'FAILED_PRECONDITION',
  [grpc.status.ALREADY_EXISTS]: 'ALREADY_EXISTS',
  [grpc.status.UNAVAILABLE]: 'UNAVAILABLE',
  [grpc.status.DEADLINE_EXCEEDED]: 'DEADLINE_EXCEEDED',
};

type Callback = (err: grpc.ServiceError | null, res: unknown) => void;
type UnaryMethod = (req: unknown, options: grpc.CallOptions, cb: Callback) => grpc.ClientUnaryCall;

let constructorCache: grpc.ServiceClientConstructor | undefined;

function clientConstructor(): grpc.ServiceClientConstructor {
  if (!constructorCache) {
    const pkg = protoLoader.loadSync(PROTO_FILE, LOADER_OPTIONS);
    constructorCache = grpc.makeGenericClientConstructor(pkg[SERVICE] as grpc.ServiceDefinition, 'SimulatorService');
  }
  return constructorCache;
}

/** A SimulatorService client. */
export class ArrayClient {
  /** Where the array is. */
  readonly endpoint: string;
  private readonly client: grpc.Client;
  private readonly timeoutMs: number;

  constructor(endpoint: string, timeoutMs: number) {
    this.endpoint = endpoint;
    this.timeoutMs = timeoutMs;
    // The channel connects lazily: the daemon creates drivers before its own address (the embedded array) serves.
    const Client = clientConstructor();
    this.client = new Client(endpoint, grpc.credentials.createInsecure());
  }

  /**
   * Calls `method`. Rejects with a FerryError: the array's code mapped and
   * its message kept; DEADLINE_EXCEEDED when `signal` aborts (the gRPC call
   * is cancelled, so nothing keeps running on our side) or the deadline passes.
   */
  call<Res>(method: string, request: object, signal: AbortSignal): Promise<Res> {
    const fn = (this.client as unknown as Record<string, UnaryMethod>)[method];
    if (!fn) return Promise.reject(new TypeError(`SimulatorService has no method ${method}`));
    if (signal.aborted) return Promise.reject(new FerryError('DEADLINE_EXCEEDED', `${method} was not sent: the call was aborted`));
    return new Promise<Res>((resolve, reject) => {
      const onAbort = () => call.cancel();
      const call = fn.call(this.client, request, { deadline: Date.now() + this.timeoutMs }, (err, res) => {
        signal.removeEventListener('abort', onAbort);
        if (err) reject(this.toFerryError(method, err, signal.aborted));
        else resolve(res as Res);
      });
      signal.addEventListener('abort', onAbort, { once: true });
    });
  }

  /** Closes the channel. */
  close(): void {
    this.client.close();
  }

  private toFerryError(method: string, err: grpc.ServiceError, aborted: boolean): FerryError {
    if (aborted || err.code === grpc.status.CANCELLED) {
      return new FerryError('DEADLINE_EXCEEDED', `${method} to the array at ${this.endpoint} was aborted (deadline or shutdown)`, { cause: err });
    }
    const code = CODE_MAP[err.code] ?? 'DRIVER_ERROR';
    const details = err.details || err.message;
    const message =
      code === 'UNAVAILABLE'
        ? `the array at ${this.endpoint} is unavailable: ${details}`
        : code === 'DEADLINE_EXCEEDED'
          ? `${method} to the array at ${this.endpoint} ran past its ${this.timeoutMs} ms deadline`
          : code === 'DRIVER_ERROR'
            ? `the array answered ${method} with ${grpc.status[err.code] ?? err.code}: ${details}`
            : details;
    return new FerryError(code, message, { cause: err });
  }
}
