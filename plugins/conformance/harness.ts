/**
 * Everything a run of the suite shares: the vendor's plugin loaded through
 * ferryd's own loader (for the manifest check and for direct driver calls),
 * the adapter and its array, and a real ferryd child process driving two
 * backends with the plugin, which checks talk to over gRPC and may SIGKILL
 * and restart on the same data dir.
 *
 *   <tmp>/direct-plugins/<folder> -> the vendor's plugin folder (symlink), scanned in this process
 *   <tmp>/plugins/<name>/          the plugin as ferryd loads it: a module behind shim.ts, a process
 *                                  plugin's command behind wire-shim.ts, an endpoint plugin's folder (symlink)
 *   <tmp>/ferry.json               the daemon config: two backends, no embedded simulator
 *   <tmp>/data/                    the daemon's data dir, kept across restarts
 */
import { EventEmitter } from 'node:events';
import { mkdirSync, mkdtempSync, realpathSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { FerryClient, type Backend } from '../../client/client.ts';
import { DEFAULT_DEADLINES, DEFAULT_HEALTH_PROBE_MS, DEFAULT_PLUGIN_LOAD_TIMEOUT_MS, type Deadlines } from '../../host/deadlines.ts';
import type { GuardedDriver } from '../../host/guard.ts';
import { closePlugins, createBackendDriver, entryOf, scanPlugins, type LoadedPlugin, type PluginError, type PluginKind, type PluginScan } from '../../host/plugins.ts';
import { silentLog, type Log } from '../../lib/log.ts';
import type { Capabilities } from '../api/index.ts';
import type { AdapterBackend, AdapterSetup, ConformanceAdapter } from './adapter.ts';
import { ControlServer } from './control.ts';
import { DaemonProcess, type LogLine } from './daemon-process.ts';

/** How long the kit waits for things, in ms. */
export interface Timeouts {
  /** adapter.setup() and adapter.teardown(). */
  setupMs: number;
  /** A ferryd child to log "ferryd ready". */
  daemonStartMs: number;
  /** A migration to reach the state a check waits for. */
  migrationMs: number;
}

/** Defaults: generous, since a wait that times out fails its check with what it waited for. */
export const DEFAULT_TIMEOUTS: Timeouts = { setupMs: 120_000, daemonStartMs: 30_000, migrationMs: 120_000 };

/** The plugin as ferryd's loader found it, or why it did not load. */
export interface PluginLoad {
  dir: string;
  scan: PluginScan;
  plugin?: LoadedPlugin;
  failure?: PluginError;
}

/** How long driver calls in flight may take when the kit stops ferryd at the end of a run. */
const SHUTDOWN_GRACE_MS = 2_000;

/**
 * Loads the plugin folder through ferryd's loader (scanPlugins), alone in a
 * plugins dir of its own. With `startProcesses`, a kind-process plugin's
 * driver process is started too (under `scratch`), for the checks that call
 * the driver directly; close it with closePlugins(load.scan).
 */
export async function loadPlugin(pluginDir: string, scratch: string, startProcesses = false): Promise<PluginLoad> {
  const dir = realpathSync(resolve(pluginDir));
  const plugins = join(scratch, 'direct-plugins');
  mkdirSync(plugins, { recursive: true });
  symlinkSync(dir, join(plugins, basename(dir)));
  const processes = startProcesses
    ? { dataDir: join(scratch, 'direct-data'), backends: [], livenessMs: DEFAULT_HEALTH_PROBE_MS, livenessTimeoutMs: DEFAULT_DEADLINES.describe }
    : undefined;
  const scan = await scanPlugins(plugins, { timeoutMs: DEFAULT_PLUGIN_LOAD_TIMEOUT_MS, log: silentLog(), ...(processes ? { processes } : {}) });
  const plugin = [...scan.plugins.values()][0];
  const failure = [...scan.failures.values()][0];
  return plugin ? { dir, scan, plugin } : { dir, scan, failure };
}

/** Thrown when the harness cannot be set up; `stage` says which step failed. */
export class HarnessError extends Error {
  constructor(
    readonly stage: 'load' | 'setup' | 'driver' | 'daemon',
    message: string,
  ) {
    super(message);
    this.name = 'HarnessError';
  }
}

/** What a harness is opened with. */
export interface HarnessOptions {
  plugin: string;
  adapter: () => ConformanceAdapter | Promise<ConformanceAdapter>;
  timeouts: Timeouts;
}

/** A run's shared environment. Open with `Harness.open`, close with `close`. */
export class Harness {
  /** The kit's own log of ferryd lines, across every daemon of the run. */
  readonly logs: LogLine[] = [];
  /** Emits 'line' with each of ferryd's log lines as it arrives. */
  private readonly logged = new EventEmitter();
  private daemon?: DaemonProcess;
  private currentClient?: FerryClient;
  private readonly drivers = new Set<GuardedDriver>();
  private readonly log: Log = silentLog();
  private onExit = () => this.daemon?.killNow();
  /** What the daemon reports about the source backend. */
  capabilities!: Capabilities;
  /** The source backend as ListBackends reported it after the first start. */
  backendsReport: Backend[] = [];
  /**
   * Which halves of the host data path the plugin's drivers offer, as the
   * drivers opened at setup had them: `source` when the source backend's has
   * a `dataSource`, `destination` when the destination backend's has a
   * `dataDestination`. What the data-path checks are gated on.
   */
  hostPath = { source: false, destination: false };
  /** Whether the source backend's driver opened at setup offers watchChanges: what the change-feed check is gated on. */
  offersChanges = false;

  private constructor(
    readonly scratch: string,
    readonly load: PluginLoad & { plugin: LoadedPlugin },
    readonly adapter: ConformanceAdapter,
    readonly setup: AdapterSetup,
    readonly control: ControlServer,
    readonly timeouts: Timeouts,
  ) {}

  /** How the plugin runs, as its plugin.json says. */
  get kind(): PluginKind {
    return this.load.plugin.manifest.kind;
  }

  /**
   * Whether ferryd runs the plugin behind one of the kit's pass-through
   * wrappers, so that checks can hold its calls and read its answers: a
   * module behind shim.ts, a process plugin's command behind wire-shim.ts.
   * An endpoint plugin is not: its driver runs where ferryd does not start it.
   */
  get wrapped(): boolean {
    return this.kind !== 'endpoint';
  }

  /** Loads the plugin, sets the adapter up, starts ferryd. Throws HarnessError naming the step that failed. */
  static async open(options: HarnessOptions): Promise<Harness> {
    const scratch = mkdtempSync(join(tmpdir(), 'ferry-conformance-'));
    let adapter: ConformanceAdapter | undefined;
    let control: ControlServer | undefined;
    let harness: Harness | undefined;
    let load: PluginLoad | undefined;
    try {
      load = await loadPlugin(options.plugin, scratch, true);
      if (!load.plugin) throw new HarnessError('load', `the plugin did not load: ${load.failure?.message ?? 'no plugin.json in the folder'}`);
      let setup: AdapterSetup;
      try {
        adapter = await options.adapter();
        setup = checkSetup(await within(adapter.setup(), options.timeouts.setupMs, 'adapter.setup()'));
      } catch (err) {
        throw new HarnessError('setup', `adapter setup failed: ${(err as Error)?.message ?? String(err)}`);
      }
      control = await ControlServer.open();
      harness = new Harness(scratch, load as PluginLoad & { plugin: LoadedPlugin }, adapter, setup, control, options.timeouts);
      const [source, destination] = [await harness.openDriver(setup.backends[0]), await harness.openDriver(setup.backends[1])];
      harness.hostPath = { source: source.dataSource !== undefined, destination: destination.dataDestination !== undefined };
      harness.offersChanges = source.watchChanges !== undefined;
      harness.writeDaemonFiles();
      process.once('exit', harness.onExit);
      await harness.startDaemon();
      return harness;
    } catch (err) {
      if (harness) await harness.close();
      else {
        await control?.close();
        await adapter?.teardown().catch(() => undefined);
        if (load) await closePlugins(load.scan, SHUTDOWN_GRACE_MS);
        rmSync(scratch, { recursive: true, force: true });
      }
      throw err;
    }
  }

  /** The source backend (where the kit creates shares). */
  get source(): AdapterBackend {
    return this.setup.backends[0];
  }

  /** The destination backend. */
  get destination(): AdapterBackend {
    return this.setup.backends[1];
  }

  /** "backend#pool" of the destination pool. */
  get destinationRef(): string {
    return `${this.destination.name}#${this.setup.destinationPool}`;
  }

  /** A client of the current ferryd. */
  get client(): FerryClient {
    if (!this.currentClient) throw new Error('ferryd is not running');
    return this.currentClient;
  }

  /** Whether a ferryd child is running. */
  get daemonRunning(): boolean {
    return this.daemon?.running === true;
  }

  /** The current ferryd's pid. */
  get daemonPid(): number | undefined {
    return this.daemon?.pid;
  }

  /**
   * A new driver instance for `backend` from the plugin's factory, through
   * ferryd's loader and guard (the daemon's default deadlines, unless
   * `deadlines` changes some), as the engine creates one at each start.
   * Closed when the harness closes, or earlier with `closeDriver`.
   */
  async openDriver(backend: AdapterBackend = this.source, deadlines: Partial<Deadlines> = {}): Promise<GuardedDriver> {
    try {
      const driver = await createBackendDriver({ name: backend.name, plugin: this.load.plugin.manifest.name, options: backend.options }, this.load.scan, {
        daemonAddress: this.daemon?.address ?? '127.0.0.1:1',
        deadlines: { ...DEFAULT_DEADLINES, ...deadlines },
        timeoutMs: DEFAULT_PLUGIN_LOAD_TIMEOUT_MS,
        log: this.log,
      });
      this.drivers.add(driver);
      return driver;
    } catch (err) {
      throw new HarnessError('driver', (err as Error).message);
    }
  }

  /** Closes a driver instance from `openDriver`. */
  async closeDriver(driver: GuardedDriver): Promise<void> {
    if (this.drivers.delete(driver)) await driver.close();
  }

  /** SIGKILLs ferryd (the array lives on) and waits until it is gone. */
  async killDaemon(): Promise<void> {
    this.currentClient?.close();
    this.currentClient = undefined;
    await this.daemon?.kill();
    this.daemon = undefined;
  }

  /** Starts ferryd again on the same data dir, config and plugins. */
  async startDaemon(): Promise<void> {
    if (this.daemon?.running) throw new Error('ferryd is already running');
    try {
      this.daemon = await DaemonProcess.start(
        { dataDir: join(this.scratch, 'data'), configFile: join(this.scratch, 'ferry.json'), pluginsDir: join(this.scratch, 'plugins'), startTimeoutMs: this.timeouts.daemonStartMs },
        this.logs,
        (line) => this.logged.emit('line', line),
      );
    } catch (err) {
      throw new HarnessError('daemon', (err as Error).message);
    }
    this.currentClient = new FerryClient(this.daemon.address, 30_000);
    if (!this.capabilities) {
      this.backendsReport = (await this.client.listBackends()).backends;
      const source = this.backendsReport.find((b) => b.name === this.source.name);
      const caps = source?.capabilities;
      if (!caps) throw new HarnessError('daemon', `ferryd reports no capabilities for backend ${this.source.name}: ${source?.healthReason || 'its driver did not load'}`);
      this.capabilities = { writable: caps.writable, nondisruptive: caps.nondisruptive, preserveMetadata: caps.preserveMetadata, preserveSnapshots: caps.preserveSnapshots };
    }
  }

  /**
   * The last driver failure ferryd logged for a migration, waiting up to
   * `waitMs` for the line when there is none yet: ferryd's log is written
   * asynchronously, so a watcher can see ERROR before the line that says why.
   */
  async driverFailure(migrationId: string, waitMs = 2_000): Promise<string | undefined> {
    const now = this.lastDriverFailure(migrationId);
    if (now !== undefined) return now;
    await this.awaitLine((line) => line.migration === migrationId && line.msg === 'driver call failed', waitMs);
    return this.lastDriverFailure(migrationId);
  }

  /**
   * The newest of ferryd's log lines (of any daemon of the run) that
   * `match` accepts, waiting up to `waitMs` for one to arrive when none has;
   * undefined if none did.
   */
  async awaitLine(match: (line: LogLine) => boolean, waitMs: number): Promise<LogLine | undefined> {
    const seen = this.logs.findLast(match);
    if (seen) return seen;
    return new Promise<LogLine | undefined>((resolve) => {
      const logged = this.logged;
      const timer = setTimeout(() => done(undefined), waitMs);
      const onLine = (line: LogLine) => {
        if (match(line)) done(line);
      };
      function done(line: LogLine | undefined) {
        clearTimeout(timer);
        logged.off('line', onLine);
        resolve(line);
      }
      logged.on('line', onLine);
    });
  }

  /**
   * SIGKILLs the plugin's driver process (the vendor's command, whose pid the
   * wire-level wrapper reported) and waits until ferryd has started it again
   * (the wrapper reports the new pid). Throws, saying what did not come, if
   * no driver process was reported or none started again in time.
   */
  async killDriverProcess(): Promise<{ killed: number; restarted: number }> {
    if (this.kind !== 'process') throw new Error(`the plugin is of kind ${this.kind}: ferryd starts no driver process for it`);
    const waitMs = this.timeouts.daemonStartMs;
    const seen = this.control.driverPids.length;
    const killed = seen > 0 ? this.control.driverPids[seen - 1]! : await this.control.driverPid(0, waitMs);
    if (killed === undefined) throw new Error(`no driver process of plugin ${this.load.plugin.manifest.name} was started within ${waitMs} ms`);
    process.kill(killed, 'SIGKILL');
    const restarted = await this.control.driverPid(Math.max(seen, 1), waitMs);
    if (restarted === undefined) throw new Error(`ferryd did not start the driver process of plugin ${this.load.plugin.manifest.name} again within ${waitMs} ms of its SIGKILL (pid ${killed})`);
    return { killed, restarted };
  }

  /**
   * The last driver failure ferryd logged for a migration, as "call -> CODE:
   * message", with the driver's own error when it threw something other
   * than a FerryError (ferryd tells callers only that it did).
   */
  lastDriverFailure(migrationId: string): string | undefined {
    let failure: string | undefined;
    for (let i = this.logs.length - 1; i >= 0; i--) {
      const line = this.logs[i]!;
      if (line.migration !== migrationId) continue;
      if (failure === undefined) {
        // A clean-up's failure comes after the one that ended the migration: that one is the cause.
        if (line.msg !== 'driver call failed' || line.step === 'cleanup') continue;
        failure = `${String(line.step)} -> ${String(line.code)}: ${String(line.error)}`;
        if (line.code !== 'DRIVER_ERROR') return failure;
        continue;
      }
      if (line.msg === 'driver threw an unexpected error') return `${failure}: ${String((line.err as { message?: unknown } | undefined)?.message ?? line.err)}`;
      if (line.msg === 'driver call failed') break;
    }
    return failure;
  }

  /** Stops ferryd (gracefully), the control server and the drivers, tears the adapter down and removes the scratch dir. */
  async close(): Promise<void> {
    process.off('exit', this.onExit);
    this.currentClient?.close();
    this.currentClient = undefined;
    await this.daemon?.stop(SHUTDOWN_GRACE_MS * 2);
    this.daemon = undefined;
    for (const driver of this.drivers) await driver.close();
    this.drivers.clear();
    await closePlugins(this.load.scan, SHUTDOWN_GRACE_MS);
    await this.control.close();
    try {
      await within(this.adapter.teardown(), this.timeouts.setupMs, 'adapter.teardown()');
    } finally {
      rmSync(this.scratch, { recursive: true, force: true });
    }
  }

  /** The config and the (wrapped) plugin folder ferryd is started with. */
  private writeDaemonFiles(): void {
    const { manifest, dir } = this.load.plugin;
    const real = realpathSync(dir);
    const folder = join(this.scratch, 'plugins', manifest.name);
    const description = `${manifest.description ?? manifest.name} (behind the conformance kit's pass-through wrapper)`;
    const config = {
      simulator: { embedded: false },
      shutdownGraceMs: SHUTDOWN_GRACE_MS,
      // Progress shown (and, with a driver's change feed open, a copy polled) every 100 ms rather than every second, so that the
      // progress checks see each step of a copy that lasts a few seconds.
      engine: { progressPersistMs: 100 },
      backends: this.setup.backends.map((b) => ({ name: b.name, plugin: manifest.name, options: b.options })),
    };
    writeFileSync(join(this.scratch, 'ferry.json'), JSON.stringify(config, null, 2));
    mkdirSync(join(this.scratch, 'plugins'), { recursive: true });
    if (!this.wrapped) return symlinkSync(real, folder);
    mkdirSync(folder, { recursive: true });
    if (this.kind === 'process') {
      // ferryd starts the wrapper, which starts the vendor's command in the vendor's folder.
      const wrapper = fileURLToPath(new URL('./wire-shim.mjs', import.meta.url));
      const command = [process.execPath, wrapper, '--control', this.control.url, '--dir', real, '--', ...manifest.command!];
      return writeFileSync(join(folder, 'plugin.json'), JSON.stringify({ ...manifest, command, description }));
    }
    const entry = entryOf(real, manifest);
    writeFileSync(join(folder, 'plugin.json'), JSON.stringify({ ...manifest, main: 'index.mjs', description }));
    const shim = new URL('./shim.ts', import.meta.url).href;
    writeFileSync(
      join(folder, 'index.mjs'),
      [
        '// Written by ferry-conformance: the plugin under test behind a pass-through wrapper (see plugins/conformance/shim.ts).',
        `import { wrapFactory } from ${JSON.stringify(shim)};`,
        `import * as plugin from ${JSON.stringify(pathToFileURL(entry).href)};`,
        `export const createDriver = wrapFactory(plugin.createDriver, ${JSON.stringify(this.control.url)});`,
        '',
      ].join('\n'),
    );
  }
}

/** Checks what adapter.setup() returned; the message names the field. */
function checkSetup(value: unknown): AdapterSetup {
  const s = value as Partial<AdapterSetup> | null;
  const bad = (what: string) => new Error(`adapter.setup() returned ${what}`);
  if (typeof s !== 'object' || s === null) throw bad('nothing');
  if (!Array.isArray(s.backends) || s.backends.length !== 2) throw bad('no backends: it must return backends: [source, destination]');
  for (const [i, b] of s.backends.entries()) {
    if (typeof b?.name !== 'string' || !/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/.test(b.name)) throw bad(`backends[${i}].name that is not a backend name`);
    if (typeof b.options !== 'object' || b.options === null) throw bad(`backends[${i}].options that is not an object`);
  }
  if (s.backends[0]!.name === s.backends[1]!.name) throw bad('the same backend twice: the source and destination backends need two names');
  if (typeof s.sourcePool !== 'string' || s.sourcePool === '') throw bad('no sourcePool');
  if (typeof s.destinationPool !== 'string' || s.destinationPool === '') throw bad('no destinationPool');
  if (s.smallPool !== undefined && (typeof s.smallPool !== 'string' || s.smallPool === '')) throw bad('a smallPool that is not a pool name');
  return s as AdapterSetup;
}

/** Rejects if `promise` does not settle within `ms`, naming `what`. */
export async function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([promise, new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`${what} did not finish within ${ms} ms`)), ms)))]);
  } finally {
    clearTimeout(timer);
  }
}
