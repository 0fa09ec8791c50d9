/**
 * The bridge: serves any module driver (a plugin folder with createDriver)
 * over ferry.driver.v1.DriverService, as a kind-process driver does. Boot it
 * with host/serve-module.mjs (tsx cannot start a .ts entry of a child):
 *
 *   node host/serve-module.mjs PLUGIN_DIR [--name NAME]
 *
 * It keeps driver.proto's rules for a driver process: it listens where
 * FERRY_DRIVER_LISTEN says (or --listen ADDR), serves health
 * "ferry.driver.v1.DriverService" SERVING once it answers calls, logs JSON
 * lines to stdout, and exits when its stdin ends or on SIGTERM. `--name`
 * is the name GetPluginInfo answers (the kind-process plugin's, which wraps
 * the module); default the module's own.
 *
 * One driver per backend, made by OpenBackend; a repeat with the same
 * options keeps it, other options make a new one. Checkpoints travel as the
 * module's JSON; a call's cancellation (its deadline, ferryd's abort) aborts
 * the driver's signal. A driver's `dataSource` and `dataDestination`
 * members serve the host data path (serve-data.ts), and OpenBackend's
 * `features` says which it has, and so does `watchChanges` (WatchChanges).
 */
import * as grpc from '@grpc/grpc-js';
import { HealthImplementation } from 'grpc-health-check';
import { FerryError, type Driver, type DriverFactory, type MigrationCall } from '../plugins/api/index.ts';
import type { MigrationCall__Output as WireCall } from '../build/types/ferry/driver/v1/MigrationCall.ts';
import type { OpenBackendRequest__Output } from '../build/types/ferry/driver/v1/OpenBackendRequest.ts';
import { createLog, type Log } from '../lib/log.ts';
import { bind, serverStream, serviceDefinition, unary } from '../lib/rpc.ts';
import { DEFAULT_PLUGIN_LOAD_TIMEOUT_MS } from './deadlines.ts';
import { DRIVER_SERVICE, driverStatusMapper, featuresOf, fromStruct, jsonCheckpoint, progressToWire, specFromWire } from './driver-wire.ts';
import { dataPathHandlers, type BridgeContext } from './serve-data.ts';
import { loadModulePlugin } from './plugins.ts';

/** A backend opened on the bridge. */
interface Opened {
  options: string;
  driver: Promise<Driver>;
}

/** The DriverService handlers over one module's drivers. */
export function bridgeHandlers(name: string, version: string, createDriver: DriverFactory, log: Log): grpc.UntypedServiceImplementation {
  const backends = new Map<string, Opened>();
  const driverOf = async (backend: string): Promise<Driver> => {
    const opened = backends.get(backend);
    if (!opened) throw new FerryError('FAILED_PRECONDITION', `backend ${backend} is not open on this driver: call OpenBackend first`);
    return opened.driver;
  };
  /** The signal of a server call: aborts when the caller cancels or its deadline passes. */
  const signalOf: BridgeContext['signalOf'] = (call) => {
    const controller = new AbortController();
    call.on('cancelled', () => controller.abort(new FerryError('DEADLINE_EXCEEDED', 'the call was cancelled by ferryd')));
    return controller.signal;
  };
  const perMigration = <T>(method: string, fn: (driver: Driver, call: MigrationCall) => Promise<T>) =>
    unary<WireCall, T>(method, log, driverStatusMapper, async (request, call) => {
      if (!request.migration) throw new FerryError('INVALID_ARGUMENT', `${method}: migration is REQUIRED`);
      const migration = specFromWire(request.migration);
      const driver = await driverOf(request.backend);
      return fn(driver, { migration, checkpoint: jsonCheckpoint.decode(request.checkpoint), signal: signalOf(call), log: log.child({ backend: request.backend, migration: migration.id }) });
    });

  return {
    GetPluginInfo: unary(`GetPluginInfo`, log, driverStatusMapper, async () => ({ name, version, apiVersion: 1 })),
    OpenBackend: unary<OpenBackendRequest__Output, unknown>('OpenBackend', log, driverStatusMapper, async (request) => {
      const options = fromStruct(request.options);
      const key = JSON.stringify(options);
      let opened = backends.get(request.backend);
      if (opened?.options !== key) {
        void opened?.driver.then((d) => d.close?.()).catch(() => {});
        const driver = Promise.resolve().then(() => createDriver({ backend: request.backend, options, daemonAddress: request.daemonAddress, log: log.child({ backend: request.backend }) }));
        opened = { options: key, driver };
        backends.set(request.backend, opened);
        driver.catch(() => backends.get(request.backend) === opened && backends.delete(request.backend));
      }
      const driver = await opened.driver.catch((err: unknown) => {
        throw err instanceof FerryError ? err : new FerryError('INVALID_ARGUMENT', `backend ${request.backend}: ${(err as Error)?.message ?? String(err)}`);
      });
      return { capabilities: driver.capabilities(), features: featuresOf(driver) };
    }),
    Describe: unary<{ backend: string }, unknown>('Describe', log, driverStatusMapper, async (request, call) => (await driverOf(request.backend)).describe({ signal: signalOf(call) })),
    CheckCompatibility: perMigration('CheckCompatibility', (d, c) => d.checkCompatibility(c)),
    Start: perMigration('Start', async (d, c) => ({ checkpoint: jsonCheckpoint.encode((await d.start(c)).checkpoint) })),
    Continue: perMigration('Continue', async (d, c) => {
      const r = await d.continue(c);
      return { progress: progressToWire(r.progress), phase1Done: r.phase1Done, nextPollMs: Math.round(r.nextPollMs ?? 0), checkpoint: jsonCheckpoint.encode(r.checkpoint) };
    }),
    Complete: perMigration('Complete', async (d, c) => {
      const r = await d.complete(c);
      const checkpoint = jsonCheckpoint.encode(r.checkpoint);
      if (r.status === 'done') return { status: 'STATUS_DONE', cutover: r.cutover, checkpoint };
      if (r.status === 'aborted') return { status: 'STATUS_ABORTED', reason: r.reason, checkpoint };
      return { status: 'STATUS_IN_PROGRESS', nextPollMs: Math.round(r.nextPollMs ?? 0), checkpoint };
    }),
    Cancel: perMigration('Cancel', async (d, c) => {
      const r = await d.cancel(c);
      return { done: r.done, nextPollMs: Math.round(r.nextPollMs ?? 0), checkpoint: jsonCheckpoint.encode(r.checkpoint) };
    }),
    Progress: perMigration('Progress', async (d, c) => ({ progress: progressToWire(await d.progress(c)) })),
    WatchChanges: serverStream<{ backend: string }, { migrationId: string }>('WatchChanges', log, driverStatusMapper, async (request, call) => {
      const driver = await driverOf(request.backend);
      if (!driver.watchChanges) throw new FerryError('UNIMPLEMENTED', `WatchChanges: backend ${request.backend} does not serve changes (its driver has no watchChanges)`);
      const signal = signalOf(call);
      const gone = new Promise<void>((resolve) => signal.addEventListener('abort', () => resolve(), { once: true }));
      for await (const change of driver.watchChanges({ signal })) {
        if (signal.aborted) return;
        // Written as ferryd reads: a module that yields faster than that waits here, not in memory.
        if (!call.write({ migrationId: String(change?.migrationId ?? '') })) await Promise.race([new Promise((resolve) => call.once('drain', resolve)), gone]);
      }
    }),
    ...dataPathHandlers({ driverOf, signalOf, log }),
  };
}

/** Parses argv, loads the module, serves it; resolves once the bridge is serving. Exits the process on stdin EOF or SIGTERM. */
export async function main(argv: string[]): Promise<void> {
  const args = [...argv];
  const flag = (name: string) => {
    const i = args.indexOf(name);
    if (i === -1) return undefined;
    const value = args[i + 1];
    args.splice(i, 2);
    return value;
  };
  const nameFlag = flag('--name');
  const listen = flag('--listen') ?? process.env.FERRY_DRIVER_LISTEN;
  const [dir] = args;
  if (!dir || !listen) {
    process.stderr.write('usage: serve-module PLUGIN_DIR [--name NAME] [--listen ADDR] (or FERRY_DRIVER_LISTEN)\n');
    process.exit(2);
  }
  const log = createLog({ level: process.env.FERRY_DRIVER_LOG_LEVEL ?? 'info' });
  const { manifest, createDriver } = await loadModulePlugin(dir, DEFAULT_PLUGIN_LOAD_TIMEOUT_MS);
  const name = nameFlag ?? manifest.name;
  const server = new grpc.Server();
  const health = new HealthImplementation({ [DRIVER_SERVICE]: 'NOT_SERVING' });
  health.addToServer(server);
  server.addService(serviceDefinition(DRIVER_SERVICE), bridgeHandlers(name, manifest.version, createDriver, log));
  const address = await bind(server, listen);
  health.setStatus(DRIVER_SERVICE, 'SERVING');
  log.info({ address, plugin: name, module: manifest.name }, 'driver serving');

  let stopping = false;
  const stop = (why: string) => {
    if (stopping) return;
    stopping = true;
    log.info({ why }, 'driver stopping');
    server.tryShutdown(() => process.exit(0));
    setTimeout(() => process.exit(0), 2_000).unref();
  };
  // ferryd holds the other end of stdin: its end (even by SIGKILL) is ours, at once, since nobody is left to answer.
  const orphaned = (why: string) => {
    log.info({ why }, 'driver exiting: ferryd is gone');
    log.flush();
    process.exit(0);
  };
  process.stdin.on('end', () => orphaned('stdin closed'));
  process.stdin.on('error', () => orphaned('stdin failed'));
  process.stdin.resume();
  process.on('SIGTERM', () => stop('SIGTERM'));
}
