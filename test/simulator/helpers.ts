/**
 * Helpers for the simulator's tests: temp dirs, an array served over real
 * gRPC on 127.0.0.1:0 (in this process, or as a real ferry-sim child
 * process for crash tests), a promise client, and bounded waits on job
 * states.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import { silentLog } from '../../lib/log.ts';
import type { MigrationSpec } from '../../plugins/api/index.ts';
import { bind, clientConstructor, shutdown } from '../../lib/rpc.ts';
import { SIMULATOR_SERVICE, SimArray, addSimulatorService } from '../../simulator/index.ts';
import type { SimulatorConfig } from '../../simulator/index.ts';

/** The repository root. */
export const ROOT = fileURLToPath(new URL('../..', import.meta.url));

const KiB = 1024;
const MiB = 1024 * KiB;

/** Small blocks and chunks so that a few-MiB share has many of each; small pools to test capacity. */
export const TEST_CONFIG: Partial<SimulatorConfig> = {
  blockSizeBytes: 4 * KiB,
  chunkSizeBytes: 64 * KiB,
  workers: 2,
  backends: [
    { name: 'alpha', pools: [{ name: 'gold', capacityBytes: 64 * MiB }, { name: 'silver', capacityBytes: 64 * MiB }] },
    { name: 'beta', pools: [{ name: 'bronze', capacityBytes: 64 * MiB }, { name: 'tiny', capacityBytes: 2 * MiB }] },
  ],
};

/** TEST_CONFIG with a second array: backend gamma (pool iron, 64 MiB) on sim-2. */
export const TWO_ARRAYS: Partial<SimulatorConfig> = {
  ...TEST_CONFIG,
  backends: [...TEST_CONFIG.backends!, { name: 'gamma', array: 'sim-2', pools: [{ name: 'iron', capacityBytes: 64 * MiB }] }],
};

/** Something that runs cleanups when a test ends. */
interface Cleanup {
  after(fn: () => unknown): void;
}

const cleanups = new WeakMap<Cleanup, Array<() => unknown>>();

/**
 * Runs `fn` when the test ends, in reverse order of registration (node's
 * `t.after` runs hooks first-in first-out, which would remove a data dir
 * before the array using it is closed).
 */
export function defer(t: Cleanup, fn: () => unknown): void {
  let stack = cleanups.get(t);
  if (!stack) {
    const fns: Array<() => unknown> = [];
    stack = fns;
    cleanups.set(t, fns);
    t.after(async () => {
      while (fns.length > 0) await fns.pop()!();
    });
  }
  stack.push(fn);
}

/** A temp dir removed when the test ends, after everything registered later is closed. */
export async function tempDir(t: Cleanup): Promise<string> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'ferry-sim-test-'));
  defer(t, () => rm(dir, { recursive: true, force: true }));
  return dir;
}

/** A gRPC error as the client sees it. */
export type CallError = grpc.ServiceError;

type Callback = (err: grpc.ServiceError | null, res: unknown) => void;
type Method = (req: unknown, options: grpc.CallOptions, cb: Callback) => grpc.ClientUnaryCall;

/** A promise client of SimulatorService. Responses are loosely typed: tests read fields by name. */
export class SimClient {
  private readonly client: grpc.Client;

  constructor(address: string) {
    const Client = clientConstructor(SIMULATOR_SERVICE);
    // Its own subchannels: grpc-js otherwise shares them per address, and a client made after a server
    // restart on the same address would inherit the old client's reconnect backoff (UNAVAILABLE at once).
    this.client = new Client(address, grpc.credentials.createInsecure(), { 'grpc.use_local_subchannel_pool': 1 });
  }

  /** Calls `method`; rejects with the grpc ServiceError. */
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  call<T = any>(method: string, request: object = {}, timeoutMs = 30_000): Promise<T> {
    const fn = (this.client as unknown as Record<string, Method>)[method];
    if (!fn) throw new TypeError(`no method ${method}`);
    return new Promise((resolve, reject) => {
      fn.call(this.client, request, { deadline: Date.now() + timeoutMs }, (err, res) => (err ? reject(err) : resolve(res as T)));
    });
  }

  close(): void {
    this.client.close();
  }
}

/** An array in this process, served on 127.0.0.1:0. */
export interface ServedArray {
  array: SimArray;
  client: SimClient;
  address: string;
  dataDir: string;
  /** Closes server and array (idempotent). */
  close(): Promise<void>;
}

/** Opens an array in `dataDir` (a new temp dir by default) and serves it; closed when the test ends. */
export async function serveArray(t: Cleanup, options: { dataDir?: string; config?: Partial<SimulatorConfig> } = {}): Promise<ServedArray> {
  const dataDir = options.dataDir ?? (await tempDir(t));
  const array = await SimArray.open({ dataDir, config: options.config ?? TEST_CONFIG, log: silentLog() });
  const server = new grpc.Server();
  addSimulatorService(server, array, silentLog());
  const address = await bind(server, '127.0.0.1:0');
  const client = new SimClient(address);
  let closed: Promise<void> | undefined;
  const close = () =>
    (closed ??= (async () => {
      client.close();
      // As ferry-sim does: WatchJobs streams end first, or the drain would wait out its grace for them.
      array.jobs.closeWatches();
      await shutdown(server, 1000);
      await array.close();
    })());
  defer(t, close);
  return { array, client, address, dataDir, close };
}

/** Asserts that `promise` rejects with gRPC status `code` and a message matching `message`. */
export async function rejectsWith(promise: Promise<unknown>, code: grpc.status, message?: RegExp): Promise<grpc.ServiceError> {
  try {
    await promise;
  } catch (err) {
    const e = err as grpc.ServiceError;
    assert.equal(grpc.status[e.code], grpc.status[code], `expected ${grpc.status[code]}, got ${grpc.status[e.code]}: ${e.details}`);
    if (message) assert.match(e.details, message);
    return e;
  }
  assert.fail(`expected ${grpc.status[code]}, but the call succeeded`);
}

/** Polls GetJob every 10 ms until `done(job)`, for at most `timeoutMs`; returns that job. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export async function waitForJob(client: SimClient, jobId: string, done: (job: any) => boolean, what: string, timeoutMs = 30_000): Promise<any> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const job = await client.call('GetJob', { jobId });
    if (done(job)) return job;
    if (Date.now() > until) assert.fail(`job ${jobId} did not reach "${what}" within ${timeoutMs} ms; it is ${JSON.stringify(job)}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** Waits until the job is SYNCING (phase 1 done). */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export function phase1Done(client: SimClient, jobId: string): Promise<any> {
  return waitForJob(client, jobId, (j) => j.phase1Done && j.state === 'JOB_STATE_SYNCING', 'phase 1 done');
}

/** Deterministic bytes for a test: sha256 in counter mode of `seed`. */
export function pattern(seed: string, length: number): Buffer {
  const out = Buffer.alloc(length);
  for (let at = 0, i = 0; at < length; at += 32, i++) createHash('sha256').update(`${seed}:${i}`).digest().copy(out, at);
  return out;
}

/** sha256 hex of a buffer. */
export function sha256(buf: Buffer): string {
  return createHash('sha256').update(buf).digest('hex');
}

/** Creates a share and fills it with `pattern(seed)`; returns the content. */
export async function filledShare(
  client: SimClient,
  shareId: string,
  sizeBytes: number,
  where: { backend: string; pool: string; metadata?: Record<string, string> } = { backend: 'alpha', pool: 'gold' },
  seed = shareId,
): Promise<Buffer> {
  await client.call('CreateShare', { shareId, ...where, sizeBytes });
  const content = pattern(seed, sizeBytes);
  for (let off = 0; off < sizeBytes; off += MiB) {
    await client.call('WriteShare', { shareId, offset: off, data: content.subarray(off, Math.min(sizeBytes, off + MiB)) });
  }
  return content;
}

/** Bytes used in each pool of the array, by "backend#pool" (shares, targets, places not yet retired), as ListBackends counts them. */
export async function poolUsage(client: SimClient): Promise<Record<string, number>> {
  const { backends } = await client.call('ListBackends');
  const out: Record<string, number> = {};
  for (const b of backends as { name: string; pools: { name: string; usedBytes: string | number }[] }[]) for (const p of b.pools) out[`${b.name}#${p.name}`] = Number(p.usedBytes);
  return out;
}

/** The .img files in an array's data dir. */
export async function dataFiles(dataDir: string): Promise<string[]> {
  return (await readdir(path.join(dataDir, 'shares'))).filter((f) => f.endsWith('.img')).sort();
}

/** A ferry-sim child process. */
export interface SimProcess {
  child: ChildProcess;
  address: string;
  client: SimClient;
  /** Resolves when the process exits. */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/** Writes a config file for ferry-sim and returns its path. */
export async function configFile(dir: string, config: Partial<SimulatorConfig> = TEST_CONFIG): Promise<string> {
  const file = path.join(dir, 'sim-config.json');
  await writeFile(file, JSON.stringify(config));
  return file;
}

/** Starts `ferry-sim` as a real child process on `listen` (default 127.0.0.1:0) and connects to it; killed when the test ends. */
export async function spawnSim(t: Cleanup, dataDir: string, config: string, listen = '127.0.0.1:0'): Promise<SimProcess> {
  const child = spawn(
    process.execPath,
    ['--import', 'tsx', 'simulator/main.ts', '--listen', listen, '--data-dir', dataDir, '--config', config, '--log-level', 'info'],
    { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  const address = await new Promise<string>((resolve, reject) => {
    const lines = createInterface({ input: child.stdout! });
    lines.on('line', (line) => {
      try {
        const entry = JSON.parse(line) as { msg?: string; address?: string };
        if (entry.msg === 'listening' && entry.address) resolve(entry.address);
      } catch {
        // Not a log line.
      }
    });
    void exited.then(({ code, signal }) => reject(new Error(`ferry-sim exited (${code ?? signal}) before listening: ${stderr}`)));
  });
  const client = new SimClient(address);
  defer(t, async () => {
    client.close();
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGKILL');
      await exited;
    }
  });
  return { child, address, client, exited };
}

/** What a finished command printed, and how it ended. */
export interface CommandResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** A ferry-sim client command running as a child process, the way a user runs it. */
export interface SimCommand {
  child: ChildProcess;
  /** The first line on `stream` matching `re`, printed before or after this call; rejects if the command exits first. */
  line(re: RegExp, stream?: 'stdout' | 'stderr'): Promise<RegExpExecArray>;
  /** Resolves when the command exits. */
  exited: Promise<CommandResult>;
}

/** Starts `bin/ferry-sim.mjs ARGS` (what `npx ferry-sim` runs); killed when the test ends. */
export function ferrySim(t: Cleanup, args: string[]): SimCommand {
  const child = spawn(process.execPath, [path.join(ROOT, 'bin/ferry-sim.mjs'), ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  const seen = { stdout: [] as string[], stderr: [] as string[] };
  const waiters = new Set<{ stream: 'stdout' | 'stderr'; re: RegExp; resolve: (m: RegExpExecArray) => void }>();
  for (const stream of ['stdout', 'stderr'] as const) {
    createInterface({ input: child[stream]! }).on('line', (line) => {
      seen[stream].push(line);
      for (const w of waiters) {
        const m = w.stream === stream ? w.re.exec(line) : null;
        if (m) {
          waiters.delete(w);
          w.resolve(m);
        }
      }
    });
  }
  const exited = new Promise<CommandResult>((resolve) =>
    child.once('close', (code, signal) => resolve({ code, signal, stdout: seen.stdout.map((l) => `${l}\n`).join(''), stderr: seen.stderr.map((l) => `${l}\n`).join('') })),
  );
  const line = (re: RegExp, stream: 'stdout' | 'stderr' = 'stdout') =>
    new Promise<RegExpExecArray>((resolve, reject) => {
      for (const l of seen[stream]) {
        const m = re.exec(l);
        if (m) return resolve(m);
      }
      waiters.add({ stream, re, resolve });
      void exited.then((r) => reject(new Error(`ferry-sim ${args[0]} exited (${r.code ?? r.signal}) before printing ${re} on ${stream}:\n${r.stdout}${r.stderr}`)));
    });
  defer(t, async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGKILL');
      await exited;
    }
  });
  return { child, line, exited };
}

/** Runs a ferry-sim client command to its end. */
export function runFerrySim(t: Cleanup, args: string[]): Promise<CommandResult> {
  return ferrySim(t, args).exited;
}

/** A migration of `shareId` from alpha to beta#bronze as a driver sees it, with `extra` over the defaults. */
export function migrationSpec(id: string, shareId: string, extra: Partial<MigrationSpec> = {}): MigrationSpec {
  return {
    id,
    source: { backend: 'alpha', shareId },
    destination: { backend: 'beta', pool: 'bronze' },
    writable: true,
    nondisruptive: true,
    preserveMetadata: true,
    preserveSnapshots: false,
    newShareType: '',
    maxBandwidthBytesPerSec: 0,
    maxDowntimeMs: 500,
    cutoverAction: 'abort',
    dataPath: 'driver',
    ...extra,
  };
}
