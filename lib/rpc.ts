/**
 * gRPC plumbing every part of Ferry shares: clients and service definitions
 * from the compiled API description, the adapters that turn
 * `async (request) => response` into grpc-js handlers that answer exactly
 * once, binding with a one-line reason when an address cannot be had, and
 * shutdown with a grace period.
 *
 * What a thrown error becomes on the wire is the server's own rule: each
 * server passes a `StatusMapper` (ferryd's maps FerryError to its codes and
 * trailer; the simulated array has its own codes).
 */
import type * as http2 from 'node:http2';
import * as grpc from '@grpc/grpc-js';
import { serviceDefinition } from './api.ts';
import type { Log } from './log.ts';
import { encodeStatusDetails, STATUS_DETAILS_METADATA } from './status.ts';

export { serviceDefinition } from './api.ts';

/** A client constructor for a service of the compiled API. */
export function clientConstructor(fullName: string): grpc.ServiceClientConstructor {
  return grpc.makeGenericClientConstructor(serviceDefinition(fullName), fullName.split('.').pop() ?? fullName);
}

/**
 * The status an error is answered with: the gRPC code and message, and a
 * google.rpc.ErrorInfo (AIP-193) whose reason is the server's stable code,
 * sent in `grpc-status-details-bin`; `trailers` are extra metadata.
 */
export interface ErrorStatus {
  code: grpc.status;
  message: string;
  reason: string;
  domain: string;
  info?: Readonly<Record<string, string>>;
  trailers?: Readonly<Record<string, string>>;
  /** Log the error with its stack (a failure inside the server, not a caller's mistake). */
  logged?: boolean;
}

/** A server's rule for what a thrown value becomes; undefined for a value it does not know (answered as a bare INTERNAL). */
export type StatusMapper = (err: unknown) => ErrorStatus | undefined;

/**
 * Turns anything thrown by a handler into the status sent on the wire.
 * Values the mapper does not know are logged with their stack and sent as
 * a bare INTERNAL whose message names the method, so internals never leak.
 */
export function toServiceError(err: unknown, log: Log, method: string, mapError: StatusMapper): Partial<grpc.StatusObject> {
  let status = mapError(err);
  if (status === undefined) {
    log.error({ err, method }, 'unexpected error in handler');
    status = { code: grpc.status.INTERNAL, message: `internal error in ${method}; see the server log`, reason: 'INTERNAL', domain: 'grpc' };
  } else if (status.logged) {
    log.error({ err, method }, 'call failed');
  }
  return statusObject(status);
}

/** An ErrorStatus as grpc-js sends it: the code and message, the trailers, and the ErrorInfo in `grpc-status-details-bin`. */
export function statusObject(status: ErrorStatus): Partial<grpc.StatusObject> {
  const metadata = new grpc.Metadata();
  for (const [key, value] of Object.entries(status.trailers ?? {})) metadata.set(key, value);
  metadata.set(STATUS_DETAILS_METADATA, encodeStatusDetails(status.code, status.message, { reason: status.reason, domain: status.domain, metadata: { ...status.info } }));
  return { code: status.code, details: status.message, metadata };
}

/** An async unary handler. */
export type UnaryFn<Req, Res> = (request: Req, call: grpc.ServerUnaryCall<Req, Res>) => Promise<Res>;

/** Wraps an async function as a grpc-js unary handler that answers exactly once. */
export function unary<Req, Res>(method: string, log: Log, mapError: StatusMapper, fn: UnaryFn<Req, Res>): grpc.handleUnaryCall<Req, Res> {
  return (call, callback) => {
    let promise: Promise<Res>;
    try {
      promise = fn(call.request, call);
    } catch (err) {
      callback(toServiceError(err, log, method, mapError));
      return;
    }
    promise.then(
      (response) => callback(null, response),
      (err: unknown) => callback(toServiceError(err, log, method, mapError)),
    );
  };
}

/** An async server-streaming handler: writes with `call.write`, resolves when the stream should end. */
export type StreamFn<Req, Res> = (request: Req, call: grpc.ServerWritableStream<Req, Res>) => Promise<void>;

/** Wraps an async function as a grpc-js server-streaming handler that ends the stream exactly once. */
export function serverStream<Req, Res>(method: string, log: Log, mapError: StatusMapper, fn: StreamFn<Req, Res>): grpc.handleServerStreamingCall<Req, Res> {
  return (call) => {
    const finish = (err?: unknown) => {
      if (call.cancelled || call.destroyed) return;
      if (err === undefined) call.end();
      else call.emit('error', toServiceError(err, log, method, mapError));
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

/** An async client-streaming handler: reads `call` (a Readable of requests), resolves with the one response. */
export type ClientStreamFn<Req, Res> = (call: grpc.ServerReadableStream<Req, Res>) => Promise<Res>;

/** Wraps an async function as a grpc-js client-streaming handler that answers exactly once. */
export function clientStream<Req, Res>(method: string, log: Log, mapError: StatusMapper, fn: ClientStreamFn<Req, Res>): grpc.handleClientStreamingCall<Req, Res> {
  return (call, callback) => {
    let answered = false;
    const fail = (err: unknown) => {
      if (answered) return;
      answered = true;
      callback(toServiceError(err, log, method, mapError));
    };
    let promise: Promise<Res>;
    try {
      promise = fn(call);
    } catch (err) {
      fail(err);
      return;
    }
    promise.then((response) => {
      if (answered) return;
      answered = true;
      callback(null, response);
    }, fail);
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

/** The HTTP/2 receive window of Ferry's servers, per stream and per connection (so also what one connection may have buffered). */
export const SERVER_RECEIVE_WINDOW_BYTES = 16 * 1024 * 1024;

const widened = new WeakSet<object>();

/**
 * Raises a bound server's HTTP/2 receive window from Node's 64 KiB to
 * `bytes`, per stream and per connection. grpc-js 1.14 has no server option
 * for it (`grpc-node.flow_control_window` is the client's; grpc-node PR
 * #3058 adds it to servers), and at 64 KiB a client-streamed upload (the
 * host path's WriteTarget and WriteExtents) waits for a WINDOW_UPDATE round
 * trip every 64 KiB: with a busy event loop on either side that, not the
 * disk, set the host path's speed. grpc-js keeps its http2 servers in a
 * private map; this returns false when it finds none there (a grpc-js that
 * changed), which test/lib/rpc-window.test.ts asserts against.
 */
export function widenReceiveWindow(server: grpc.Server, bytes = SERVER_RECEIVE_WINDOW_BYTES): boolean {
  const servers = (server as unknown as { http2Servers?: unknown }).http2Servers;
  if (!(servers instanceof Map) || servers.size === 0) return false;
  for (const h2 of servers.keys() as IterableIterator<http2.Http2Server>) {
    if (widened.has(h2)) continue;
    widened.add(h2);
    h2.updateSettings({ initialWindowSize: bytes });
    h2.on('session', (session: http2.ServerHttp2Session) => {
      try {
        session.setLocalWindowSize(bytes);
      } catch {
        // A session that closed at once has no window to raise.
      }
    });
  }
  return true;
}

/** Binds a server (plaintext unless `credentials` say otherwise) and resolves with the bound address ("127.0.0.1:port" or "unix:path"). Rejects with a ListenError. */
export async function bind(server: grpc.Server, address: string, credentials = grpc.ServerCredentials.createInsecure()): Promise<string> {
  const port = await new Promise<number>((resolve, reject) => {
    server.bindAsync(address, credentials, (err, p) => (err ? reject(listenError(address, err)) : resolve(p)));
  });
  widenReceiveWindow(server);
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
  return listenFailure(address, code, err.message.replace(/^No address added out of total \d+ resolved errors: /, ''));
}

/** The ListenError of a failed listen on `address`: what its errno code means, or else `text` (for any server, gRPC or not). */
export function listenFailure(address: string, code: string | undefined, text: string): ListenError {
  const known = code ? LISTEN_PROBLEMS[code] : undefined;
  return new ListenError(address, code, `cannot listen on ${address}: ${known ? `${known} (${code})` : text}`);
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
