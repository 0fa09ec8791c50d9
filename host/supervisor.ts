/**
 * Supervision of a kind-process plugin: one driver process per plugin,
 * started by ferryd, driven over ferry.driver.v1.DriverService on a unix
 * socket, and restarted when it exits or stops answering.
 *
 * - Start: `command` in the plugin folder, with FERRY_DRIVER_LISTEN =
 *   unix:<data dir>/drivers/<plugin>/driver.sock (a 0700 directory; a stale
 *   socket is removed first) and stdin a pipe ferryd holds open, so that the
 *   driver exits when ferryd does, even on SIGKILL.
 * - Ready: grpc health "ferry.driver.v1.DriverService" SERVING within the
 *   plugin load timeout, then GetPluginInfo (the API version, and the name
 *   plugin.json says). A wrong version or name stops the plugin for good;
 *   anything else is retried.
 * - Alive: the health check is asked every `livenessMs`; LIVENESS_FAILURES
 *   misses in a row and the process is killed (SIGKILL) and restarted.
 * - Restart: after RESTART_INITIAL_MS, doubling to RESTART_MAX_MS; back to
 *   the start once a process has served for RESTART_RESET_MS.
 * - Stop: SIGTERM, then SIGKILL after the grace period.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, rmSync, chmodSync } from 'node:fs';
import { isAbsolute, join, resolve } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { FerryError, DRIVER_API_VERSION } from '../plugins/api/index.ts';
import type { DriverServiceClient } from '../build/types/ferry/driver/v1/DriverService.ts';
import type { GetPluginInfoResponse__Output } from '../build/types/ferry/driver/v1/GetPluginInfoResponse.ts';
import { SOCKET_PATH_MAX } from '../lib/address.ts';
import type { Log } from '../lib/log.ts';
import { clientConstructor } from '../lib/rpc.ts';
import { DRIVER_SERVICE } from './driver-wire.ts';
import { eachLine, logDriverLine } from './driver-log.ts';
import type { DriverLink } from './remote-driver.ts';

/** The first restart waits this long (ms). */
export const RESTART_INITIAL_MS = 200;
/** Restarts back off, doubling, to at most this (ms). */
export const RESTART_MAX_MS = 10_000;
/** A process that served this long (ms) has its restart backoff reset. */
export const RESTART_RESET_MS = 30_000;
/** This many failed health checks in a row and the process is killed. */
export const LIVENESS_FAILURES = 3;

/** What the supervisor needs to know about its plugin and ferryd. */
export interface SupervisorOptions {
  plugin: string;
  /** The plugin folder: the process's cwd; relative paths of `command` are resolved against it. */
  dir: string;
  command: string[];
  /** ferryd's data dir; the socket goes in <dataDir>/drivers/<plugin>/. */
  dataDir: string;
  /** How long a start may take to serve health and answer GetPluginInfo (the plugin load timeout). */
  readyTimeoutMs: number;
  /** How often a running process's health is checked, and how long one check may take. */
  livenessMs: number;
  livenessTimeoutMs: number;
  /** The backends driven through this process, named on every line of its output. */
  backends: readonly string[];
  log: Log;
}

/** Why the driver process cannot be used: permanent (a wrong API version or name) or not (yet). */
export class DriverProcessError extends Error {
  constructor(
    message: string,
    readonly permanent: boolean,
    readonly code: 'PLUGIN_API_VERSION_MISMATCH' | 'PLUGIN_MANIFEST_INVALID' | 'PLUGIN_LOAD_TIMEOUT' | 'PLUGIN_START_FAILED',
  ) {
    super(message);
    this.name = 'DriverProcessError';
  }
}

type Listener = (up: boolean) => void;

/** One plugin's driver process: started, watched, restarted, stopped. */
export class Supervisor implements DriverLink {
  readonly describe: string;
  /** Bumped every time a process goes down: a remote driver opens its backend again after it. */
  generation = 0;
  private child: ChildProcess | undefined;
  private driverClient: DriverServiceClient | undefined;
  private up = false;
  private stopped = false;
  private failure: DriverProcessError | undefined;
  private restarts = 0;
  private upSince = 0;
  private timer: NodeJS.Timeout | undefined;
  private readonly listeners = new Set<Listener>();
  /** Processes killed for a reason already recorded in `failure`. */
  private readonly judged = new WeakSet<ChildProcess>();
  private readonly socketDir: string;
  readonly address: string;
  private exited: Promise<void> = Promise.resolve();
  private readonly firstReady: Promise<void>;
  private settleFirst!: { resolve: () => void; reject: (err: DriverProcessError) => void; done: boolean };

  constructor(private readonly options: SupervisorOptions) {
    this.describe = `the driver process of plugin ${options.plugin}`;
    this.socketDir = join(resolve(options.dataDir), 'drivers', options.plugin);
    this.address = `unix:${join(this.socketDir, 'driver.sock')}`;
    this.firstReady = new Promise<void>((resolve, reject) => (this.settleFirst = { resolve, reject, done: false }));
    this.firstReady.catch(() => {});
  }

  /** Starts the first process. Throws DriverProcessError if the socket cannot be placed. */
  start(): void {
    if (this.address.length - 'unix:'.length > SOCKET_PATH_MAX) {
      this.fail(new DriverProcessError(`the socket path ${this.address} is longer than a unix socket allows (${SOCKET_PATH_MAX}); use a shorter data dir`, true, 'PLUGIN_START_FAILED'));
      return;
    }
    mkdirSync(this.socketDir, { recursive: true, mode: 0o700 });
    chmodSync(this.socketDir, 0o700);
    this.launch();
  }

  /** Resolves once a process is first ready; rejects with the reason if none is within `timeoutMs`, or the plugin failed for good. */
  ready(timeoutMs: number): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(this.failure ?? new DriverProcessError(`${this.describe} was not ready within ${timeoutMs} ms`, false, 'PLUGIN_LOAD_TIMEOUT')), timeoutMs);
    });
    return Promise.race([this.firstReady, timeout]).finally(() => clearTimeout(timer));
  }

  /** Whether stop was called. */
  get isClosed(): boolean {
    return this.stopped;
  }

  /** Whether a process is up and ready now. */
  get serving(): boolean {
    return this.up;
  }

  /** The permanent failure, if the plugin failed for good. */
  get permanentFailure(): DriverProcessError | undefined {
    return this.failure?.permanent ? this.failure : undefined;
  }

  /** Calls `fn(true)` each time a process becomes ready and `fn(false)` each time it goes down. Returns the unsubscribe. */
  onChange(fn: Listener): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  client(): DriverServiceClient {
    if (!this.up || !this.driverClient) {
      throw new FerryError('UNAVAILABLE', `${this.describe} is not serving${this.failure ? `: ${this.failure.message}` : ' (it is starting or restarting)'}`);
    }
    return this.driverClient;
  }

  /** Stops the process: SIGTERM, then SIGKILL after `graceMs`. No restart follows. */
  async stop(graceMs: number): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    const child = this.child;
    if (child && child.exitCode === null && child.signalCode === null) {
      const kill = setTimeout(() => child.kill('SIGKILL'), graceMs);
      child.kill('SIGTERM');
      await this.exited;
      clearTimeout(kill);
    }
    this.driverClient?.close();
    this.listeners.clear();
  }

  private launch(): void {
    if (this.stopped) return;
    const { command, dir, plugin } = this.options;
    rmSync(this.address.slice('unix:'.length), { force: true });
    const child = spawn(commandFile(dir, command), command.slice(1), {
      cwd: dir,
      env: { ...process.env, FERRY_DRIVER_LISTEN: this.address },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    this.child = child;
    const log = this.options.log.child({ plugin, backends: this.options.backends, driverPid: child.pid });
    let resolveExit!: () => void;
    this.exited = new Promise<void>((r) => (resolveExit = r));
    let gone = false;
    const onGone = (code: number | null, signal: NodeJS.Signals | null, error?: Error) => {
      if (gone) return;
      gone = true;
      this.options.log[this.stopped ? 'info' : 'warn']({ plugin, pid: child.pid, code, signal, ...(error && { error: error.message }) }, 'driver process exited');
      resolveExit();
      if (!this.up && !this.stopped && this.child === child && !this.judged.has(child)) {
        this.failure = new DriverProcessError(`${this.describe} exited before it was ready (${error ? error.message : signal ? `signal ${signal}` : `code ${code}`})`, false, 'PLUGIN_START_FAILED');
      }
      this.down(child);
    };
    child.on('error', (err) => onGone(null, null, err));
    child.on('exit', (code, signal) => onGone(code, signal));
    // A driver that exits closes its end: ferryd must not die of EPIPE writing nothing to it.
    child.stdin!.on('error', () => {});
    eachLine(child.stdout!, (line, cut) => logDriverLine(log, line, 'stdout', cut));
    eachLine(child.stderr!, (line, cut) => logDriverLine(log, line, 'stderr', cut));
    if (child.pid === undefined) return;
    this.options.log.info({ plugin, pid: child.pid, command }, 'driver process started');
    void this.await(child);
  }

  /** Waits for the new process to serve health and answer GetPluginInfo, then watches it. */
  private async await(child: ChildProcess): Promise<void> {
    const deadline = Date.now() + this.options.readyTimeoutMs;
    const health = healthClient(this.address);
    const isCurrent = () => this.child === child && child.exitCode === null && child.signalCode === null && !this.stopped;
    try {
      let wait = 20;
      for (;;) {
        if (!isCurrent()) return;
        const status = await checkHealth(health, Math.max(1, Math.min(deadline - Date.now(), 1_000)), true);
        if (status === 'SERVING') break;
        if (Date.now() >= deadline) {
          throw new DriverProcessError(`${this.describe} did not serve health "${DRIVER_SERVICE}" SERVING within ${this.options.readyTimeoutMs} ms (last: ${status}); it must listen on FERRY_DRIVER_LISTEN`, false, 'PLUGIN_LOAD_TIMEOUT');
        }
        await new Promise((r) => setTimeout(r, Math.min(wait, Math.max(0, deadline - Date.now()))));
        wait = Math.min(wait * 2, 250);
      }
      const client = new (clientConstructor(DRIVER_SERVICE))(this.address, grpc.credentials.createInsecure(), OWN_SUBCHANNELS) as unknown as DriverServiceClient;
      const info = await new Promise<GetPluginInfoResponse__Output>((resolve, reject) =>
        client.GetPluginInfo({}, { deadline: Math.max(deadline, Date.now() + 100) }, (err, res) => (err ? reject(new DriverProcessError(`${this.describe}: GetPluginInfo failed: ${err.message}`, false, 'PLUGIN_START_FAILED')) : resolve(res!))),
      ).catch((err: unknown) => {
        client.close();
        throw err;
      });
      if (info.apiVersion !== DRIVER_API_VERSION) {
        client.close();
        throw new DriverProcessError(`${this.describe} speaks driver API ${info.apiVersion}; this ferryd speaks ${DRIVER_API_VERSION}`, true, 'PLUGIN_API_VERSION_MISMATCH');
      }
      if (info.name !== this.options.plugin) {
        client.close();
        throw new DriverProcessError(`${this.describe} says its name is "${info.name}", but plugin.json says "${this.options.plugin}"`, true, 'PLUGIN_MANIFEST_INVALID');
      }
      if (!isCurrent()) {
        client.close();
        return;
      }
      this.driverClient = client;
      this.up = true;
      this.upSince = Date.now();
      this.failure = undefined;
      this.options.log.info({ plugin: this.options.plugin, pid: child.pid, version: info.version }, 'driver process ready');
      if (!this.settleFirst.done) {
        this.settleFirst.done = true;
        this.settleFirst.resolve();
      }
      for (const fn of this.listeners) fn(true);
      await this.watch(child, health);
    } catch (err) {
      if (!isCurrent()) return;
      const failure = err instanceof DriverProcessError ? err : new DriverProcessError(`${this.describe}: ${(err as Error).message}`, false, 'PLUGIN_START_FAILED');
      this.options.log.error({ plugin: this.options.plugin, pid: child.pid, code: failure.code, reason: failure.message }, 'driver process is not usable; killing it');
      if (failure.permanent) this.fail(failure);
      else this.failure = failure;
      this.judged.add(child);
      child.kill('SIGKILL');
    } finally {
      health.close();
    }
  }

  /** Checks a ready process's health until it goes; kills it after LIVENESS_FAILURES misses in a row. */
  private async watch(child: ChildProcess, health: HealthClient): Promise<void> {
    let misses = 0;
    while (this.child === child && child.exitCode === null && child.signalCode === null && !this.stopped) {
      await new Promise((r) => {
        this.timer = setTimeout(r, this.options.livenessMs);
      });
      if (this.child !== child || child.exitCode !== null || child.signalCode !== null || this.stopped) return;
      const status = await checkHealth(health, this.options.livenessTimeoutMs, false);
      misses = status === 'SERVING' ? 0 : misses + 1;
      if (misses >= LIVENESS_FAILURES) {
        this.failure = new DriverProcessError(`${this.describe} stopped answering its health check (${misses} in a row, last: ${status})`, false, 'PLUGIN_START_FAILED');
        this.options.log.error({ plugin: this.options.plugin, pid: child.pid, misses, last: status }, 'driver process stopped answering; killing it');
        this.judged.add(child);
        child.kill('SIGKILL');
        return;
      }
    }
  }

  /** A process went: its backends go down, and another is started after the backoff. */
  private down(child: ChildProcess): void {
    if (this.child !== child) return;
    const wasUp = this.up;
    this.up = false;
    this.generation++;
    this.driverClient?.close();
    this.driverClient = undefined;
    if (wasUp) for (const fn of this.listeners) fn(false);
    if (this.stopped || this.failure?.permanent) return;
    if (wasUp && Date.now() - this.upSince >= RESTART_RESET_MS) this.restarts = 0;
    const delay = Math.min(RESTART_INITIAL_MS * 2 ** this.restarts, RESTART_MAX_MS);
    this.restarts++;
    this.options.log.info({ plugin: this.options.plugin, restartInMs: delay, restarts: this.restarts }, 'restarting the driver process');
    this.timer = setTimeout(() => this.launch(), delay);
    this.timer.unref();
  }

  private fail(failure: DriverProcessError): void {
    this.failure = failure;
    if (!this.settleFirst.done) {
      this.settleFirst.done = true;
      this.settleFirst.reject(failure);
    }
  }
}

/** The file to run for a plugin's `command`: argv0 against the plugin folder if it is a relative path, else as written (a bare name is looked up on PATH). */
export function commandFile(dir: string, command: readonly string[]): string {
  const argv0 = command[0]!;
  return argv0.includes('/') && !isAbsolute(argv0) ? resolve(dir, argv0) : argv0;
}

/** A client of grpc.health.v1.Health. */
export type HealthClient = grpc.Client & { Check(req: { service: string }, metadata: grpc.Metadata, options: grpc.CallOptions, cb: (err: grpc.ServiceError | null, res?: { status: string }) => void): void };

/** A health client to `address`, sharing `channelOf`'s channel when given. */
export function healthClient(address: string, channelOf?: grpc.Client): HealthClient {
  return new (clientConstructor('grpc.health.v1.Health'))(address, grpc.credentials.createInsecure(), channelOf ? { channelOverride: channelOf.getChannel() } : OWN_SUBCHANNELS) as unknown as HealthClient;
}

/**
 * Each process's clients get subchannels of their own: grpc-js shares them
 * per address otherwise, and a client to a restarted process (same socket
 * path) would inherit the dead one's reconnect backoff.
 */
export const OWN_SUBCHANNELS = { 'grpc.use_local_subchannel_pool': 1 };

/**
 * One health check of the driver service: its status name (SERVING, ...),
 * or the gRPC status name of the failure (UNIMPLEMENTED: no health service).
 * With `waitForReady` it waits for the connection up to the deadline.
 */
export function checkHealth(health: HealthClient, timeoutMs: number, waitForReady: boolean): Promise<string> {
  const metadata = new grpc.Metadata();
  metadata.setOptions({ waitForReady });
  return new Promise((resolve) => {
    try {
      health.Check({ service: DRIVER_SERVICE }, metadata, { deadline: Date.now() + timeoutMs }, (err, res) => resolve(err ? (grpc.status[err.code] ?? 'UNKNOWN') : (res?.status ?? 'UNKNOWN')));
    } catch (err) {
      resolve((err as Error).message);
    }
  });
}
