/**
 * Wires a daemon together and takes it apart again, in a fixed order.
 *
 * Start: store (takes the data dir's lock) -> embedded simulator -> gRPC
 * server (migration service, simulator service, health, reflection) -> bind
 * -> plugins and one driver per backend (drivers learn the bound address) ->
 * engine resumes every migration -> health SERVING.
 *
 * Stop: health NOT_SERVING -> engine stops (driver calls in flight finish
 * within the grace period; state is persisted) -> server shuts down -> drivers
 * close -> simulator closes -> store closes last.
 */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { HealthImplementation } from 'grpc-health-check';
import { openEmbeddedArray } from './embedded.ts';
import { Engine } from './engine.ts';
import { BackendHealthMonitor, DAEMON_HEALTH_NAMES } from './health.ts';
import type { Log } from '../lib/log.ts';
import { createBackendDriver, scanPlugins, type BackendEntry } from '../host/plugins.ts';
import { Reflection } from '../lib/reflection.ts';
import { bind, serviceDefinition, shutdown as shutdownServer } from '../lib/rpc.ts';
import { migrationHandlers } from './service.ts';
import { Store } from './store.ts';
import type { DaemonConfig } from './config.ts';

/** A running daemon. */
export interface Daemon {
  /** The bound address ("127.0.0.1:port" or "unix:path"). */
  address: string;
  engine: Engine;
  /** Stops everything in order; driver calls in flight get `graceMs` to finish. Safe to call twice. */
  close(graceMs?: number): Promise<void>;
}

interface Closable {
  close(): Promise<void>;
}

/** Starts a daemon. Throws StoreLockedError if the data dir is in use, ConfigError-like errors for bad setup. */
export async function startDaemon(config: DaemonConfig, log: Log): Promise<Daemon> {
  mkdirSync(config.dataDir, { recursive: true });
  const store = await Store.open(join(config.dataDir, 'ferry.db'), { sync: config.storeSync });
  const cleanups: (() => Promise<void>)[] = [() => store.close()];
  const undo = async () => {
    for (const fn of cleanups.reverse()) await fn().catch((err: unknown) => log.error({ err }, 'cleanup after failed start failed'));
  };
  try {
    const server = new grpc.Server();
    const services = ['ferry.v1.MigrationService', 'grpc.health.v1.Health'];
    let array: Closable | undefined;
    if (config.simulator.embedded) {
      const embedded = await openEmbeddedArray(server, config.dataDir, config.simulator.config, log.child({ component: 'simulator' }));
      array = embedded;
      cleanups.push(() => embedded.close());
      services.push(embedded.service);
    }
    const health = new HealthImplementation(Object.fromEntries(DAEMON_HEALTH_NAMES.map((n) => [n, 'NOT_SERVING' as const])));
    health.addToServer(server);
    new Reflection(services).addToServer(server);

    const backends = new Map<string, BackendEntry>(config.backends.map((b) => [b.name, { name: b.name, failure: 'starting' }]));
    let engine: Engine | null = null;
    const monitor = new BackendHealthMonitor(health, backends, log, (name) => engine?.stuckReason(name));
    server.addService(
      serviceDefinition('ferry.v1.MigrationService'),
      migrationHandlers({ engine: () => engine, backends, health: monitor, defaultMaxDowntimeMs: config.engine.defaultMaxDowntimeMs, log }),
    );
    const address = await bind(server, config.listen);
    cleanups.push(() => shutdownServer(server, 0));
    log.info({ address }, 'listening');

    const scan = await scanPlugins(config.pluginsDir, { timeoutMs: config.pluginLoadTimeoutMs, log, only: new Set(config.backends.map((b) => b.plugin)) });
    for (const backend of config.backends) {
      const entry = backends.get(backend.name)!;
      try {
        entry.driver = await createBackendDriver(backend, scan, { daemonAddress: address, deadlines: config.deadlines, timeoutMs: config.pluginLoadTimeoutMs, log });
        delete entry.failure;
        cleanups.push(() => entry.driver!.close());
      } catch (err) {
        entry.failure = (err as Error).message;
        log.error({ backend: backend.name, reason: entry.failure }, 'backend has no driver; it is NOT_SERVING and the daemon serves the rest');
      }
    }

    const started = new Engine(store, backends, log.child({ component: 'engine' }), config.engine, {
      stuckChanged: (name) => void monitor.probe(name),
    });
    await started.start();
    engine = started;
    await monitor.start(config.healthProbeMs);
    for (const name of DAEMON_HEALTH_NAMES) health.setStatus(name, 'SERVING');
    log.info({ address, backends: config.backends.length, plugins: scan.plugins.size, pluginFailures: scan.failures.size }, 'ferryd ready');

    let closing: Promise<void> | undefined;
    const close = (graceMs = config.shutdownGraceMs) =>
      (closing ??= (async () => {
        log.info({ graceMs }, 'shutting down');
        monitor.stop();
        await started.stop(graceMs);
        engine = null;
        await shutdownServer(server, graceMs);
        for (const entry of backends.values()) await entry.driver?.close();
        await array?.close();
        await store.close();
        log.info('stopped');
      })());
    return { address, engine: started, close };
  } catch (err) {
    await undo();
    throw err;
  }
}
