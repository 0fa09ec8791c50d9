/**
 * The array's configuration: its backends and pools, and the knobs of the
 * copy engine. A JSON file (ferry-sim --config) may set any of them; what it
 * leaves out keeps the default.
 */
import { readFile } from 'node:fs/promises';
import os from 'node:os';
import type { BlockDigest } from './copy-protocol.ts';

const GiB = 1024 ** 3;

/** A pool: capacity is bookkeeping (share files are sparse). */
export interface PoolConfig {
  name: string;
  capacityBytes: number;
}

/**
 * The arrays one simulator process hosts. A backend lives on one of them;
 * jobs copy only between backends of one array (the arrays have no link to
 * each other), so a share crosses arrays only through the host data path
 * (snapshots read from one, targets written on the other). sim-1 is the
 * first array, where a backend that names none lives; sim-2 is a second
 * array of another model, as a site has two vendors' boxes.
 */
export const FIRST_ARRAY = 'sim-1';
/** The second array of the default config (see FIRST_ARRAY). */
export const SECOND_ARRAY = 'sim-2';

/** A backend of the array. */
export interface BackendConfig {
  name: string;
  pools: PoolConfig[];
  /** The array the backend lives on (see FIRST_ARRAY); default FIRST_ARRAY. */
  array?: string;
}

/** Everything the array can be configured with. */
export interface SimulatorConfig {
  /** Backends and their pools. */
  backends: BackendConfig[];
  /** The unit of dirty tracking and verification. Default 64 KiB. */
  blockSizeBytes: number;
  /** How each block is digested to verify the destination: 'crc32' (default) or 'sha256'. */
  blockDigest: BlockDigest;
  /** Bytes per copy task handed to a worker thread. Default 8 MiB. */
  chunkSizeBytes: number;
  /** Copy worker threads. Default min(4, max(2, available parallelism)). */
  workers: number;
  /** Copy bandwidth cap for the whole array, bytes per second; 0 means none. */
  arrayBandwidthBytesPerSec: number;
  /** The pre-copy gives up converging after this many passes (Xen: 30). */
  maxPasses: number;
  /** ... or after sending this many times the share's size (Xen: 3). */
  maxSentFactor: number;
}

/**
 * Three backends, four pools of 64 GiB: room for several 4 GiB shares each.
 * alpha and beta are on the first array (sim-1), gamma on the second (sim-2).
 */
export const DEFAULT_SIMULATOR_CONFIG: Readonly<SimulatorConfig> = Object.freeze({
  backends: [
    { name: 'alpha', array: FIRST_ARRAY, pools: [{ name: 'gold', capacityBytes: 64 * GiB }, { name: 'silver', capacityBytes: 64 * GiB }] },
    { name: 'beta', array: FIRST_ARRAY, pools: [{ name: 'bronze', capacityBytes: 64 * GiB }] },
    { name: 'gamma', array: SECOND_ARRAY, pools: [{ name: 'iron', capacityBytes: 64 * GiB }] },
  ],
  blockSizeBytes: 64 * 1024,
  // CRC-32 runs at ~7 GB/s a core here against ~1.4 for SHA-256, which made SHA-256 half the copy's CPU (bench/: copy).
  blockDigest: 'crc32',
  chunkSizeBytes: 8 * 1024 * 1024,
  workers: Math.min(4, Math.max(2, os.availableParallelism())),
  arrayBandwidthBytesPerSec: 0,
  maxPasses: 30,
  maxSentFactor: 3,
});

/** Thrown for a configuration that cannot work; the message names the setting. */
export class SimulatorConfigError extends Error {
  override name = 'SimulatorConfigError';
}

function positiveInteger(value: unknown, name: string): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value <= 0) {
    throw new SimulatorConfigError(`${name} must be a positive integer, got ${JSON.stringify(value)}`);
  }
  return value;
}

function nonNegativeInteger(value: unknown, name: string): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0) {
    throw new SimulatorConfigError(`${name} must be a non-negative integer, got ${JSON.stringify(value)}`);
  }
  return value;
}

function blockDigest(value: unknown): BlockDigest {
  if (value !== 'crc32' && value !== 'sha256') throw new SimulatorConfigError(`blockDigest must be "crc32" or "sha256", got ${JSON.stringify(value)}`);
  return value;
}

function nonEmptyName(value: unknown, name: string): string {
  if (typeof value !== 'string' || !/^[A-Za-z0-9._-]{1,64}$/.test(value)) {
    throw new SimulatorConfigError(`${name} must be 1 to 64 characters of [A-Za-z0-9._-], got ${JSON.stringify(value)}`);
  }
  return value;
}

function resolveBackends(value: unknown): BackendConfig[] {
  if (!Array.isArray(value) || value.length === 0) throw new SimulatorConfigError('backends must be a non-empty array');
  const seen = new Set<string>();
  return value.map((b: unknown, i) => {
    const backend = (b ?? {}) as Record<string, unknown>;
    const name = nonEmptyName(backend.name, `backends[${i}].name`);
    if (seen.has(name)) throw new SimulatorConfigError(`backends[${i}].name "${name}" is used twice`);
    seen.add(name);
    if (!Array.isArray(backend.pools) || backend.pools.length === 0) {
      throw new SimulatorConfigError(`backends[${i}].pools must be a non-empty array`);
    }
    const poolNames = new Set<string>();
    const pools = backend.pools.map((p: unknown, j) => {
      const pool = (p ?? {}) as Record<string, unknown>;
      const poolName = nonEmptyName(pool.name, `backends[${i}].pools[${j}].name`);
      if (poolNames.has(poolName)) throw new SimulatorConfigError(`backends[${i}].pools[${j}].name "${poolName}" is used twice`);
      poolNames.add(poolName);
      return { name: poolName, capacityBytes: positiveInteger(pool.capacityBytes, `backends[${i}].pools[${j}].capacityBytes`) };
    });
    const array = backend.array === undefined ? FIRST_ARRAY : nonEmptyName(backend.array, `backends[${i}].array`);
    return { name, array, pools };
  });
}

/** The array backend `name` lives on; undefined for a backend the config does not have. */
export function arrayOf(config: SimulatorConfig, name: string): string | undefined {
  const backend = config.backends.find((b) => b.name === name);
  return backend ? (backend.array ?? FIRST_ARRAY) : undefined;
}

/** Fills in defaults and checks every setting; throws SimulatorConfigError naming the bad one. */
export function resolveSimulatorConfig(partial: Partial<SimulatorConfig> = {}): SimulatorConfig {
  const merged = { ...DEFAULT_SIMULATOR_CONFIG, ...partial };
  const config: SimulatorConfig = {
    backends: resolveBackends(merged.backends),
    blockSizeBytes: positiveInteger(merged.blockSizeBytes, 'blockSizeBytes'),
    blockDigest: blockDigest(merged.blockDigest),
    chunkSizeBytes: positiveInteger(merged.chunkSizeBytes, 'chunkSizeBytes'),
    workers: positiveInteger(merged.workers, 'workers'),
    arrayBandwidthBytesPerSec: nonNegativeInteger(merged.arrayBandwidthBytesPerSec, 'arrayBandwidthBytesPerSec'),
    maxPasses: positiveInteger(merged.maxPasses, 'maxPasses'),
    maxSentFactor: positiveInteger(merged.maxSentFactor, 'maxSentFactor'),
  };
  if (config.chunkSizeBytes % config.blockSizeBytes !== 0) {
    throw new SimulatorConfigError(`chunkSizeBytes (${config.chunkSizeBytes}) must be a multiple of blockSizeBytes (${config.blockSizeBytes})`);
  }
  if (config.chunkSizeBytes > 256 * 1024 * 1024) throw new SimulatorConfigError('chunkSizeBytes must be at most 256 MiB');
  if (config.workers > 64) throw new SimulatorConfigError('workers must be at most 64');
  return config;
}

/** Reads a JSON config file and resolves it. */
export async function loadSimulatorConfig(file: string): Promise<SimulatorConfig> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(await readFile(file, 'utf8'));
  } catch (err) {
    throw new SimulatorConfigError(`cannot read config ${file}: ${(err as Error).message}`);
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    throw new SimulatorConfigError(`config ${file} must hold a JSON object`);
  }
  return resolveSimulatorConfig(parsed as Partial<SimulatorConfig>);
}
