/**
 * Which adapter the kit uses for a plugin, and making it:
 * - `--adapter-address ADDR` (any kind; the only way for an endpoint
 *   plugin): the ConformanceAdapter service at ADDR;
 * - `--adapter FILE` (any kind): that module's createAdapter;
 * - kind module: conformance-adapter.{ts,mjs,js} in the plugin folder;
 * - kind process: the ConformanceAdapter of the kit's own instance of the
 *   plugin's command (adapter-process.ts).
 * The choice is plain JSON, since the command hands it to the test process
 * it runs the suite in.
 */
import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import type { AdapterModule, AdapterSetup, ConformanceAdapter, ShareLocation } from './adapter.ts';
import { AdapterProcess } from './adapter-process.ts';
import { readManifest, type HostManifest } from '../../host/plugins.ts';
import { RemoteAdapter } from './remote-adapter.ts';

/** The adapter files looked for in a module plugin's folder, in this order. */
export const ADAPTER_FILES = ['conformance-adapter.ts', 'conformance-adapter.mjs', 'conformance-adapter.js'];

/** Where the kit's adapter comes from. */
export type AdapterChoice =
  /** A module exporting createAdapter(config). */
  | { type: 'module'; file: string }
  /** The plugin's command, started by the kit in `dir`. */
  | { type: 'process'; command: string[]; dir: string }
  /** A ConformanceAdapter service already served at `address`. */
  | { type: 'address'; address: string };

/** Thrown when no adapter can be chosen; the message says what to pass. */
export class AdapterChoiceError extends Error {
  override name = 'AdapterChoiceError';
}

/** Chooses the adapter for the plugin in `pluginDir` (see the file comment for the order). */
export function chooseAdapter(pluginDir: string, flags: { adapter?: string; adapterAddress?: string }): AdapterChoice {
  if (flags.adapterAddress) return { type: 'address', address: flags.adapterAddress };
  if (flags.adapter) {
    const file = resolve(flags.adapter);
    if (!existsSync(file)) throw new AdapterChoiceError(`--adapter ${flags.adapter}: no such file`);
    return { type: 'module', file };
  }
  let manifest: HostManifest;
  try {
    manifest = readManifest(pluginDir);
  } catch (err) {
    throw new AdapterChoiceError((err as Error).message);
  }
  if (manifest.kind === 'endpoint') throw new AdapterChoiceError(`the plugin is of kind endpoint: pass --adapter-address ADDR, where its ConformanceAdapter service is served (proto/ferry/driver/v1/conformance.proto)`);
  if (manifest.kind === 'process') return { type: 'process', command: manifest.command!, dir: pluginDir };
  const file = ADAPTER_FILES.map((f) => join(pluginDir, f)).find((f) => existsSync(f));
  if (!file) throw new AdapterChoiceError(`no adapter: write ${join(pluginDir, 'conformance-adapter.ts')} (see docs/writing-a-driver.md, "The adapter") or pass --adapter FILE`);
  return { type: 'module', file };
}

/** The choice in a few words, for the report's header. */
export function describeChoice(choice: AdapterChoice, shown: (path: string) => string = (p) => p): string {
  if (choice.type === 'module') return `adapter ${shown(choice.file)}`;
  if (choice.type === 'process') return `adapter: the ConformanceAdapter service of the plugin's command (${choice.command.join(' ')}), started by the kit`;
  return `adapter: the ConformanceAdapter service at ${choice.address}`;
}

/**
 * The factory of the adapter a choice names: for a module, its
 * createAdapter (imported now, so that a module that does not load fails
 * before any check); the factory takes the parsed --config FILE.
 */
export async function adapterFactory(choice: AdapterChoice): Promise<AdapterModule['createAdapter']> {
  if (choice.type === 'address') return (config) => new RemoteAdapter(choice.address, config);
  if (choice.type === 'process') return (config) => processAdapter(choice.command, choice.dir, config);
  const mod = (await import(pathToFileURL(choice.file).href)) as Partial<AdapterModule>;
  if (typeof mod.createAdapter !== 'function') throw new Error(`${choice.file} does not export a function named createAdapter`);
  return mod.createAdapter;
}

/**
 * The adapter of a process plugin: setup starts the kit's own instance of
 * `command` in `pluginDir` and calls Setup there; teardown calls Teardown
 * and stops the process.
 */
export function processAdapter(command: readonly string[], pluginDir: string, config: Record<string, unknown> = {}): ConformanceAdapter {
  return new ProcessAdapter(command, pluginDir, config);
}

class ProcessAdapter implements ConformanceAdapter {
  private process?: AdapterProcess;
  private remote?: RemoteAdapter;
  /** Kills the command if the kit exits without a teardown. */
  private readonly killOnExit = () => this.process?.killNow();

  constructor(
    private readonly command: readonly string[],
    private readonly dir: string,
    private readonly config: Record<string, unknown>,
  ) {}

  async setup(): Promise<AdapterSetup> {
    this.process = await AdapterProcess.start(this.command, this.dir);
    process.once('exit', this.killOnExit);
    this.remote = this.process.adapter(this.config);
    return this.remote.setup();
  }

  createShare(backend: string, pool: string, sizeBytes: number): Promise<string> {
    return this.now().createShare(backend, pool, sizeBytes);
  }
  writeShare(shareId: string, offset: number, data: Uint8Array): Promise<void> {
    return this.now().writeShare(shareId, offset, data);
  }
  checksum(shareId: string): Promise<string> {
    return this.now().checksum(shareId);
  }
  locate(shareId: string): Promise<ShareLocation | null> {
    return this.now().locate(shareId);
  }
  listShares(backend: string): Promise<string[]> {
    return this.now().listShares(backend);
  }
  deleteShare(shareId: string): Promise<void> {
    return this.now().deleteShare(shareId);
  }

  async teardown(): Promise<void> {
    try {
      await this.remote?.teardown();
    } finally {
      await this.process?.stop();
      process.off('exit', this.killOnExit);
    }
  }

  private now(): RemoteAdapter {
    if (!this.remote) throw new Error('the adapter is not set up');
    return this.remote;
  }
}
