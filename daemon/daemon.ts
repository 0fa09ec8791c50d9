/**
 * Wires a daemon together and takes it apart again, in a fixed order.
 *
 * Start: store (takes the data dir's lock) -> network access (TLS files,
 * principals, audit trail) -> embedded simulator -> gRPC server (migration
 * service, simulator service, health, reflection) -> bind the network port
 * (with the access check) and the drivers' socket (without) -> metrics
 * server, when metricsListen is set -> plugins and one driver per backend
 * (drivers learn the drivers' socket) -> engine resumes every migration ->
 * health SERVING. The metrics' registry is made first, since the store, the
 * server, the drivers and the engine report to it.
 *
 * Stop, for a close and for a start that failed part way alike (whatever is
 * up is taken apart; `takeApart` is the one place this order is written):
 * health NOT_SERVING -> engine stops (driver calls in flight finish within
 * the grace period; state is persisted) -> server shuts down -> metrics
 * server closes (a scrape until then sees the engine drain) -> drivers
 * close -> driver processes stop (SIGTERM, SIGKILL after the grace period)
 * -> simulator closes -> access (file watches, audit file) -> store closes
 * last. Drivers close after the server, not in reverse start order: a
 * request in flight (CheckCompatibility, ListBackends) still calls its
 * driver until the server has drained.
 *
 * The drivers' socket, unix:<data dir>/daemon/ferryd.sock in a 0700
 * folder, serves ferryd's own drivers the embedded array (the simulator
 * driver reaches it there, in-process or as a driver process) without TLS
 * or tokens: only who can read the data dir can reach it, and they can
 * read the shares' data anyway. The migration API is not served there
 * (access.ts), so every migration goes through the checked, audited port.
 */
import { chmodSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { HealthImplementation } from 'grpc-health-check';
import { openEmbeddedArray } from './embedded.ts';
import { Engine } from './engine.ts';
import { BackendHealthMonitor, DAEMON_HEALTH_NAMES } from './health.ts';
import { SOCKET_PATH_MAX } from '../lib/address.ts';
import type { Log } from '../lib/log.ts';
import { closePlugins, createBackendDriver, scanPlugins, type BackendEntry, type PluginScan } from '../host/plugins.ts';
import { DaemonMetrics } from './metrics.ts';
import { serveMetrics, type MetricsServer } from './metrics-server.ts';
import { Reflection } from '../lib/reflection.ts';
import { bind, serviceDefinition, shutdown as shutdownServer } from '../lib/rpc.ts';
import { migrationHandlers } from './service.ts';
import { Store } from './store.ts';
import type { DaemonConfig } from './config.ts';
import { openAccess, type NetworkAccess } from './access/access.ts';

/** A running daemon. */
export interface Daemon {
  /** The bound network address ("127.0.0.1:port" or "unix:path"). */
  address: string;
  /** The drivers' socket ("unix:path"), served without the access check. */
  driversAddress: string;
  /** The network port's protection (TLS, principals). */
  access: NetworkAccess;
  /** Where the metrics are served ("host:port"), or null when metricsListen is not set. */
  metricsAddress: string | null;
  engine: Engine;
  /**
   * Stops everything in order; driver calls in flight get `graceMs` to
   * finish. Every part is stopped even if one fails; rejects with the first
   * failure. Safe to call twice.
   */
  close(graceMs?: number): Promise<void>;
}

interface Closable {
  close(): Promise<void>;
}

/** What a daemon holds. Each part is set as soon as it exists, so that a failed start takes apart exactly what is up. */
interface Parts {
  store: Store;
  access?: NetworkAccess;
  /** A private temp folder holding the drivers' socket, when the data dir's path is too long for one. */
  socketTempDir?: string;
  array?: Closable;
  server?: grpc.Server;
  metrics?: MetricsServer;
  backends: ReadonlyMap<string, BackendEntry>;
  /** The plugins, with the driver processes they started. */
  plugins?: PluginScan;
  monitor?: BackendHealthMonitor;
  engine?: Engine;
  /** The engine the service answers with: set once the daemon is ready, cleared once the engine has stopped. */
  serving: Engine | null;
}

/**
 * Takes apart the parts that are up, in the order at the top of this file.
 * Every step runs even when one before it fails (each failure is logged);
 * resolves with the first failure, or undefined.
 */
async function takeApart(parts: Parts, graceMs: number, log: Log): Promise<unknown> {
  let first: unknown;
  const attempt = async (part: string, step: () => unknown) => {
    try {
      await step();
    } catch (err) {
      log.error({ err, part }, 'stopping a part failed; stopping the rest');
      first ??= err;
    }
  };
  await attempt('health', () => parts.monitor?.stop());
  await attempt('engine', async () => {
    await parts.engine?.stop(graceMs);
    parts.serving = null;
  });
  await attempt('server', () => parts.server && shutdownServer(parts.server, graceMs));
  await attempt('metrics server', () => parts.metrics?.close());
  for (const entry of parts.backends.values()) await attempt(`driver of ${entry.name}`, () => entry.driver?.close());
  await attempt('driver processes', () => parts.plugins && closePlugins(parts.plugins, graceMs));
  await attempt('simulator', () => parts.array?.close());
  await attempt('access', () => parts.access?.close());
  await attempt('drivers socket', () => parts.socketTempDir && rmSync(parts.socketTempDir, { recursive: true, force: true }));
  await attempt('store', () => parts.store.close());
  return first;
}

/** Starts a daemon. Throws StoreLockedError if the data dir is in use, ConfigError-like errors for bad setup. */
export async function startDaemon(config: DaemonConfig, log: Log): Promise<Daemon> {
  mkdirSync(config.dataDir, { recursive: true });
  const backends = new Map<string, BackendEntry>(config.backends.map((b) => [b.name, { name: b.name, failure: 'starting' }]));
  // Off unless asked for: then no part is given a hook, and nothing is measured.
  const metrics =
    config.metricsListen === null
      ? undefined
      : new DaemonMetrics({ engine: () => parts.engine, backends: [...backends.keys()], serving: (name) => parts.monitor?.isServing(name) ?? false });
  const parts: Parts = { store: await Store.open(join(config.dataDir, 'ferry.db'), { sync: config.storeSync, observe: metrics?.storeWrite }), backends, serving: null };
  try {
    const access = openAccess(config, log, metrics ? [metrics.grpcInterceptor] : []);
    parts.access = access;
    const server = new grpc.Server();
    const services = ['ferry.v1.MigrationService', 'grpc.health.v1.Health'];
    if (config.simulator.embedded) {
      const embedded = await openEmbeddedArray(server, config.dataDir, config.simulator.config, log.child({ component: 'simulator' }));
      parts.array = embedded;
      services.push(embedded.service);
    }
    const health = new HealthImplementation(Object.fromEntries(DAEMON_HEALTH_NAMES.map((n) => [n, 'NOT_SERVING' as const])));
    health.addToServer(server);
    new Reflection(services).addToServer(server);

    const monitor = new BackendHealthMonitor(health, backends, log, (name) => parts.serving?.stuckReason(name));
    parts.monitor = monitor;
    server.addService(
      serviceDefinition('ferry.v1.MigrationService'),
      migrationHandlers({ engine: () => parts.serving, backends, health: monitor, defaultMaxDowntimeMs: config.engine.defaultMaxDowntimeMs, log }),
    );
    const address = await bind(server, config.listen, access.credentials);
    parts.server = server;
    const driversAddress = await bind(server, driversSocket(config.dataDir, parts), access.driversCredentials);
    log.info({ address, tls: access.tls !== undefined, auth: access.principals() !== null, driversAddress }, 'listening');
    if (metrics && config.metricsListen !== null) parts.metrics = await serveMetrics(metrics, config.metricsListen, log);

    const scan = await scanPlugins(config.pluginsDir, {
      timeoutMs: config.pluginLoadTimeoutMs,
      log,
      only: new Set(config.backends.map((b) => b.plugin)),
      // A driver process is checked as often as backends are probed, each check with describe's deadline.
      processes: { dataDir: config.dataDir, backends: config.backends, livenessMs: config.healthProbeMs, livenessTimeoutMs: config.deadlines.describe },
    });
    parts.plugins = scan;
    // Concurrently: a driver process that is slow to start holds up its own backends once, not each in turn.
    await Promise.all(
      config.backends.map(async (backend) => {
        const entry = backends.get(backend.name)!;
        // A remote driver that was not ready at start is handed over once it is; its ups and downs are probed at once.
        const hooks = {
          attach: (driver: NonNullable<BackendEntry['driver']>) => {
            if (parts.serving === null && parts.engine) return void driver.close();
            entry.driver = driver;
            delete entry.failure;
            void monitor.probe(backend.name);
          },
          changed: () => void monitor.probe(backend.name),
        };
        try {
          entry.driver = await createBackendDriver(backend, scan, { daemonAddress: driversAddress, deadlines: config.deadlines, timeoutMs: config.pluginLoadTimeoutMs, log, hooks, observe: metrics?.driverCall });
          delete entry.failure;
        } catch (err) {
          entry.failure = (err as Error).message;
          log.error({ backend: backend.name, reason: entry.failure }, 'backend has no driver; it is NOT_SERVING and the daemon serves the rest');
        }
      }),
    );

    const engine = new Engine(parts.store, backends, log.child({ component: 'engine' }), config.engine, {
      stuckChanged: (name) => void monitor.probe(name),
      ...metrics?.engineHooks,
    }, config.hostPath);
    parts.engine = engine;
    await engine.start();
    parts.serving = engine;
    await monitor.start(config.healthProbeMs);
    for (const name of DAEMON_HEALTH_NAMES) health.setStatus(name, 'SERVING');
    log.info({ address, backends: config.backends.length, plugins: scan.plugins.size, pluginFailures: scan.failures.size }, 'ferryd ready');

    let closing: Promise<void> | undefined;
    const close = (graceMs = config.shutdownGraceMs) =>
      (closing ??= (async () => {
        log.info({ graceMs }, 'shutting down');
        const failure = await takeApart(parts, graceMs, log);
        if (failure !== undefined) throw failure;
        log.info('stopped');
      })());
    return { address, driversAddress, access, metricsAddress: parts.metrics?.address ?? null, engine, close };
  } catch (err) {
    await takeApart(parts, 0, log);
    throw err;
  }
}

/**
 * The drivers' socket: in <dataDir>/daemon/ (0700), or in a private temp
 * folder when that path is too long for a unix socket. A socket left by a
 * killed ferryd is removed first; the data dir's lock, already held, says
 * no other ferryd is using it.
 */
function driversSocket(dataDir: string, parts: Parts): string {
  let dir = join(resolve(dataDir), 'daemon');
  if (join(dir, 'ferryd.sock').length > SOCKET_PATH_MAX) {
    dir = mkdtempSync(join(tmpdir(), 'ferryd-'));
    parts.socketTempDir = dir;
  } else {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    chmodSync(dir, 0o700);
  }
  const path = join(dir, 'ferryd.sock');
  rmSync(path, { force: true });
  return `unix:${path}`;
}
