/**
 * The one place where ferryd meets the simulated array it can embed (the
 * default of `npm start`): reading the config file's `simulator` block, and
 * opening the array in the daemon's process with its SimulatorService on the
 * daemon's server. Nothing else in daemon/ imports simulator/.
 */
import { join } from 'node:path';
import type * as grpc from '@grpc/grpc-js';
import type { Log } from '../lib/log.ts';
import { DEFAULT_SIMULATOR_CONFIG, resolveSimulatorConfig, SimulatorConfigError, type SimulatorConfig } from '../simulator/config.ts';

/** The `simulator` block, resolved: whether to embed the array, and its config. */
export interface EmbeddedArrayConfig {
  embedded: boolean;
  config: SimulatorConfig;
  /** The backends the array has, for a config file that names none. */
  backendNames: string[];
}

/**
 * Resolves the config file's `simulator` value (undefined when absent).
 * `noBackends` is true when the file names no backends: the array is then
 * embedded by default. Throws a plain Error whose message follows `simulator`.
 */
export function resolveEmbeddedArray(value: unknown, noBackends: boolean): EmbeddedArrayConfig {
  const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
  const result = (embedded: boolean, config: SimulatorConfig) => ({ embedded, config, backendNames: config.backends.map((b) => b.name) });
  if (value === undefined) return result(noBackends, { ...DEFAULT_SIMULATOR_CONFIG });
  if (!isObject(value)) throw new Error('simulator must be an object');
  const embedded = value.embedded ?? true;
  if (typeof embedded !== 'boolean') throw new Error('simulator.embedded must be true or false');
  if (value.config !== undefined && !isObject(value.config)) throw new Error('simulator.config must be an object');
  try {
    return result(embedded, resolveSimulatorConfig(value.config as Partial<SimulatorConfig> | undefined));
  } catch (err) {
    if (err instanceof SimulatorConfigError) throw new Error(`simulator.config: ${err.message}`);
    throw err;
  }
}

/** Opens the array under `dataDir/simulator` and adds its SimulatorService to `server`; resolves with its service name and closer. */
export async function openEmbeddedArray(server: grpc.Server, dataDir: string, config: SimulatorConfig, log: Log): Promise<{ service: string; close(): Promise<void> }> {
  const sim = await import('../simulator/index.ts');
  const array = await sim.SimArray.open({ dataDir: join(dataDir, 'simulator'), config, log });
  sim.addSimulatorService(server, array, log);
  return { service: sim.SIMULATOR_SERVICE, close: () => array.close() };
}
