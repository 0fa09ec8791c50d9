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
import { DEFAULT_DEADLINES, DEFAULT_PLUGIN_LOAD_TIMEOUT_MS, type Deadlines } from '../host/deadlines.ts';
import type { BackendConfig } from '../host/plugins.ts';
import { DEFAULT_ENGINE_OPTIONS, type EngineOptions } from './engine.ts';
import { resolveEmbeddedArray, type EmbeddedArrayConfig } from './embedded.ts';

/** Everything ferryd needs to run. */
export interface DaemonConfig {
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
}

/** Thrown for a bad setting; the message is one line for the operator. */
export class ConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ConfigError';
  }
}

/** The settings that may come from flags (undefined: not given). */
export interface ConfigFlags {
  listen?: string;
  dataDir?: string;
  config?: string;
  pluginsDir?: string;
  logLevel?: string;
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
} as const;

type Json = Record<string, unknown>;

function isObject(v: unknown): v is Json {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function checkListen(value: string, source: string): string {
  if (value.startsWith('unix:')) {
    if (value.length <= 'unix:'.length) throw new ConfigError(`${source}: listen "${value}" needs a socket path after unix:`);
    return value;
  }
  const m = /^(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]+):(\d{1,5})$/.exec(value);
  if (!m || Number(m[2]) > 65535) throw new ConfigError(`${source}: listen "${value}" must be HOST:PORT (port 0-65535) or unix:PATH`);
  return value;
}

function number(obj: Json, key: string, fallback: number, source: string, min = 0): number {
  const v = obj[key];
  if (v === undefined) return fallback;
  if (typeof v !== 'number' || !Number.isFinite(v) || v < min) throw new ConfigError(`${source}: ${key} must be a number >= ${min}, got ${JSON.stringify(v)}`);
  return v;
}

function numbers<T extends object>(obj: unknown, defaults: T, source: string): T {
  if (obj === undefined) return { ...defaults };
  if (!isObject(obj)) throw new ConfigError(`${source} must be an object`);
  for (const key of Object.keys(obj)) if (!(key in defaults)) throw new ConfigError(`${source}.${key} is not a setting (known: ${Object.keys(defaults).join(', ')})`);
  const out = { ...defaults } as Record<string, number>;
  for (const key of Object.keys(defaults)) out[key] = number(obj, key, (defaults as Record<string, number>)[key] ?? 0, source);
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
  const known = ['listen', 'dataDir', 'pluginsDir', 'logLevel', 'simulator', 'backends', 'engine', 'deadlines', 'pluginLoadTimeoutMs', 'healthProbeMs', 'shutdownGraceMs', 'shutdownForceMs', 'storeSync'];
  for (const key of Object.keys(file)) if (!known.includes(key)) throw new ConfigError(`${src}: ${key} is not a setting (known: ${known.join(', ')})`);

  const pick = (key: keyof typeof ENV_VARS & keyof ConfigFlags, fallback: string, isPath: boolean): [string, string] => {
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

  const engine = numbers(file.engine, DEFAULT_ENGINE_OPTIONS, `${src}: engine`);
  if (engine.maxConcurrentCalls < 1) throw new ConfigError(`${src}: engine.maxConcurrentCalls must be at least 1`);
  if (engine.minPollMs > engine.maxPollMs) throw new ConfigError(`${src}: engine.minPollMs must not exceed engine.maxPollMs`);
  const storeSync = file.storeSync ?? false;
  if (typeof storeSync !== 'boolean') throw new ConfigError(`${src}: storeSync must be true or false`);

  return {
    listen: checkListen(listenRaw, listenSrc),
    dataDir,
    pluginsDir,
    logLevel,
    simulator,
    backends,
    engine,
    deadlines: numbers(file.deadlines, DEFAULT_DEADLINES, `${src}: deadlines`),
    pluginLoadTimeoutMs: number(file, 'pluginLoadTimeoutMs', DEFAULT_PLUGIN_LOAD_TIMEOUT_MS, src, 1),
    healthProbeMs: number(file, 'healthProbeMs', 5_000, src, 100),
    shutdownGraceMs: number(file, 'shutdownGraceMs', 10_000, src),
    shutdownForceMs: number(file, 'shutdownForceMs', 30_000, src, 1),
    storeSync,
  };
}
