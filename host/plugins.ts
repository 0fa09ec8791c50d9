/**
 * The plugin host: finds driver plugins in the plugins directory, checks
 * each one in small named steps (manifest, API version, unique name, import,
 * factory), and creates one guarded driver per configured backend.
 *
 * A plugin folder holds `plugin.json` (the manifest, read before any plugin
 * code runs) and the module it names, which exports `createDriver`. Folders
 * without `plugin.json` (such as `api/`) are not plugins and are skipped.
 */
import { readdir } from 'node:fs/promises';
import { existsSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { DRIVER_API_VERSION, type Driver, type DriverFactory, type PluginManifest } from '../plugins/api/index.ts';
import type { Log } from '../lib/log.ts';
import type { Deadlines } from './deadlines.ts';
import type { EndpointLink } from './endpoint.ts';
import { GuardedDriver, type CallObserver } from './guard.ts';
import { createRemoteBackend } from './remote.ts';
import { Supervisor } from './supervisor.ts';

/** Why a plugin or a backend's driver could not be had. */
export type PluginErrorCode =
  | 'PLUGIN_DIR_UNREADABLE'
  | 'PLUGIN_MANIFEST_INVALID'
  | 'PLUGIN_API_VERSION_MISMATCH'
  | 'PLUGIN_NAME_DUPLICATE'
  | 'PLUGIN_IMPORT_FAILED'
  | 'PLUGIN_LOAD_TIMEOUT'
  | 'PLUGIN_START_FAILED'
  | 'PLUGIN_FACTORY_MISSING'
  | 'PLUGIN_NOT_FOUND'
  | 'DRIVER_CREATE_FAILED'
  | 'DRIVER_CREATE_TIMEOUT'
  | 'DRIVER_SHAPE_INVALID';

/** Thrown (and recorded) when a plugin fails a load step; `plugin` is its folder or name. */
export class PluginError extends Error {
  constructor(
    readonly code: PluginErrorCode,
    readonly plugin: string,
    message: string,
  ) {
    super(`${code}: ${message}`);
    this.name = 'PluginError';
  }
}

/** A plugin that passed every load step. */
export interface LoadedPlugin {
  manifest: HostManifest;
  dir: string;
  /** Kind module: the factory its module exports. */
  createDriver?: DriverFactory;
  /** Kind process, when the scan was asked to start processes: the supervisor of its driver process. */
  process?: Supervisor;
}

/** What a scan of the plugins directory found. */
export interface PluginScan {
  plugins: Map<string, LoadedPlugin>;
  /** Plugins that failed to load, by manifest name when it could be read, else by folder. */
  failures: Map<string, PluginError>;
  /** Links to kind-endpoint drivers made for backends, closed with the scan. */
  endpoints: Set<EndpointLink>;
}

/** How a scan starts kind-process plugins (without it, their manifests are checked and nothing is started). */
export interface ProcessOptions {
  /** ferryd's data dir: the driver sockets go under <dataDir>/drivers/. */
  dataDir: string;
  /** The configured backends (each process's log lines name the backends it drives). */
  backends: readonly BackendConfig[];
  /** How often a running driver process's health is checked, and how long one check may take (ms). */
  livenessMs: number;
  livenessTimeoutMs: number;
}

/** Stops every driver process of a scan (SIGTERM, SIGKILL after `graceMs`) and closes its endpoint links. Never throws. */
export async function closePlugins(scan: PluginScan, graceMs: number): Promise<void> {
  for (const link of scan.endpoints) link.close();
  await Promise.all([...scan.plugins.values()].map((p) => p.process?.stop(graceMs)));
}

const DRIVER_METHODS = ['capabilities', 'describe', 'checkCompatibility', 'start', 'continue', 'complete', 'cancel', 'progress'] as const;

/**
 * How a plugin's driver runs: a TypeScript module imported into ferryd
 * (the default), a process ferryd starts and supervises (speaking
 * ferry.driver.v1.DriverService on a unix socket), or an endpoint running
 * elsewhere, at the address in each backend's options.
 */
export type PluginKind = 'module' | 'process' | 'endpoint';

/** The plugin kinds, in the order they are documented. */
export const PLUGIN_KINDS: readonly PluginKind[] = ['module', 'process', 'endpoint'];

/** A plugin.json as the host reads it: the driver API's manifest, with its kind. */
export interface HostManifest extends PluginManifest {
  /** How the driver runs (default "module"). */
  kind: PluginKind;
  /** For kind process: the argv to start, relative paths against the plugin folder, argv0 on PATH if it has no slash. */
  command?: string[];
}

/** Checks a parsed plugin.json. */
export function checkManifest(value: unknown, folder: string): HostManifest {
  const fail = (what: string) => new PluginError('PLUGIN_MANIFEST_INVALID', folder, `${folder}/plugin.json: ${what}`);
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw fail('must be a JSON object');
  const m = value as Record<string, unknown>;
  if (typeof m.name !== 'string' || !/^[a-z0-9][a-z0-9._-]{0,63}$/.test(m.name)) throw fail('"name" must be 1-64 lower-case letters, digits, ".", "_" or "-"');
  if (typeof m.version !== 'string' || m.version.length === 0) throw fail('"version" must be a non-empty string');
  if (typeof m.apiVersion !== 'number' || !Number.isInteger(m.apiVersion)) throw fail('"apiVersion" must be an integer');
  if (m.main !== undefined && (typeof m.main !== 'string' || m.main.length === 0)) throw fail('"main" must be a non-empty string');
  const kind = m.kind ?? 'module';
  if (typeof kind !== 'string' || !(PLUGIN_KINDS as readonly string[]).includes(kind)) throw fail(`"kind" must be one of ${PLUGIN_KINDS.map((k) => `"${k}"`).join(', ')} (default "module")`);
  if (kind === 'process') {
    const command = m.command;
    if (!Array.isArray(command) || command.length === 0 || !command.every((a) => typeof a === 'string') || command[0] === '') {
      throw fail('"command" must be a non-empty array of strings (the argv to start) for kind "process"');
    }
  } else if (m.command !== undefined) {
    throw fail(`"command" is only for kind "process" (this plugin is kind "${kind}")`);
  }
  return { ...(m as unknown as PluginManifest), kind: kind as PluginKind, ...(kind === 'process' && { command: m.command as string[] }) };
}

/**
 * Reads and checks DIR/plugin.json (no plugin code runs). Throws
 * PluginError PLUGIN_MANIFEST_INVALID naming the file as `shown`/plugin.json
 * and what is wrong with it.
 */
export function readManifest(dir: string, shown: string = dir): HostManifest {
  let parsed: unknown;
  try {
    parsed = JSON.parse(readFileSync(join(dir, 'plugin.json'), 'utf8'));
  } catch (err) {
    throw new PluginError('PLUGIN_MANIFEST_INVALID', shown, `${shown}/plugin.json cannot be read as JSON: ${(err as Error).message}`);
  }
  return checkManifest(parsed, shown);
}

/** Checks the manifest's driver API version against ours. */
export function checkApiVersion(manifest: HostManifest, folder: string): void {
  if (manifest.apiVersion !== DRIVER_API_VERSION) {
    throw new PluginError('PLUGIN_API_VERSION_MISMATCH', manifest.name, `plugin ${manifest.name} (${folder}) is written for driver API ${manifest.apiVersion}; this ferryd speaks ${DRIVER_API_VERSION}`);
  }
}

/** A module plugin's entry file: `main`, else the first of index.ts, index.js, index.mjs that exists. */
export function entryOf(dir: string, manifest: PluginManifest): string {
  if (manifest.main) return join(dir, manifest.main);
  for (const name of ['index.ts', 'index.js', 'index.mjs']) if (existsSync(join(dir, name))) return join(dir, name);
  return join(dir, 'index.ts');
}

/** Races a promise against a timer; the timer's error names what was probably forgotten. */
async function withTimeout<T>(promise: Promise<T>, ms: number, onTimeout: () => Error): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([promise, new Promise<never>((_, reject) => (timer = setTimeout(() => reject(onTimeout()), ms)))]);
  } finally {
    clearTimeout(timer);
  }
}

/** Imports a plugin's module and checks that it exports a factory. */
async function importPlugin(dir: string, manifest: HostManifest, timeoutMs: number): Promise<DriverFactory> {
  const entry = entryOf(dir, manifest);
  let mod: Record<string, unknown>;
  try {
    mod = await withTimeout(
      import(pathToFileURL(entry).href) as Promise<Record<string, unknown>>,
      timeoutMs,
      () => new PluginError('PLUGIN_LOAD_TIMEOUT', manifest.name, `plugin ${manifest.name} did not finish loading within ${timeoutMs} ms (a top-level await that never settles, or a connection opened at import time?)`),
    );
  } catch (err) {
    if (err instanceof PluginError) throw err;
    throw new PluginError('PLUGIN_IMPORT_FAILED', manifest.name, `plugin ${manifest.name}: importing ${entry} failed: ${(err as Error)?.message ?? String(err)}`);
  }
  if (typeof mod.createDriver !== 'function') {
    throw new PluginError('PLUGIN_FACTORY_MISSING', manifest.name, `plugin ${manifest.name}: ${entry} does not export a function named createDriver`);
  }
  return mod.createDriver as DriverFactory;
}

/**
 * Reads, checks and imports the module plugin in `dir` on its own (the
 * bridge that serves a module driver over DriverService uses it). Throws
 * PluginError.
 */
export async function loadModulePlugin(dir: string, timeoutMs: number): Promise<{ manifest: HostManifest; createDriver: DriverFactory }> {
  const folder = resolve(dir);
  const manifest = readManifest(folder);
  if (manifest.kind !== 'module') throw new PluginError('PLUGIN_MANIFEST_INVALID', folder, `${folder} is a plugin of kind ${manifest.kind}, not a module`);
  checkApiVersion(manifest, folder);
  return { manifest, createDriver: await importPlugin(folder, manifest, timeoutMs) };
}

/** The load step of each kind: a module is imported; a process is started (readiness is awaited per backend); an endpoint has nothing to load. */
async function loadPlugin(dir: string, manifest: HostManifest, options: { timeoutMs: number; log: Log; processes?: ProcessOptions }): Promise<LoadedPlugin> {
  if (manifest.kind === 'module') return { manifest, dir, createDriver: await importPlugin(dir, manifest, options.timeoutMs) };
  if (manifest.kind === 'endpoint' || !options.processes) return { manifest, dir };
  const { dataDir, backends, livenessMs, livenessTimeoutMs } = options.processes;
  const process = new Supervisor({
    plugin: manifest.name,
    dir,
    command: manifest.command!,
    dataDir,
    readyTimeoutMs: options.timeoutMs,
    livenessMs,
    livenessTimeoutMs,
    backends: backends.filter((b) => b.plugin === manifest.name).map((b) => b.name),
    log: options.log,
  });
  process.start();
  return { manifest, dir, process };
}

/**
 * Loads the plugins in `dir`: every one, or with `only`, those it names (the
 * manifests of all are still checked). Never throws for a bad plugin: each
 * failure is recorded and the rest load. Throws only if `dir` cannot be read.
 */
export async function scanPlugins(dir: string, options: { timeoutMs: number; log: Log; only?: ReadonlySet<string>; processes?: ProcessOptions }): Promise<PluginScan> {
  const root = resolve(dir);
  let folders: string[];
  try {
    folders = (await readdir(root, { withFileTypes: true })).filter((d) => d.isDirectory() || d.isSymbolicLink()).map((d) => d.name).sort();
  } catch (err) {
    throw new PluginError('PLUGIN_DIR_UNREADABLE', root, `cannot read plugins dir ${root}: ${(err as Error).message}`);
  }
  const scan: PluginScan = { plugins: new Map(), failures: new Map(), endpoints: new Set() };
  const fail = (key: string, dir: string, err: unknown) => {
    const failure = err instanceof PluginError ? err : new PluginError('PLUGIN_IMPORT_FAILED', key, String(err));
    scan.failures.set(key, failure);
    options.log.error({ plugin: key, dir, code: failure.code, reason: failure.message }, 'plugin failed to load');
  };

  // Read every manifest first (no plugin code runs yet), so that a name used twice fails for every folder using it.
  const candidates: { folder: string; dir: string; manifest: HostManifest }[] = [];
  for (const folder of folders) {
    const pluginDir = join(root, folder);
    const manifestPath = join(pluginDir, 'plugin.json');
    if (!existsSync(manifestPath)) continue;
    try {
      candidates.push({ folder, dir: pluginDir, manifest: readManifest(pluginDir, folder) });
    } catch (err) {
      fail(folder, pluginDir, err);
    }
  }
  const folderCount = new Map<string, string[]>();
  for (const c of candidates) folderCount.set(c.manifest.name, [...(folderCount.get(c.manifest.name) ?? []), c.folder]);

  for (const { folder, dir: pluginDir, manifest } of candidates) {
    const name = manifest.name;
    try {
      const users = folderCount.get(name)!;
      if (users.length > 1) throw new PluginError('PLUGIN_NAME_DUPLICATE', name, `plugin name ${name} is used by folders ${users.join(', ')}; none of them is loaded`);
      if (options.only && !options.only.has(name)) {
        // No backend uses it: its code is not run (a broken or slow plugin nobody uses cannot hold up the daemon).
        options.log.debug({ plugin: name, dir: pluginDir }, 'plugin not used by any backend; not loaded');
        continue;
      }
      checkApiVersion(manifest, folder);
      scan.plugins.set(name, await loadPlugin(pluginDir, manifest, options));
      options.log.info({ plugin: name, version: manifest.version, kind: manifest.kind, dir: pluginDir }, 'plugin loaded');
    } catch (err) {
      fail(name, pluginDir, err);
    }
  }
  return scan;
}

/** A configured backend: which plugin drives it, with what options. */
export interface BackendConfig {
  name: string;
  plugin: string;
  options: Record<string, unknown>;
}

/** How the host tells the daemon about a remote backend's driver after its creation. */
export interface BackendHooks {
  /** The driver that was not ready when the backend was created is ready now: it is the backend's driver from now on. */
  attach(driver: GuardedDriver): void;
  /** The link to the backend's driver went down or came back: probe the backend's health now. */
  changed(): void;
}

/** A backend as the host gives it to the daemon: its driver, or why it has none. */
export interface BackendEntry {
  name: string;
  driver?: GuardedDriver;
  /** Why there is no driver (the plugin failed to load). */
  failure?: string;
}

/** Creates and checks the driver for one backend. Throws PluginError. */
export async function createBackendDriver(
  backend: BackendConfig,
  scan: PluginScan,
  context: { daemonAddress: string; deadlines: Deadlines; timeoutMs: number; log: Log; hooks?: BackendHooks; observe?: CallObserver },
): Promise<GuardedDriver> {
  const plugin = scan.plugins.get(backend.plugin);
  if (!plugin) {
    const failure = scan.failures.get(backend.plugin);
    if (failure) throw failure;
    const known = [...scan.plugins.keys()].join(', ') || 'none';
    throw new PluginError('PLUGIN_NOT_FOUND', backend.plugin, `backend ${backend.name} names plugin ${backend.plugin}, which is not in the plugins dir (loaded: ${known})`);
  }
  if (!plugin.createDriver) return createRemoteBackend(backend, plugin, { ...context, endpoints: scan.endpoints });
  const createDriver = plugin.createDriver;
  const log = context.log.child({ backend: backend.name, plugin: plugin.manifest.name });
  let driver: Driver;
  try {
    driver = await withTimeout(
      Promise.resolve().then(() => createDriver({ backend: backend.name, options: backend.options, daemonAddress: context.daemonAddress, log })),
      context.timeoutMs,
      () => new PluginError('DRIVER_CREATE_TIMEOUT', plugin.manifest.name, `plugin ${plugin.manifest.name}: createDriver for backend ${backend.name} did not return within ${context.timeoutMs} ms (waiting on an array that is not there?)`),
    );
  } catch (err) {
    if (err instanceof PluginError) throw err;
    throw new PluginError('DRIVER_CREATE_FAILED', plugin.manifest.name, `plugin ${plugin.manifest.name}: createDriver for backend ${backend.name} failed: ${(err as Error)?.message ?? String(err)}`);
  }
  const missing = DRIVER_METHODS.filter((m) => typeof (driver as unknown as Record<string, unknown>)?.[m] !== 'function');
  if (missing.length > 0) {
    throw new PluginError('DRIVER_SHAPE_INVALID', plugin.manifest.name, `plugin ${plugin.manifest.name}: the driver for backend ${backend.name} lacks ${missing.join(', ')}`);
  }
  try {
    return new GuardedDriver(backend.name, { name: plugin.manifest.name, version: plugin.manifest.version }, driver, context.deadlines, log, context.observe);
  } catch (err) {
    throw new PluginError('DRIVER_SHAPE_INVALID', plugin.manifest.name, `plugin ${plugin.manifest.name}: ${(err as Error).message}`);
  }
}
