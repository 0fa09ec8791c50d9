/**
 * The driver's connection to its array: one gRPC channel per driver
 * instance (shared by every migration), calls that honour the daemon's
 * AbortSignal and a per-call deadline, and the translation of the array's
 * own error codes into Ferry's.
 *
 * A vendor replaces this file with the client of their own array's API;
 * the rest of the driver talks to it through `call`.
 */
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import protobuf from 'protobufjs';
import { FerryError } from '@ferry/driver-api';
import type { ErrorCode } from '@ferry/driver-api';

/** The array's API. A vendor's driver ships its own. */
const PROTO_ROOT = fileURLToPath(new URL('../../proto/', import.meta.url));
const PROTO_FILE = 'ferry/simulator/v1/simulator.proto';
const SERVICE = 'ferry.simulator.v1.SimulatorService';

/** camelCase fields, enums as names, 64-bit integers as numbers: what the code below reads. */
const LOADER_OPTIONS: protoLoader.Options = { keepCase: false, longs: Number, enums: String, defaults: true, oneofs: true, includeDirs: [PROTO_ROOT] };

/** The ErrorInfo domain of the array's own errors (simulator.proto). */
const ARRAY_DOMAIN = 'ferry.simulator.v1';

/**
 * The array's error code (its ErrorInfo reason) -> Ferry's. A code not
 * listed (one this driver does not know yet) is DRIVER_ERROR too: the
 * driver and the array disagree.
 */
export const ARRAY_CODE_MAP: Readonly<Record<string, ErrorCode>> = {
  NO_SUCH_OBJECT: 'NOT_FOUND',
  NO_SPACE: 'RESOURCE_EXHAUSTED',
  WRONG_STATE: 'FAILED_PRECONDITION',
  OTHER_ARRAY: 'FAILED_PRECONDITION',
  BAD_CHECKSUM: 'DATA_LOSS',
  OBJECT_EXISTS: 'ALREADY_EXISTS',
  BUSY: 'UNAVAILABLE',
  TIMED_OUT: 'DEADLINE_EXCEEDED',
  // The driver sent what the array refuses, or asked for what it does not do, or the array broke.
  BAD_REQUEST: 'DRIVER_ERROR',
  NOT_SUPPORTED: 'DRIVER_ERROR',
  ARRAY_FAULT: 'DRIVER_ERROR',
};

/** gRPC status -> Ferry code, when no array answered (the transport's own status). Anything else: DRIVER_ERROR. */
const TRANSPORT_CODE_MAP: Partial<Record<grpc.status, ErrorCode>> = {
  [grpc.status.UNAVAILABLE]: 'UNAVAILABLE',
  [grpc.status.DEADLINE_EXCEEDED]: 'DEADLINE_EXCEEDED',
};

/** google.rpc.Status and google.rpc.ErrorInfo, from googleapis' own protos (shipped by google-proto-files). */
const googleapis = dirname(createRequire(import.meta.url).resolve('google-proto-files/package.json'));
const rpcTypes = protobuf.loadSync([join(googleapis, 'google/rpc/status.proto'), join(googleapis, 'google/rpc/error_details.proto')]);
const StatusType = rpcTypes.lookupType('google.rpc.Status');
const ErrorInfoType = rpcTypes.lookupType('google.rpc.ErrorInfo');

/** The array's own error code, if `err` carries the array's ErrorInfo in `grpc-status-details-bin`; undefined when no array answered. */
export function arrayCodeOf(err: grpc.ServiceError): string | undefined {
  const bytes = err.metadata?.get('grpc-status-details-bin')[0];
  if (!Buffer.isBuffer(bytes)) return undefined;
  try {
    const status = StatusType.toObject(StatusType.decode(bytes)) as { details?: { type_url?: string; value?: Uint8Array }[] };
    const any = status.details?.find((d) => d.type_url === 'type.googleapis.com/google.rpc.ErrorInfo');
    if (!any?.value) return undefined;
    const info = ErrorInfoType.toObject(ErrorInfoType.decode(any.value)) as { reason?: string; domain?: string };
    return info.domain === ARRAY_DOMAIN ? info.reason : undefined;
  } catch {
    return undefined;
  }
}

type Callback = (err: grpc.ServiceError | null, res: unknown) => void;
type UnaryMethod = (req: unknown, options: grpc.CallOptions, cb: Callback) => grpc.ClientUnaryCall;
type ServerStreamMethod = (req: unknown, options: grpc.CallOptions) => grpc.ClientReadableStream<unknown>;
type ClientStreamMethod = (options: grpc.CallOptions, cb: Callback) => grpc.ClientWritableStream<unknown>;

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
    // HTTP/2's default 64 KiB receive window holds a snapshot read (ReadSnapshot) to a few hundred MiB/s; 16 MiB
    // lets the array run ahead by its read-ahead. It bounds what one stream may buffer on our side, too.
    // Each backend's driver has its own connection (grpc-js would otherwise share one per address): on the host
    // path one backend's snapshot reads and another's target writes then do not queue on one HTTP/2 session
    // (phase 1 of 512 MiB alpha -> gamma, one array process: 117-124 -> 125-144 MiB/s).
    this.client = new Client(endpoint, grpc.credentials.createInsecure(), { 'grpc-node.flow_control_window': 16 * 1024 * 1024, 'grpc.use_local_subchannel_pool': 1 });
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

  /**
   * Calls a server-streaming `method` and yields its messages. Breaking out
   * of the loop, or `signal` aborting, cancels the call (the array stops
   * sending). No deadline of its own: the caller's signal bounds it.
   */
  async *stream<Res>(method: string, request: object, signal: AbortSignal): AsyncGenerator<Res> {
    const fn = (this.client as unknown as Record<string, ServerStreamMethod>)[method];
    if (!fn) throw new TypeError(`SimulatorService has no method ${method}`);
    if (signal.aborted) throw new FerryError('DEADLINE_EXCEEDED', `${method} was not sent: the call was aborted`);
    const call = fn.call(this.client, request, {});
    // The CANCELLED status our own cancel causes arrives after the loop is gone: nobody else listens then.
    call.on('error', () => undefined);
    const onAbort = () => call.cancel();
    signal.addEventListener('abort', onAbort, { once: true });
    try {
      for await (const message of call) yield message as Res;
    } catch (err) {
      throw this.toFerryError(method, err as grpc.ServiceError, signal.aborted);
    } finally {
      signal.removeEventListener('abort', onAbort);
      // A consumer that broke out early: stop the array sending the rest.
      call.cancel();
    }
  }

  /**
   * Calls a client-streaming `method`, sending each of `messages` as the
   * stream takes it (waiting for 'drain' when its buffer is full, so memory
   * does not grow with the data), and resolves with the answer. An error
   * answered mid-stream stops the sending; `signal` aborting cancels the call.
   */
  async sendStream<Res>(method: string, messages: AsyncIterable<object>, signal: AbortSignal): Promise<Res> {
    const fn = (this.client as unknown as Record<string, ClientStreamMethod>)[method];
    if (!fn) throw new TypeError(`SimulatorService has no method ${method}`);
    if (signal.aborted) throw new FerryError('DEADLINE_EXCEEDED', `${method} was not sent: the call was aborted`);
    let settled = false;
    let wake: (() => void) | null = null;
    const answer = new Promise<Res>((resolve, reject) => {
      const call = fn.call(this.client, {}, (err, res) => {
        settled = true;
        signal.removeEventListener('abort', onAbort);
        wake?.();
        if (err) reject(this.toFerryError(method, err, signal.aborted));
        else resolve(res as Res);
      });
      const onAbort = () => call.cancel();
      signal.addEventListener('abort', onAbort, { once: true });
      const send = async () => {
        try {
          for await (const message of messages) {
            if (settled) break;
            if (!call.write(message)) {
              await new Promise<void>((resume) => {
                wake = resume;
                call.once('drain', resume);
              });
              wake = null;
            }
          }
          if (!settled) call.end();
        } catch (err) {
          // The data's own source failed: cancel, and report its error rather than the cancellation.
          call.cancel();
          reject(err);
        }
      };
      void send();
    });
    return answer;
  }

  /** Closes the channel. */
  close(): void {
    this.client.close();
  }

  private toFerryError(method: string, err: grpc.ServiceError, aborted: boolean): FerryError {
    if (aborted || err.code === grpc.status.CANCELLED) {
      return new FerryError('DEADLINE_EXCEEDED', `${method} to the array at ${this.endpoint} was aborted (deadline or shutdown)`, { cause: err });
    }
    const details = err.details || err.message;
    const arrayCode = arrayCodeOf(err);
    if (arrayCode === undefined) {
      // No array answered: the channel could not reach it, or our deadline passed.
      const code = TRANSPORT_CODE_MAP[err.code] ?? 'DRIVER_ERROR';
      const message =
        code === 'UNAVAILABLE'
          ? `the array at ${this.endpoint} is unavailable: ${details}`
          : code === 'DEADLINE_EXCEEDED'
            ? `${method} to the array at ${this.endpoint} ran past its ${this.timeoutMs} ms deadline`
            : `${method} to the array at ${this.endpoint} failed with ${grpc.status[err.code] ?? err.code}: ${details}`;
      return new FerryError(code, message, { cause: err });
    }
    const code = ARRAY_CODE_MAP[arrayCode] ?? 'DRIVER_ERROR';
    const message =
      code === 'UNAVAILABLE'
        ? `the array at ${this.endpoint} is unavailable: ${details}`
        : code === 'DRIVER_ERROR'
          ? `the array answered ${method} with ${arrayCode}: ${details}`
          : details;
    return new FerryError(code, message, { cause: err });
  }
}
