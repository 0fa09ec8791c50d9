/**
 * The kit's pass-through for a kind-process plugin, the wire-level twin of
 * shim.ts: ferryd starts this as the plugin's driver process, and it starts
 * the vendor's command in turn, on a socket of its own, and relays every
 * ferry.driver.v1.DriverService and grpc.health.v1.Health/Check call to it
 * byte for byte: the request, its metadata, deadline and cancellation; the
 * response, or the status with its message and trailers (ErrorInfo in
 * grpc-status-details-bin included). The host data path's streams are
 * relayed the same way, message by message as each side reads: ReadExtents
 * and WatchChanges (server-streaming) and WriteExtents (client-streaming), cancelled on the
 * other side when either side cancels. Around each Start, Complete and
 * Cancel it tells the kit's control server (control.ts) that the call
 * begins and how it ended, and waits for the answer, so that a check can
 * hold the call at an exact point as it can for a module plugin.
 *
 * It lives and dies with the vendor's process, so that ferryd sees what the
 * driver does: it exits as the driver exits (the same code, or the same
 * signal), which ferryd answers with a restart; the end of its stdin (ferryd
 * is gone) ends the driver's, and SIGTERM is passed on. It tells the control
 * server the driver's pid, which the checks that kill the driver SIGKILL.
 *
 *   node plugins/conformance/wire-shim.mjs --control URL --dir PLUGIN_DIR -- COMMAND...
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { completeStatusFromWire, DRIVER_SERVICE } from '../../host/driver-wire.ts';
import { commandFile, OWN_SUBCHANNELS } from '../../host/supervisor.ts';
import { serviceDefinition } from '../../lib/api.ts';
import { bind } from '../../lib/rpc.ts';
import { decodeStatusDetails, STATUS_DETAILS_METADATA } from '../../lib/status.ts';
import type { HookedCall, HookEvent, HookPhase } from './control.ts';

/** The DriverService methods whose calls the control server is told of, by their hook name. */
const HOOKED: Readonly<Record<string, HookedCall>> = { Start: 'start', Complete: 'complete', Cancel: 'cancel' };

/** The relayed services. Health/Watch (streaming) is not: ferryd asks Check only. DriverService's streams are. */
const SERVICES = [DRIVER_SERVICE, 'grpc.health.v1.Health'];

const identity = (bytes: Buffer) => bytes;

/** What the shim is started with. */
export interface ShimArgs {
  control: string;
  dir: string;
  command: string[];
}

/** Parses `--control URL --dir DIR -- COMMAND...`; throws naming what is missing. */
export function parseShimArgs(argv: readonly string[]): ShimArgs {
  const dash = argv.indexOf('--');
  const flags = argv.slice(0, dash < 0 ? argv.length : dash);
  const value = (name: string) => {
    const i = flags.indexOf(name);
    const v = i >= 0 ? flags[i + 1] : undefined;
    if (!v) throw new Error(`wire-shim: ${name} is required`);
    return v;
  };
  const command = dash < 0 ? [] : argv.slice(dash + 1);
  if (command.length === 0) throw new Error('wire-shim: the driver command goes after --');
  return { control: value('--control'), dir: value('--dir'), command };
}

/** Runs the shim until the driver exits; then exits as it did. */
export async function main(argv: readonly string[]): Promise<void> {
  const args = parseShimArgs(argv);
  const listen = process.env.FERRY_DRIVER_LISTEN;
  if (!listen) throw new Error('wire-shim: FERRY_DRIVER_LISTEN is not set (ferryd sets it for a driver process)');
  const socketDir = mkdtempSync(join(tmpdir(), 'ferry-shim-'));
  const inner = `unix:${join(socketDir, 'driver.sock')}`;
  const child = spawn(commandFile(args.dir, args.command), args.command.slice(1), {
    cwd: args.dir,
    env: { ...process.env, FERRY_DRIVER_LISTEN: inner },
    stdio: ['pipe', 'inherit', 'inherit'],
  });
  child.stdin!.on('error', () => {});
  // ferryd gone (its pipe closed): end the driver's stdin as ferryd's end would have.
  process.stdin.on('end', () => child.stdin!.end());
  process.stdin.on('error', () => child.stdin!.end());
  process.stdin.resume();
  process.on('SIGTERM', () => child.kill('SIGTERM'));
  process.on('SIGINT', () => {});

  const server = new grpc.Server();
  const client = new grpc.Client(inner, grpc.credentials.createInsecure(), OWN_SUBCHANNELS);
  const inFlight = new Set<Promise<void>>();
  for (const service of SERVICES) {
    for (const [name, method] of Object.entries(serviceDefinition(service))) {
      const driver = service === DRIVER_SERVICE;
      if (method.requestStream && method.responseStream) continue;
      if (method.responseStream) {
        if (driver) server.register(method.path, relayServerStream(client, method.path, inFlight), identity, identity, 'serverStream');
        continue;
      }
      if (method.requestStream) {
        if (driver) server.register(method.path, relayClientStream(client, method.path, inFlight), identity, identity, 'clientStream');
        continue;
      }
      const hook = driver ? HOOKED[name] : undefined;
      server.register(method.path, relay(client, method.path, inFlight, hook && { call: hook, url: args.control, method }), identity, identity, 'unary');
    }
  }

  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.on('exit', (code, signal) => resolve({ code, signal }));
    child.on('error', (err) => {
      process.stderr.write(`wire-shim: cannot start ${args.command.join(' ')}: ${err.message}\n`);
      resolve({ code: 127, signal: null });
    });
  });
  if (child.pid !== undefined) await post(args.control, 'process', { pid: child.pid });
  await bind(server, listen);
  const { code, signal } = await exited;
  // Calls cut off by the driver's death end as they would have without the wrapper (UNAVAILABLE), not cancelled by its exit.
  await Promise.all(inFlight);
  server.forceShutdown();
  client.close();
  rmSync(socketDir, { recursive: true, force: true });
  if (signal) {
    process.removeAllListeners(signal);
    process.kill(process.pid, signal);
  }
  process.exit(code ?? 1);
}

/** What a hooked method needs: its hook name, the control URL, and the method's own (de)serializers. */
interface Hook {
  call: HookedCall;
  url: string;
  method: { requestDeserialize: (b: Buffer) => unknown; responseDeserialize: (b: Buffer) => unknown };
}

/** A unary handler that relays the call to the driver, telling the control server around it when `hook` is given. */
function relay(client: grpc.Client, path: string, inFlight: Set<Promise<void>>, hook: Hook | undefined): grpc.handleUnaryCall<Buffer, Buffer> {
  return (call, callback) => {
    let answered!: () => void;
    const done = new Promise<void>((resolve) => (answered = resolve));
    inFlight.add(done);
    void done.then(() => inFlight.delete(done));
    void (async () => {
      const base = hook && eventBase(hook, call.request);
      if (hook && base) await post(hook.url, 'before', base);
      const deadline = call.getDeadline();
      const options: grpc.CallOptions = deadline === Infinity ? {} : { deadline };
      const pending = client.makeUnaryRequest(path, identity, identity, call.request, call.metadata.clone(), options, (err, value) => {
        void (async () => {
          if (hook && base) await post(hook.url, 'after', err ? { ...base, ...failure(err) } : { ...base, ok: true, result: contractForm(hook, value!) });
          if (err) callback({ code: err.code, details: err.details, metadata: err.metadata });
          else callback(null, value);
          answered();
        })();
      });
      call.on('cancelled', () => pending.cancel());
    })();
  };
}

/** The call options that keep the caller's deadline (none when it set none). */
function deadlineOf(call: { getDeadline(): grpc.Deadline }): grpc.CallOptions {
  const deadline = call.getDeadline();
  return deadline === Infinity ? {} : { deadline };
}

/** Counts a relayed call in flight until `settle` is called. */
function track(inFlight: Set<Promise<void>>): () => void {
  let settle!: () => void;
  const done = new Promise<void>((resolve) => (settle = resolve));
  inFlight.add(done);
  void done.then(() => inFlight.delete(done));
  return settle;
}

/**
 * A server-streaming handler (ReadExtents) that relays the call to the
 * driver: its messages as the caller reads them (the driver's stream is
 * paused while the caller's is full), then its status and trailers. A
 * caller that cancels cancels the driver's call; a driver that ends the
 * call with CANCELLED (or any status) ends the caller's with it.
 */
function relayServerStream(client: grpc.Client, path: string, inFlight: Set<Promise<void>>): grpc.handleServerStreamingCall<Buffer, Buffer> {
  return (call) => {
    const settle = track(inFlight);
    const inner = client.makeServerStreamRequest(path, identity, identity, call.request, call.metadata.clone(), deadlineOf(call));
    inner.on('metadata', (headers: grpc.Metadata) => call.sendMetadata(headers));
    inner.on('data', (message: Buffer) => {
      if (!call.write(message)) inner.pause();
    });
    call.on('drain', () => inner.resume());
    // The status can come while messages are still buffered (the caller slow): answer it after the last of them.
    let status: grpc.StatusObject | undefined;
    let ended = false;
    let cancelled = false;
    const finish = () => {
      if (!status || (!ended && !cancelled)) return;
      if (status.code === grpc.status.OK) call.end(status.metadata);
      else call.emit('error', { code: status.code, details: status.details, metadata: status.metadata });
      settle();
    };
    inner.on('end', () => {
      ended = true;
      finish();
    });
    // A failed call's error event carries the same status as its 'status' event, which answers.
    inner.on('error', () => {});
    inner.on('status', (s: grpc.StatusObject) => {
      status = s;
      finish();
    });
    call.on('cancelled', () => {
      cancelled = true;
      inner.cancel();
      inner.resume();
      finish();
    });
  };
}

/**
 * A client-streaming handler (WriteExtents) that relays the call to the
 * driver: the caller's messages as the driver reads them (the caller's
 * stream is paused while the driver's is full), its end, and the driver's
 * response or status with its trailers. A caller that cancels cancels the
 * driver's call; a driver that answers early (an error mid-stream) answers
 * the caller at once.
 */
function relayClientStream(client: grpc.Client, path: string, inFlight: Set<Promise<void>>): grpc.handleClientStreamingCall<Buffer, Buffer> {
  return (call, callback) => {
    const settle = track(inFlight);
    let answered = false;
    let response: Buffer | undefined;
    // The callback comes just before the 'status' event, which carries the trailers: the caller is answered from that.
    const inner = client.makeClientStreamRequest(path, identity, identity, call.metadata.clone(), deadlineOf(call), (_err, value) => {
      response = value;
    });
    inner.on('status', (status: grpc.StatusObject) => {
      answered = true;
      call.resume();
      if (status.code === grpc.status.OK && response !== undefined) callback(null, response, status.metadata);
      else callback({ code: status.code, details: status.details, metadata: status.metadata });
      settle();
    });
    inner.on('metadata', (headers: grpc.Metadata) => call.sendMetadata(headers));
    call.on('data', (message: Buffer) => {
      if (answered) return;
      if (!inner.write(message)) call.pause();
    });
    inner.on('drain', () => call.resume());
    call.on('end', () => {
      if (!answered) inner.end();
    });
    call.on('cancelled', () => inner.cancel());
  };
}

/** The event's call, backend, migration and share, from the request; undefined if it does not decode (the driver will say so). */
function eventBase(hook: Hook, request: Buffer): Omit<HookEvent, 'phase'> | undefined {
  try {
    const m = hook.method.requestDeserialize(request) as { backend: string; migration: { id: string; shareId: string } | null };
    return { call: hook.call, backend: m.backend, migration: m.migration?.id ?? '', share: m.migration?.shareId ?? '' };
  } catch {
    return undefined;
  }
}

/** A failed call as the control server records it: the Ferry code (ErrorInfo reason, else the gRPC status name) and the message. */
function failure(err: grpc.ServiceError): Pick<HookEvent, 'ok' | 'code' | 'message'> {
  const details = err.metadata?.get(STATUS_DETAILS_METADATA)[0];
  const reason = details instanceof Buffer ? decodeStatusDetails(details)?.errorInfo?.reason : undefined;
  return { ok: false, code: reason ?? grpc.status[err.code], message: err.details };
}

/** The response as the checks read a driver's answer: its fields, and Complete's status spelt as CompleteResult's. */
function contractForm(hook: Hook, response: Buffer): unknown {
  const decoded = hook.method.responseDeserialize(response) as Record<string, unknown>;
  if (hook.call !== 'complete') return decoded;
  return { ...decoded, status: completeStatusFromWire(String(decoded.status)) ?? decoded.status };
}

/** Posts to the control server and waits for its answer; if the kit is gone, goes on. */
async function post(url: string, path: HookPhase | 'process', body: object): Promise<void> {
  try {
    const res = await fetch(`${url}/${path}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(path === 'process' ? body : { ...body, phase: path }) });
    await res.arrayBuffer();
  } catch {
    // The kit is not listening (it stopped, or this driver outlived it): relay as a plain pipe.
  }
}
