/**
 * Test helpers: temp dirs, plugin dirs assembled from real plugin folders,
 * daemons started in-process or as real child processes, and assertions on
 * gRPC errors.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, symlinkSync, mkdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import type { TestContext } from 'node:test';
import { FerryCallError, FerryClient, type Migration } from '../client/client.ts';
import { loadConfig, type DaemonConfig } from '../daemon/config.ts';
import { startDaemon, type Daemon } from '../daemon/daemon.ts';
import { silentLog } from '../lib/log.ts';

/** The repository root. */
export const ROOT = fileURLToPath(new URL('..', import.meta.url));

/** A temp dir removed when the test ends. */
export function tempDir(t: TestContext | { after(fn: () => unknown): void }, prefix = 'ferry-test-'): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

const KiB = 1024;
const MiB = 1024 * KiB;

/** A small array: 4 KiB blocks, 64 KiB chunks, a tiny pool for the capacity check. */
export const SMALL_ARRAY = {
  blockSizeBytes: 4 * KiB,
  chunkSizeBytes: 64 * KiB,
  workers: 2,
  backends: [
    { name: 'alpha', pools: [{ name: 'gold', capacityBytes: 256 * MiB }] },
    { name: 'beta', pools: [{ name: 'bronze', capacityBytes: 256 * MiB }, { name: 'tiny', capacityBytes: 1 * MiB }] },
  ],
};

/** SMALL_ARRAY and a second array (sim-2) with backend gamma, which no job from alpha or beta can reach: the host data path's. */
export const HOST_PATH_ARRAY = {
  ...SMALL_ARRAY,
  backends: [...SMALL_ARRAY.backends, { name: 'gamma', array: 'sim-2', pools: [{ name: 'iron', capacityBytes: 256 * MiB }] }],
};

/** Real plugin folders by name. */
export const PLUGIN_SOURCES: Record<string, string> = {
  simulator: join(ROOT, 'plugins/simulator'),
  scripted: join(ROOT, 'test/fixtures/plugins/scripted'),
};

/** A plugins dir holding links to the named real plugins, plus extra plugins written from text. */
export function pluginsDir(parent: string, names: string[], extra: Record<string, Record<string, string>> = {}): string {
  const dir = join(parent, 'plugins');
  mkdirSync(dir, { recursive: true });
  for (const name of names) symlinkSync(PLUGIN_SOURCES[name]!, join(dir, name));
  for (const [folder, files] of Object.entries(extra)) {
    mkdirSync(join(dir, folder));
    for (const [file, text] of Object.entries(files)) writeFileSync(join(dir, folder, file), text);
  }
  return dir;
}

/** A config for tests: loopback port 0, silent logs, the given data dir and file settings. */
export function testConfig(dataDir: string, file: Record<string, unknown>, pluginsDirPath?: string): DaemonConfig {
  const path = join(dataDir, '..', `config-${Math.random().toString(16).slice(2)}.json`);
  writeFileSync(path, JSON.stringify(file));
  return loadConfig({ listen: '127.0.0.1:0', dataDir, config: path, pluginsDir: pluginsDirPath, logLevel: 'silent' }, {});
}

/**
 * A config for a daemon over two scripted backends, `a` and `b`, with fast
 * polls and backoff. `engine` and `deadlines` are merged into those defaults;
 * other keys are set as given. The plugins dir is made under `dir`, once.
 */
export function scriptedConfig(
  dir: string,
  overrides: { engine?: Record<string, number>; deadlines?: Record<string, number>; [key: string]: unknown } = {},
): DaemonConfig {
  const { engine, deadlines, ...rest } = overrides;
  return testConfig(
    `${dir}/data`,
    {
      simulator: { embedded: false },
      backends: [
        { name: 'a', plugin: 'scripted' },
        { name: 'b', plugin: 'scripted' },
      ],
      engine: { minPollMs: 1, backoffInitialMs: 5, backoffMaxMs: 20, ...engine },
      deadlines: { continue: 300, ...deadlines },
      ...rest,
    },
    pluginsDir(dir, ['scripted']),
  );
}

/** A daemon in this process and a client to it; both closed when the test ends. */
export async function inProcessDaemon(t: TestContext, config: DaemonConfig): Promise<{ daemon: Daemon; client: FerryClient }> {
  const daemon = await startDaemon(config, silentLog());
  const client = new FerryClient(daemon.address, 10_000);
  t.after(async () => {
    client.close();
    await daemon.close(1_000);
  });
  return { daemon, client };
}

/** Asserts that a promise rejects with a gRPC status (by name) and a message matching `message`. */
export async function rejectsWith(promise: Promise<unknown>, status: string, message?: RegExp): Promise<FerryCallError> {
  try {
    await promise;
  } catch (err) {
    assert.ok(err instanceof FerryCallError, `expected a FerryCallError, got ${String(err)}`);
    const grpcStatus = (await import('@grpc/grpc-js')).status;
    assert.equal(grpcStatus[err.status], status, `expected ${status}, got ${grpcStatus[err.status]}: ${err.message}`);
    if (message) assert.match(err.message, message);
    return err;
  }
  assert.fail(`expected ${status}, but the call succeeded`);
}

/** Waits (watching, not sleeping) until the migration satisfies `until`; fails if it ends first. */
export async function waitForState(client: FerryClient, id: string, state: string): Promise<Migration> {
  const m = await client.waitFor(id, (x) => x.state === `MIGRATION_STATE_${state}`);
  assert.equal(m.state, `MIGRATION_STATE_${state}`, `migration ended in ${m.state} (${m.error?.message ?? ''}) while waiting for ${state}`);
  return m;
}

/** What a process printed and how it ended. */
export interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/**
 * Runs a process to its end without blocking this event loop (a daemon
 * under test may live in it), from the repository root, with `env` added to
 * this process's (an undefined value unsets a variable; Python is kept from
 * writing .pyc files into the checkout) and `input`, if given, on its stdin.
 */
export function runProcess(command: string, args: string[], env: Record<string, string | undefined> = {}, input?: string): Promise<Run & { spawnError?: Error }> {
  return new Promise((resolve) => {
    const child = spawn(command, args, { cwd: ROOT, stdio: [input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'], env: { ...process.env, PYTHONDONTWRITEBYTECODE: '1', ...env } });
    let stdout = '';
    let stderr = '';
    child.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', (spawnError) => resolve({ code: null, stdout, stderr, spawnError }));
    child.on('close', (code) => resolve({ code, stdout, stderr }));
    if (input !== undefined) {
      child.stdin!.on('error', () => undefined);
      child.stdin!.end(input);
    }
  });
}

/** A ferryd child process. */
export interface ChildDaemon {
  child: ChildProcess;
  address: string;
  /** Every log line so far, parsed. */
  logs: Record<string, unknown>[];
  /** Resolves with the exit code and signal. */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/** Starts `ferryd` (through its bin, as `npx ferryd` does) as a real child process and resolves once it logs "ferryd ready". */
export async function spawnDaemon(args: string[], env: NodeJS.ProcessEnv = {}): Promise<ChildDaemon> {
  const child = spawn(process.execPath, [join(ROOT, 'bin/ferryd.mjs'), ...args], {
    cwd: ROOT,
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.on('exit', (code, signal) => resolve({ code, signal })));
  const logs: Record<string, unknown>[] = [];
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  const address = await new Promise<string>((resolve, reject) => {
    const lines = createInterface({ input: child.stdout! });
    lines.on('line', (line) => {
      let entry: Record<string, unknown>;
      try {
        entry = JSON.parse(line) as Record<string, unknown>;
      } catch {
        return;
      }
      logs.push(entry);
      if (entry.msg === 'ferryd ready') resolve(String(entry.address));
    });
    void exited.then(({ code, signal }) => reject(new Error(`ferryd exited (${code ?? signal}) before it was ready: ${stderr.trim()}`)));
  });
  return { child, address, logs, exited };
}

/** SIGKILLs a child and waits for it to be gone. */
export async function kill9(d: ChildDaemon): Promise<void> {
  d.child.kill('SIGKILL');
  await d.exited;
}

/** Resolves with the first log line of `d` whose msg is `msg` (already logged or yet to come); rejects if it exits first. */
export function waitForLog(d: ChildDaemon, msg: string): Promise<Record<string, unknown>> {
  const find = () => d.logs.find((e) => e.msg === msg);
  return new Promise((resolve, reject) => {
    const seen = find();
    if (seen) return resolve(seen);
    // spawnDaemon's line reader listens first, so each chunk is in d.logs by the time this listener runs.
    const onData = () => {
      const entry = find();
      if (!entry) return;
      d.child.stdout!.off('data', onData);
      resolve(entry);
    };
    d.child.stdout!.on('data', onData);
    void d.exited.then(({ code, signal }) => {
      d.child.stdout!.off('data', onData);
      const entry = find();
      if (entry) resolve(entry);
      else reject(new Error(`ferryd exited (${code ?? signal}) before it logged "${msg}"`));
    });
  });
}
