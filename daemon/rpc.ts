/**
 * gRPC plumbing shared by the daemon and the simulator: proto loading, the
 * adapter that turns `async (request) => response` into a grpc-js handler
 * that answers exactly once, and the translation of errors to status codes.
 */
import * as grpc from '@grpc/grpc-js';
import { serviceDefinition } from '../lib/api.ts';
import { encodeStatusDetails, STATUS_DETAILS_METADATA } from '../lib/status.ts';
import { ErrorCodes, FerryError } from '../plugins/api/index.ts';
import type { Log } from './log.ts';

export { serviceDefinition } from '../lib/api.ts';

/** A client constructor for a service of the compiled API, for tests, the CLI and drivers. */
export function clientConstructor(fullName: string): grpc.ServiceClientConstructor {
  return grpc.makeGenericClientConstructor(serviceDefinition(fullName), fullName.split('.').pop() ?? fullName);
}

/** The ErrorInfo domain of the migration API's errors. */
export const FERRY_ERROR_DOMAIN = 'ferry.v1';

/** The trailer that carries our stable error code beside the gRPC status. */
export const ERROR_CODE_METADATA = 'ferry-error-code';

/**
 * Turns anything thrown by a handler into the status sent on the wire, twice
 * over: our `ferry-error-code` trailer, and a google.rpc.Status with an
 * ErrorInfo (reason = the stable code, `domain`, the error's details as
 * metadata) that any gRPC client can read (AIP-193). FerryErrors keep their
 * message and code; anything else is logged with its stack and sent as a
 * bare INTERNAL, so internals never leak to callers.
 */
export function toServiceError(err: unknown, log: Log, method: string, domain = FERRY_ERROR_DOMAIN): Partial<grpc.StatusObject> {
  let status: { code: grpc.status; details: string; reason: string; info: Record<string, string> };
  if (err instanceof FerryError) {
    if (err.code === 'INTERNAL' || err.code === 'DRIVER_ERROR') log.error({ err, method }, 'call failed');
    status = { code: ErrorCodes[err.code], details: err.message, reason: err.code, info: err.details };
  } else {
    log.error({ err, method }, 'unexpected error in handler');
    status = { code: grpc.status.INTERNAL, details: `internal error in ${method}; see the server log`, reason: 'INTERNAL', info: {} };
  }
  const metadata = new grpc.Metadata();
  metadata.set(ERROR_CODE_METADATA, status.reason);
  metadata.set(STATUS_DETAILS_METADATA, encodeStatusDetails(status.code, status.details, { reason: status.reason, domain, metadata: status.info }));
  return { code: status.code, details: status.details, metadata };
}

/** An async unary handler. */
export type UnaryFn<Req, Res> = (request: Req, call: grpc.ServerUnaryCall<Req, Res>) => Promise<Res>;

/** Wraps an async function as a grpc-js unary handler that answers exactly once. */
export function unary<Req, Res>(method: string, log: Log, fn: UnaryFn<Req, Res>, domain = FERRY_ERROR_DOMAIN): grpc.handleUnaryCall<Req, Res> {
  return (call, callback) => {
    let promise: Promise<Res>;
    try {
      promise = fn(call.request, call);
    } catch (err) {
      callback(toServiceError(err, log, method, domain));
      return;
    }
    promise.then(
      (response) => callback(null, response),
      (err: unknown) => callback(toServiceError(err, log, method, domain)),
    );
  };
}

/** An async server-streaming handler: writes with `call.write`, resolves when the stream should end. */
export type StreamFn<Req, Res> = (request: Req, call: grpc.ServerWritableStream<Req, Res>) => Promise<void>;

/** Wraps an async function as a grpc-js server-streaming handler that ends the stream exactly once. */
export function serverStream<Req, Res>(method: string, log: Log, fn: StreamFn<Req, Res>): grpc.handleServerStreamingCall<Req, Res> {
  return (call) => {
    const finish = (err?: unknown) => {
      if (call.cancelled || call.destroyed) return;
      if (err === undefined) call.end();
      else call.emit('error', toServiceError(err, log, method));
    };
    let promise: Promise<void>;
    try {
      promise = fn(call.request, call);
    } catch (err) {
      finish(err);
      return;
    }
    promise.then(() => finish(), finish);
  };
}

/** Thrown by `bind` when the address cannot be listened on; the message is one line naming the address and why. */
export class ListenError extends Error {
  constructor(
    /** The address as it was asked for. */
    readonly address: string,
    /** The errno code behind it (EADDRINUSE, EACCES, ...), when grpc-js said one. */
    readonly code: string | undefined,
    message: string,
  ) {
    super(message);
    this.name = 'ListenError';
  }
}

/** What each errno code means for someone choosing a listen address. */
const LISTEN_PROBLEMS: Record<string, string> = {
  EADDRINUSE: 'the address is in use by another program (another ferryd or ferry-sim?)',
  EACCES: 'permission denied (a port below 1024 needs privileges; a unix socket, a folder this user may write)',
  EADDRNOTAVAIL: 'no network interface of this machine has that address',
};

/** Binds a server and resolves with the bound address ("127.0.0.1:port" or "unix:path"). Rejects with a ListenError. */
export async function bind(server: grpc.Server, address: string): Promise<string> {
  const port = await new Promise<number>((resolve, reject) => {
    server.bindAsync(address, grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(listenError(address, err)) : resolve(p)));
  });
  if (address.startsWith('unix:')) return address;
  const host = address.slice(0, address.lastIndexOf(':'));
  return `${host}:${port}`;
}

/**
 * grpc-js says only "No address added out of total 1 resolved errors:
 * [listen EADDRINUSE: ...]"; this names the address and says what the code means.
 */
function listenError(address: string, err: Error): ListenError {
  const code = /\b(E[A-Z]{3,})\b/.exec(err.message)?.[1];
  const known = code ? LISTEN_PROBLEMS[code] : undefined;
  const why = known ? `${known} (${code})` : err.message.replace(/^No address added out of total \d+ resolved errors: /, '');
  return new ListenError(address, code, `cannot listen on ${address}: ${why}`);
}

/** Shuts a server down, waiting up to `graceMs` for calls in flight, then forcing. */
export async function shutdown(server: grpc.Server, graceMs: number): Promise<void> {
  await new Promise<void>((resolve) => {
    const timer = setTimeout(() => {
      server.forceShutdown();
      resolve();
    }, graceMs);
    timer.unref();
    server.tryShutdown(() => {
      clearTimeout(timer);
      resolve();
    });
  });
}

/** Reads the stable error code from a client-side gRPC error, if the server sent one. */
export function errorCodeOf(err: unknown): string | undefined {
  const md = (err as { metadata?: grpc.Metadata }).metadata;
  const value = md?.get(ERROR_CODE_METADATA)[0];
  return typeof value === 'string' ? value : undefined;
}
