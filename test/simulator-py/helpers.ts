/**
 * Helpers for the Python driver's tests: the driver started as ferryd starts
 * a process driver (FERRY_DRIVER_LISTEN on a unix socket in a private temp
 * dir, stdin a pipe), its log lines, and promise clients of DriverService,
 * ConformanceAdapter and health over that socket, typed by the messages
 * generated into build/types/ferry/driver/v1.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import * as grpc from '@grpc/grpc-js';
import type { CancelResponse__Output } from '../../build/types/ferry/driver/v1/CancelResponse.ts';
import type { CheckCompatibilityResponse__Output } from '../../build/types/ferry/driver/v1/CheckCompatibilityResponse.ts';
import type { ChecksumShareResponse__Output } from '../../build/types/ferry/driver/v1/ChecksumShareResponse.ts';
import type { CompleteResponse__Output } from '../../build/types/ferry/driver/v1/CompleteResponse.ts';
import type { ContinueResponse__Output } from '../../build/types/ferry/driver/v1/ContinueResponse.ts';
import type { CreateShareRequest } from '../../build/types/ferry/driver/v1/CreateShareRequest.ts';
import type { CreateShareResponse__Output } from '../../build/types/ferry/driver/v1/CreateShareResponse.ts';
import type { DescribeResponse__Output } from '../../build/types/ferry/driver/v1/DescribeResponse.ts';
import type { GetPluginInfoResponse__Output } from '../../build/types/ferry/driver/v1/GetPluginInfoResponse.ts';
import type { ListSharesResponse__Output } from '../../build/types/ferry/driver/v1/ListSharesResponse.ts';
import type { LocateShareResponse__Output } from '../../build/types/ferry/driver/v1/LocateShareResponse.ts';
import type { MigrationCall } from '../../build/types/ferry/driver/v1/MigrationCall.ts';
import type { MigrationSpec } from '../../build/types/ferry/driver/v1/MigrationSpec.ts';
import type { OpenBackendRequest } from '../../build/types/ferry/driver/v1/OpenBackendRequest.ts';
import type { OpenBackendResponse__Output } from '../../build/types/ferry/driver/v1/OpenBackendResponse.ts';
import type { ProgressResponse__Output } from '../../build/types/ferry/driver/v1/ProgressResponse.ts';
import type { SetupRequest } from '../../build/types/ferry/driver/v1/SetupRequest.ts';
import type { SetupResponse__Output } from '../../build/types/ferry/driver/v1/SetupResponse.ts';
import type { StartResponse__Output } from '../../build/types/ferry/driver/v1/StartResponse.ts';
import type { WriteShareRequest } from '../../build/types/ferry/driver/v1/WriteShareRequest.ts';
import type { Struct, Struct__Output } from '../../build/types/google/protobuf/Struct.ts';
import type { Value, Value__Output } from '../../build/types/google/protobuf/Value.ts';
import { clientConstructor } from '../../lib/rpc.ts';
import { decodeStatusDetails, STATUS_DETAILS_METADATA } from '../../lib/status.ts';
import { ROOT } from '../helpers.ts';
import { defer, tempDir } from '../simulator/helpers.ts';

/** The plugin under test. */
export const PLUGIN_DIR = join(ROOT, 'plugins/simulator-py');
export const MANIFEST = JSON.parse(readFileSync(join(PLUGIN_DIR, 'plugin.json'), 'utf8')) as { name: string; version: string; command: string[] };

/** The ErrorInfo domain of the driver's errors. */
export const DOMAIN = 'ferry.driver.simulator-py';

interface Cleanup {
  after(fn: () => unknown): void;
}

type Callback<Res> = (err: grpc.ServiceError | null, res?: Res) => void;
type Unary<Req, Res> = (req: Req, options: grpc.CallOptions, cb: Callback<Res>) => grpc.ClientUnaryCall;

/** A unary call that can also be cancelled by the caller, as ferryd cancels a call at its deadline. */
export interface PendingCall<Res> {
  result: Promise<Res>;
  cancel(): void;
}

/** Promise calls on a generic grpc-js client. */
class PromiseClient {
  protected readonly client: grpc.Client;

  constructor(service: string, address: string) {
    const Client = clientConstructor(service);
    this.client = new Client(address, grpc.credentials.createInsecure(), { 'grpc.use_local_subchannel_pool': 1 });
  }

  /** Calls `method`; the promise rejects with the grpc ServiceError. */
  start<Req, Res>(method: string, request: Req, timeoutMs = 30_000): PendingCall<Res> {
    const fn = (this.client as unknown as Record<string, Unary<Req, Res>>)[method];
    if (!fn) throw new TypeError(`no method ${method}`);
    let call: grpc.ClientUnaryCall | undefined;
    const result = new Promise<Res>((resolve, reject) => {
      call = fn.call(this.client, request, { deadline: Date.now() + timeoutMs }, (err, res) => (err ? reject(err) : resolve(res as Res)));
    });
    return { result, cancel: () => call!.cancel() };
  }

  call<Req, Res>(method: string, request: Req, timeoutMs?: number): Promise<Res> {
    return this.start<Req, Res>(method, request, timeoutMs).result;
  }

  close(): void {
    this.client.close();
  }
}

/** A ferry.driver.v1.DriverService client. */
export class DriverClient extends PromiseClient {
  constructor(address: string) {
    super('ferry.driver.v1.DriverService', address);
  }
  getPluginInfo = () => this.call<object, GetPluginInfoResponse__Output>('GetPluginInfo', {});
  openBackend = (req: OpenBackendRequest) => this.call<OpenBackendRequest, OpenBackendResponse__Output>('OpenBackend', req);
  describe = (backend: string, timeoutMs?: number) => this.call<object, DescribeResponse__Output>('Describe', { backend }, timeoutMs);
  checkCompatibility = (call: MigrationCall) => this.call<MigrationCall, CheckCompatibilityResponse__Output>('CheckCompatibility', call);
  startMigration = (call: MigrationCall) => this.call<MigrationCall, StartResponse__Output>('Start', call);
  continueMigration = (call: MigrationCall, timeoutMs?: number) => this.call<MigrationCall, ContinueResponse__Output>('Continue', call, timeoutMs);
  complete = (call: MigrationCall) => this.call<MigrationCall, CompleteResponse__Output>('Complete', call);
  cancelMigration = (call: MigrationCall) => this.call<MigrationCall, CancelResponse__Output>('Cancel', call);
  progress = (call: MigrationCall) => this.call<MigrationCall, ProgressResponse__Output>('Progress', call);
}

/** A ferry.driver.v1.ConformanceAdapter client. */
export class AdapterClient extends PromiseClient {
  constructor(address: string) {
    super('ferry.driver.v1.ConformanceAdapter', address);
  }
  setup = (req: SetupRequest = {}) => this.call<SetupRequest, SetupResponse__Output>('Setup', req, 60_000);
  createShare = (req: CreateShareRequest) => this.call<CreateShareRequest, CreateShareResponse__Output>('CreateShare', req);
  writeShare = (req: WriteShareRequest) => this.call<WriteShareRequest, object>('WriteShare', req);
  checksumShare = (shareId: string) => this.call<object, ChecksumShareResponse__Output>('ChecksumShare', { shareId });
  locateShare = (shareId: string) => this.call<object, LocateShareResponse__Output>('LocateShare', { shareId });
  listShares = (backend: string) => this.call<object, ListSharesResponse__Output>('ListShares', { backend });
  deleteShare = (shareId: string) => this.call<object, object>('DeleteShare', { shareId });
  teardown = () => this.call<object, object>('Teardown', {}, 60_000);
}

/** Health's answer for `service`, by name (e.g. "SERVING"). */
export async function healthOf(address: string, service: string): Promise<string> {
  const health = new PromiseClient('grpc.health.v1.Health', address);
  try {
    return (await health.call<object, { status: string }>('Check', { service })).status;
  } finally {
    health.close();
  }
}

/** A log line of the driver, parsed. */
export type LogLine = Record<string, unknown> & { msg: string; level: string };

/** The driver process, as ferryd would hold it. */
export interface DriverProcess {
  child: ChildProcess;
  /** FERRY_DRIVER_LISTEN. */
  address: string;
  socket: string;
  driver: DriverClient;
  adapter: AdapterClient;
  /** Every stderr line so far, parsed (a line that is not JSON fails the test when the process exits). */
  logs: LogLine[];
  /** Resolves when the process has exited and its stderr is read to the end. */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/**
 * Starts driver.py with the plugin's own command, as ferryd does: in the
 * plugin folder, FERRY_DRIVER_LISTEN on a socket in a 0700 temp dir, stdin a
 * pipe. Resolves once it logs "serving"; killed when the test ends.
 */
export async function startDriver(t: Cleanup, env: NodeJS.ProcessEnv = {}): Promise<DriverProcess> {
  const dir = await tempDir(t);
  const socket = join(dir, 'driver.sock');
  const address = `unix:${socket}`;
  const [argv0, ...args] = MANIFEST.command;
  const child = spawn(argv0!, args, { cwd: PLUGIN_DIR, env: { ...process.env, ...env, FERRY_DRIVER_LISTEN: address }, stdio: ['pipe', 'pipe', 'pipe'] });
  const logs: LogLine[] = [];
  const garbage: string[] = [];
  let stdout = '';
  child.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
  let onServing: () => void = () => {};
  let isServing = false;
  const serving = new Promise<void>((resolve) => (onServing = () => ((isServing = true), resolve())));
  const stderrDone = new Promise<void>((resolve) => {
    createInterface({ input: child.stderr! })
      .on('line', (line) => {
        try {
          const entry = JSON.parse(line) as LogLine;
          logs.push(entry);
          if (entry.msg === 'serving') onServing();
        } catch {
          garbage.push(line);
        }
      })
      .on('close', resolve);
  });
  const exitedRaw = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
  const exited = exitedRaw.then(async (how) => {
    await stderrDone;
    assert.deepEqual(garbage, [], 'every stderr line of the driver is a JSON object');
    assert.equal(stdout, '', 'the driver writes nothing on stdout');
    return how;
  });
  await Promise.race([
    serving,
    exitedRaw.then(({ code, signal }) => {
      if (isServing) return;
      throw new Error(`driver.py exited (${code ?? signal}) before serving: ${JSON.stringify(logs)} ${garbage.join('\n')}`);
    }),
  ]);
  const driver = new DriverClient(address);
  const adapter = new AdapterClient(address);
  defer(t, async () => {
    driver.close();
    adapter.close();
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGKILL');
      await exitedRaw;
    }
  });
  return { child, address, socket, driver, adapter, logs, exited };
}

/** What a failed call said: its gRPC status by name, and its ErrorInfo. */
export interface Failure {
  status: string;
  message: string;
  reason?: string;
  domain?: string;
}

/** Awaits `promise`, which must reject with a gRPC error; returns what the error said. */
export async function failure(promise: Promise<unknown>): Promise<Failure> {
  try {
    await promise;
  } catch (err) {
    const e = err as grpc.ServiceError;
    if (typeof e.code !== 'number') throw err;
    const bytes = e.metadata?.get(STATUS_DETAILS_METADATA)[0];
    const info = Buffer.isBuffer(bytes) ? decodeStatusDetails(bytes)?.errorInfo : undefined;
    return { status: grpc.status[e.code]!, message: e.details, ...(info ? { reason: info.reason, domain: info.domain } : {}) };
  }
  assert.fail('the call succeeded; it should have failed');
}

/** Asserts that `promise` fails with Ferry code `code` in the driver's ErrorInfo, gRPC status `status`, and a message matching `message`. */
export async function failsWith(promise: Promise<unknown>, code: string, status: string, message?: RegExp): Promise<Failure> {
  const f = await failure(promise);
  assert.deepEqual({ status: f.status, reason: f.reason, domain: f.domain }, { status, reason: code, domain: DOMAIN }, `got ${JSON.stringify(f)}`);
  if (message) assert.match(f.message, message);
  return f;
}

/** A migration spec with the fields every test leaves alone filled in. */
export function spec(fields: Partial<MigrationSpec> & Pick<MigrationSpec, 'id' | 'shareId'>): MigrationSpec {
  return {
    sourceBackend: 'alpha',
    destinationBackend: 'beta',
    destinationPool: 'bronze',
    writable: true,
    nondisruptive: true,
    maxDowntimeMs: 2000,
    cutoverAction: 'CUTOVER_ACTION_ABORT',
    ...fields,
  };
}

/** The checkpoint bytes as JSON. */
export function checkpointOf(res: { checkpoint: Buffer }): unknown {
  return JSON.parse(res.checkpoint.toString('utf8'));
}

/** A JSON value as a google.protobuf.Value. */
function toValue(v: unknown): Value {
  if (v === null || v === undefined) return { nullValue: 'NULL_VALUE' };
  if (typeof v === 'string') return { stringValue: v };
  if (typeof v === 'number') return { numberValue: v };
  if (typeof v === 'boolean') return { boolValue: v };
  if (Array.isArray(v)) return { listValue: { values: v.map(toValue) } };
  return { structValue: toStruct(v as Record<string, unknown>) };
}

/** A JSON object as a google.protobuf.Struct (backend options, adapter config). */
export function toStruct(obj: Record<string, unknown>): Struct {
  return { fields: Object.fromEntries(Object.entries(obj).map(([k, v]) => [k, toValue(v)])) };
}

function fromValue(v: Value__Output): unknown {
  switch (v.kind) {
    case 'stringValue':
      return v.stringValue;
    case 'numberValue':
      return v.numberValue;
    case 'boolValue':
      return v.boolValue;
    case 'structValue':
      return fromStruct(v.structValue ?? null);
    case 'listValue':
      return (v.listValue?.values ?? []).map(fromValue);
    default:
      return null;
  }
}

/** A google.protobuf.Struct as the JSON object it carries. */
export function fromStruct(s: Struct__Output | null): Record<string, unknown> {
  return Object.fromEntries(Object.entries(s?.fields ?? {}).map(([k, v]) => [k, fromValue(v)]));
}
