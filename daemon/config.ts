/**
 * The daemon's configuration: defaults, then a JSON config file (comments
 * and trailing commas allowed), then environment variables, then
 * command-line flags (each later one wins). Every problem is reported as one
 * line naming the setting and its source.
 */
import { readFileSync } from 'node:fs';
import { parse as parseJsonc, printParseErrorCode, type ParseError } from 'jsonc-parser';
import { isAbsolute, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { DEFAULT_HOST_PATH_OPTIONS, type HostPathOptions } from '../host/mover/host-path.ts';
import { DEFAULT_DEADLINES, DEFAULT_HEALTH_PROBE_MS, DEFAULT_PLUGIN_LOAD_TIMEOUT_MS, type Deadlines } from '../host/deadlines.ts';
import type { BackendConfig } from '../host/plugins.ts';
import { DEFAULT_ENGINE_OPTIONS, type EngineOptions } from './options.ts';
import { resolveEmbeddedArray, type EmbeddedArrayConfig } from './embedded.ts';
import { ACCESS_ENV_VARS, AccessConfigError, accessConfig, type AccessConfig, type AccessFlags } from './access/config.ts';

/** Everything ferryd needs to run. The network settings (TLS, auth, audit) are access/config.ts's. */
export interface DaemonConfig extends AccessConfig {
  /** "host:port" (port 0 picks one) or "unix:/path". */
  listen: string;
  /** Holds the daemon's LevelDB (`ferry.db/`) and the embedded simulator's data (`simulator/`). */
  dataDir: string;
  /** Where driver plugins are found. */
  pluginsDir: string;
  /** pino level, or "silent". */
  logLevel: string;
  /** The embedded simulated array, served on the daemon's own address. */
  simulator: EmbeddedArrayConfig;
  /** Which plugin drives which backend. */
  backends: BackendConfig[];
  engine: EngineOptions;
  /** The mover of host-path migrations: batch size, memory, the daemon-wide bandwidth cap. */
  hostPath: HostPathOptions;
  deadlines: Deadlines;
  /** How long a plugin may take to import, and a driver to be created. */
  pluginLoadTimeoutMs: number;
  /** How often each backend's driver is probed (describe) for health. */
  healthProbeMs: number;
  /** On SIGTERM/SIGINT: how long driver calls in flight may take to finish. */
  shutdownGraceMs: number;
  /** After this long the daemon exits whatever is still running. */
  shutdownForceMs: number;
  /** fsync every state write (survives power loss, not only kill -9). */
  storeSync: boolean;
  /** "host:port" to serve Prometheus metrics on at /metrics (port 0 picks one); null: off. */
  metricsListen: string | null;
}

/** Thrown for a bad setting; the message is one line for the operator. */
export class ConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ConfigError';
  }
}

/** The settings that may come from flags (undefined: not given). */
export interface ConfigFlags extends AccessFlags {
  listen?: string;
  dataDir?: string;
  config?: string;
  pluginsDir?: string;
  logLevel?: string;
  metricsListen?: string;
}

/** The project's own plugins folder: the default --plugins-dir. */
export const DEFAULT_PLUGINS_DIR = fileURLToPath(new URL('../plugins/', import.meta.url));

/** Environment variables, by the setting they set. */
export const ENV_VARS = {
  listen: 'FERRY_LISTEN',
  dataDir: 'FERRY_DATA_DIR',
  config: 'FERRY_CONFIG',
  pluginsDir: 'FERRY_PLUGINS_DIR',
  logLevel: 'FERRY_LOG_LEVEL',
  ...ACCESS_ENV_VARS,
  metricsListen: 'FERRY_METRICS_LISTEN',
} as const;

type Json = Record<string, unknown>;

function isObject(v: unknown): v is Json {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** The HOST:PORT rule of every address ferryd listens on (port 0 picks one); `what` names the setting, `or` what else it takes. */
function checkHostPort(value: string, source: string, what: string, or = ''): string {
  const m = /^(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]+):(\d{1,5})$/.exec(value);
  if (!m || Number(m[2]) > 65535) throw new ConfigError(`${source}: ${what} "${value}" must be HOST:PORT (port 0-65535)${or}`);
  return value;
}

function checkListen(value: string, source: string): string {
  if (value.startsWith('unix:')) {
    if (value.length <= 'unix:'.length) throw new ConfigError(`${source}: listen "${value}" needs a socket path after unix:`);
    return value;
  }
  return checkHostPort(value, source, 'listen', ' or unix:PATH');
}

/** The longest delay Node can give a timer (ms); a longer one fires at once. */
const MAX_TIMER_MS = 2 ** 31 - 1;

/** A number setting: its default and the values that work. */
interface NumberRule {
  default: number;
  /** The least value that works. */
  min: number;
  /** The greatest (for a delay: the longest timer Node can set). */
  max: number;
  /** Whole numbers only (a count). */
  integer: boolean;
  /** Why less than `min` does not work, for the message (when 0 is out). */
  why?: string;
}

/** A duration in ms from `min`: what a timer can wait. */
const ms = (fallback: number, min: number, why?: string): NumberRule => ({ default: fallback, min, max: MAX_TIMER_MS, integer: false, why });
/** A whole number from `min`. */
const count = (fallback: number, min: number, why?: string): NumberRule => ({ default: fallback, min, max: Number.MAX_SAFE_INTEGER, integer: true, why });

/** The rules of a group of numbers, from its defaults and each key's limits; a key missing from either does not compile. */
function group<T extends object>(defaults: T, limits: { [K in keyof T]: (fallback: number) => NumberRule }): { [K in keyof T]: NumberRule } {
  const out = {} as { [K in keyof T]: NumberRule };
  for (const key of Object.keys(limits) as (keyof T)[]) out[key] = limits[key](defaults[key] as number);
  return out;
}

const DEADLINE = (fallback: number) => ms(fallback, 1, 'a deadline of 0 fails every call at once');

/** The engine's settings (`engine` in the file). */
const ENGINE_RULES = group(DEFAULT_ENGINE_OPTIONS, {
  maxConcurrentCalls: (d) => count(d, 1, 'with no slot no driver is ever called'),
  minPollMs: (d) => ms(d, 1, 'a driver that asks for no delay would be polled without pause'),
  maxPollMs: (d) => ms(d, 1, 'a driver that asks for no delay would be polled without pause'),
  defaultPollMs: (d) => ms(d, 1, 'a driver that suggests no delay would be polled without pause'),
  stallTimeoutMs: (d) => ms(d, 0),
  defaultMaxDowntimeMs: (d) => ms(d, 1, 'no cutover fits a window of 0 ms'),
  backoffInitialMs: (d) => ms(d, 1, 'a failing call would be retried without pause'),
  backoffMaxMs: (d) => ms(d, 1, 'a failing call would be retried without pause'),
  progressPersistMs: (d) => ms(d, 0),
  parkedPollMs: (d) => ms(d, 0),
  cleanupAttempts: (d) => count(d, 1, 'the clean-up after an error would never be tried'),
  unresponsiveAfterMs: (d) => ms(d, 0),
});

/** The host path's settings (`hostPath` in the file). */
const HOST_PATH_RULES = group(DEFAULT_HOST_PATH_OPTIONS, {
  batchBytes: (d) => ({ ...count(d, 65_536, 'smaller batches cost a round trip per few blocks'), max: 64 * 1024 * 1024 }),
  batchesInFlight: (d) => count(d, 1, 'a migration writes at least one batch at a time'),
  batchesInMemory: (d) => count(d, 2, 'reading the next batch while one is written needs two'),
  bandwidthBytesPerSec: (d) => count(d, 0),
  warmIntervalMs: (d) => ms(d, 1, 'passes would follow each other without pause'),
});

/** The per-call deadlines (`deadlines` in the file). */
const DEADLINE_RULES = group(DEFAULT_DEADLINES, {
  describe: DEADLINE,
  checkCompatibility: DEADLINE,
  start: DEADLINE,
  continue: DEADLINE,
  complete: DEADLINE,
  cancel: DEADLINE,
  progress: DEADLINE,
  dataPath: DEADLINE,
});

/**
 * Every setting of the config file, once: the keys of DaemonConfig, each
 * with how it is read (a number's rule, a group of numbers, or a line
 * saying what it holds). The list of known keys is this object's keys, so a
 * setting cannot be added to the type and not here, nor here and not there.
 */
const SETTINGS = {
  listen: 'HOST:PORT (port 0 picks one) or unix:PATH',
  dataDir: 'a directory: the daemon\'s LevelDB and the embedded array\'s data',
  pluginsDir: 'a directory of driver plugins',
  logLevel: 'fatal, error, warn, info, debug, trace or silent',
  simulator: 'the embedded simulated array (see simulator/config.ts)',
  backends: 'an array of { name, plugin, options }',
  engine: ENGINE_RULES,
  hostPath: HOST_PATH_RULES,
  deadlines: DEADLINE_RULES,
  pluginLoadTimeoutMs: ms(DEFAULT_PLUGIN_LOAD_TIMEOUT_MS, 1, 'no plugin loads in 0 ms'),
  healthProbeMs: ms(DEFAULT_HEALTH_PROBE_MS, 100, 'probes more often than that would load the arrays for nothing'),
  shutdownGraceMs: ms(10_000, 0),
  shutdownForceMs: ms(30_000, 1, 'the daemon would exit before it stopped anything'),
  storeSync: 'true or false',
  tls: 'an object { cert, key, clientCa }: PEM files for server TLS, and the CA client certificates must be signed by',
  auth: 'a JSON file of principals (see "Running on a network")',
  auditLog: 'a file the audit lines go to instead of the log',
  insecure: 'true: serve a non-loopback address without TLS and --auth',
  metricsListen: 'HOST:PORT to serve Prometheus metrics on at /metrics (off when not set)',
} satisfies Record<keyof DaemonConfig, string | NumberRule | Record<string, NumberRule>>;

/** The keys a config file may set. */
export const SETTING_KEYS = Object.keys(SETTINGS) as (keyof DaemonConfig)[];

function number(obj: Json, key: string, rule: NumberRule, source: string): number {
  const v = obj[key];
  if (v === undefined) return rule.default;
  const whole = rule.integer ? 'a whole number' : 'a number';
  if (typeof v !== 'number' || !Number.isFinite(v) || v < rule.min || (rule.integer && !Number.isInteger(v))) {
    const why = rule.why && typeof v === 'number' && v < rule.min ? `: ${rule.why}` : '';
    throw new ConfigError(`${source}: ${key} must be ${whole} >= ${rule.min}, got ${JSON.stringify(v)}${why}`);
  }
  if (v > rule.max) throw new ConfigError(`${source}: ${key} must be at most ${rule.max}${rule.max === MAX_TIMER_MS ? ' (the longest timer Node can set)' : ''}, got ${v}`);
  return v;
}

function numbers<T extends object>(obj: unknown, rules: { [K in keyof T]: NumberRule }, source: string): T {
  const keys = Object.keys(rules);
  const out = {} as Record<string, number>;
  if (obj !== undefined && !isObject(obj)) throw new ConfigError(`${source} must be an object`);
  const given = (obj ?? {}) as Json;
  for (const key of Object.keys(given)) if (!keys.includes(key)) throw new ConfigError(`${source}.${key} is not a setting (known: ${keys.join(', ')})`);
  for (const key of keys) out[key] = number(given, key, (rules as Record<string, NumberRule>)[key]!, source);
  return out as T;
}

function backendsFrom(value: unknown, source: string): BackendConfig[] {
  if (!Array.isArray(value)) throw new ConfigError(`${source}: backends must be an array`);
  const seen = new Set<string>();
  return value.map((b: unknown, i) => {
    const at = `${source}: backends[${i}]`;
    if (!isObject(b)) throw new ConfigError(`${at} must be an object`);
    if (typeof b.name !== 'string' || !/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/.test(b.name)) throw new ConfigError(`${at}.name must be 1-64 letters, digits, ".", "_" or "-"`);
    if (seen.has(b.name)) throw new ConfigError(`${at}.name ${b.name} is used twice`);
    seen.add(b.name);
    if (typeof b.plugin !== 'string' || b.plugin.length === 0) throw new ConfigError(`${at}.plugin must name a plugin`);
    if (b.options !== undefined && !isObject(b.options)) throw new ConfigError(`${at}.options must be an object`);
    return { name: b.name, plugin: b.plugin, options: (b.options as Json | undefined) ?? {} };
  });
}

/** What each jsonc-parser error code says was expected or wrong, for people. */
const SYNTAX_PROBLEMS: Record<string, string> = {
  InvalidSymbol: 'unexpected text (names and strings take double quotes)',
  InvalidNumberFormat: 'a malformed number',
  PropertyNameExpected: 'expected a property name in double quotes',
  ValueExpected: 'expected a value',
  ColonExpected: 'expected ":"',
  CommaExpected: 'expected ","',
  CloseBraceExpected: 'expected "}"',
  CloseBracketExpected: 'expected "]"',
  EndOfFileExpected: 'expected the end of the file',
  InvalidCommentToken: 'a malformed comment',
  UnexpectedEndOfComment: 'a comment that is never closed',
  UnexpectedEndOfString: 'a string that is never closed',
  UnexpectedEndOfNumber: 'a number cut short',
  InvalidUnicode: 'a malformed \\u escape',
  InvalidEscapeCharacter: 'an invalid escape',
  InvalidCharacter: 'a control character in a string',
};

/** 1-based line and column of `offset` in `text`. */
function lineColumn(text: string, offset: number): { line: number; column: number } {
  const before = text.slice(0, offset);
  const lineStart = before.lastIndexOf('\n') + 1;
  return { line: before.split('\n').length, column: offset - lineStart + 1 };
}

/**
 * Parses a config file's text: JSON with `//` and `/* *\/` comments and
 * trailing commas (the "jsonc" the README's example is written in). A syntax
 * error names the file, the line and column, what was expected and what
 * was found there.
 */
function parseConfigText(text: string, path: string): Json {
  const errors: ParseError[] = [];
  const parsed: unknown = parseJsonc(text, errors, { allowTrailingComma: true, disallowComments: false, allowEmptyContent: false });
  const first = errors.sort((a, b) => a.offset - b.offset)[0];
  if (first) {
    const { line, column } = lineColumn(text, first.offset);
    const token = text.slice(first.offset, first.offset + Math.max(1, Math.min(first.length, 40))).replace(/\r?\n[^]*$/, '');
    const met = first.offset >= text.length ? 'the end of the file' : token ? `\`${token}\`` : 'a line break';
    const problem = SYNTAX_PROBLEMS[printParseErrorCode(first.error)] ?? 'a syntax error';
    throw new ConfigError(`config file ${path}:${line}:${column}: ${problem}, found ${met}`);
  }
  if (!isObject(parsed)) throw new ConfigError(`config file ${path}: the top level must be an object, found ${Array.isArray(parsed) ? 'an array' : JSON.stringify(parsed)}`);
  return parsed;
}

/**
 * Builds the configuration. `cwd` anchors relative paths given on the
 * command line or in the environment; paths in a config file are relative to
 * the file.
 */
export function loadConfig(flags: ConfigFlags, env: NodeJS.ProcessEnv = process.env, cwd = process.cwd()): DaemonConfig {
  const configPath = flags.config ?? env[ENV_VARS.config];
  let file: Json = {};
  let fileDir = cwd;
  if (configPath) {
    const path = resolve(cwd, configPath);
    let text: string;
    try {
      text = readFileSync(path, 'utf8');
    } catch (err) {
      throw new ConfigError(`config file ${path} cannot be read: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
    }
    file = parseConfigText(text, path);
    fileDir = resolve(path, '..');
  }
  const src = configPath ? `config file ${configPath}` : 'config';
  for (const key of Object.keys(file)) if (!(SETTING_KEYS as string[]).includes(key)) throw new ConfigError(`${src}: ${key} is not a setting (known: ${SETTING_KEYS.join(', ')})`);

  const pick = (key: 'listen' | 'dataDir' | 'pluginsDir' | 'logLevel' | 'metricsListen', fallback: string, isPath: boolean): [string, string] => {
    if (flags[key] !== undefined) return [isPath ? resolve(cwd, flags[key]!) : flags[key]!, `--${key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`];
    const fromEnv = env[ENV_VARS[key]];
    if (fromEnv) return [isPath ? resolve(cwd, fromEnv) : fromEnv, ENV_VARS[key]];
    const fromFile = file[key];
    if (fromFile !== undefined) {
      if (typeof fromFile !== 'string' || fromFile.length === 0) throw new ConfigError(`${src}: ${key} must be a non-empty string`);
      return [isPath && !isAbsolute(fromFile) ? resolve(fileDir, fromFile) : fromFile, src];
    }
    return [fallback, 'default'];
  };

  const [listenRaw, listenSrc] = pick('listen', '127.0.0.1:50051', false);
  const [dataDir] = pick('dataDir', resolve(cwd, 'ferry-data'), true);
  const [pluginsDir] = pick('pluginsDir', DEFAULT_PLUGINS_DIR, true);
  const [logLevel, logSrc] = pick('logLevel', 'info', false);
  const [metricsListen, metricsSrc] = pick('metricsListen', '', false);
  if (!['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'].includes(logLevel)) throw new ConfigError(`${logSrc}: log level "${logLevel}" is not one of fatal, error, warn, info, debug, trace, silent`);

  let simulator: DaemonConfig['simulator'];
  try {
    simulator = resolveEmbeddedArray(file.simulator, file.backends === undefined);
  } catch (err) {
    throw new ConfigError(`${src}: ${(err as Error).message}`);
  }

  const backends =
    file.backends !== undefined
      ? backendsFrom(file.backends, src)
      : simulator.embedded
        ? simulator.backendNames.map((name) => ({ name, plugin: 'simulator', options: {} }))
        : [];

  const engine = numbers<EngineOptions>(file.engine, SETTINGS.engine, `${src}: engine`);
  if (engine.minPollMs > engine.maxPollMs) throw new ConfigError(`${src}: engine.minPollMs must not exceed engine.maxPollMs`);
  const storeSync = file.storeSync ?? false;
  if (typeof storeSync !== 'boolean') throw new ConfigError(`${src}: storeSync must be true or false`);

  const listen = checkListen(listenRaw, listenSrc);
  let access: AccessConfig;
  try {
    access = accessConfig(flags, env, file, src, fileDir, cwd, listen);
  } catch (err) {
    if (err instanceof AccessConfigError) throw new ConfigError(err.message);
    throw err;
  }

  return {
    ...access,
    listen,
    dataDir,
    pluginsDir,
    logLevel,
    simulator,
    backends,
    engine,
    hostPath: numbers<HostPathOptions>(file.hostPath, SETTINGS.hostPath, `${src}: hostPath`),
    deadlines: numbers<Deadlines>(file.deadlines, SETTINGS.deadlines, `${src}: deadlines`),
    pluginLoadTimeoutMs: number(file, 'pluginLoadTimeoutMs', SETTINGS.pluginLoadTimeoutMs, src),
    healthProbeMs: number(file, 'healthProbeMs', SETTINGS.healthProbeMs, src),
    shutdownGraceMs: number(file, 'shutdownGraceMs', SETTINGS.shutdownGraceMs, src),
    shutdownForceMs: number(file, 'shutdownForceMs', SETTINGS.shutdownForceMs, src),
    storeSync,
    metricsListen: metricsListen === '' ? null : checkHostPort(metricsListen, metricsSrc, 'metricsListen'),
  };
}
