/**
 * ferry.v1.MigrationService: each handler checks its request (wire.ts),
 * asks the engine or a backend's driver, and converts the answer. No handler
 * waits on a long driver call: starts, completes and cancels return as soon
 * as the change is persisted.
 */
import type * as grpc from '@grpc/grpc-js';
import type { Backend__Output } from '../build/types/ferry/v1/Backend.ts';
import type { CheckCompatibilityRequest__Output } from '../build/types/ferry/v1/CheckCompatibilityRequest.ts';
import type { CheckCompatibilityResponse__Output } from '../build/types/ferry/v1/CheckCompatibilityResponse.ts';
import type { ListBackendsRequest__Output } from '../build/types/ferry/v1/ListBackendsRequest.ts';
import type { ListBackendsResponse__Output } from '../build/types/ferry/v1/ListBackendsResponse.ts';
import type { ListMigrationsRequest__Output } from '../build/types/ferry/v1/ListMigrationsRequest.ts';
import type { ListMigrationsResponse__Output } from '../build/types/ferry/v1/ListMigrationsResponse.ts';
import type { Migration__Output } from '../build/types/ferry/v1/Migration.ts';
import type { MigrationServiceHandlers } from '../build/types/ferry/v1/MigrationService.ts';
import type { StartMigrationRequest__Output } from '../build/types/ferry/v1/StartMigrationRequest.ts';
import type { Log } from '../lib/log.ts';
import { serverStream, unary } from '../lib/rpc.ts';
import { FerryError, type MigrationSpec } from '../plugins/api/index.ts';
import { admit } from '../host/admission.ts';
import { NO_CAPABILITIES } from '../host/capabilities.ts';
import { newDryRunId } from '../host/ids.ts';
import type { BackendEntry } from '../host/plugins.ts';
import type { Engine } from './engine.ts';
import { ferryStatus } from './errors.ts';
import type { BackendHealthMonitor } from './health.ts';
import { TERMINAL_STATES, type MigrationRecord } from './migration.ts';
import { encodePageToken, parseCheck, parseList, parseStart, requireId, toWireMigration } from './wire.ts';

/** What the service needs from the daemon. `engine` is null until the daemon is ready. */
export interface ServiceContext {
  engine: () => Engine | null;
  backends: ReadonlyMap<string, BackendEntry>;
  health: BackendHealthMonitor;
  defaultMaxDowntimeMs: number;
  log: Log;
}

function ready(ctx: ServiceContext): Engine {
  const engine = ctx.engine();
  if (!engine) throw new FerryError('UNAVAILABLE', 'ferryd is starting or stopping; retry shortly');
  return engine;
}

const capabilitiesToWire = (c: { writable: boolean; nondisruptive: boolean; preserveMetadata: boolean; preserveSnapshots: boolean }) => ({ ...c });

/** The handlers of ferry.v1.MigrationService. */
export function migrationHandlers(ctx: ServiceContext): MigrationServiceHandlers {
  const { log } = ctx;
  return {
    StartMigration: unary<StartMigrationRequest__Output, Migration__Output>('StartMigration', log, ferryStatus, async (req) => {
      const input = parseStart(req, ctx.defaultMaxDowntimeMs);
      return toWireMigration(await ready(ctx).startMigration(input));
    }),

    CompleteMigration: unary<{ id: string }, Migration__Output>('CompleteMigration', log, ferryStatus, async (req) => toWireMigration(await ready(ctx).complete(requireId(req.id)))),

    CancelMigration: unary<{ id: string }, Migration__Output>('CancelMigration', log, ferryStatus, async (req) => toWireMigration(await ready(ctx).cancel(requireId(req.id)))),

    GetMigration: unary<{ id: string }, Migration__Output>('GetMigration', log, ferryStatus, async (req) => toWireMigration(ready(ctx).get(requireId(req.id)))),

    ListMigrations: unary<ListMigrationsRequest__Output, ListMigrationsResponse__Output>('ListMigrations', log, ferryStatus, async (req) => {
      const filter = parseList(req);
      const { migrations, more } = ready(ctx).list(filter);
      const last = migrations.at(-1);
      return { migrations: migrations.map(toWireMigration), nextPageToken: more && last ? encodePageToken(last.id) : '' };
    }),

    WatchMigration: serverStream<{ id: string }, Migration__Output>('WatchMigration', log, ferryStatus, (req, call) => watch(ready(ctx), requireId(req.id), call)),

    CheckCompatibility: unary<CheckCompatibilityRequest__Output, CheckCompatibilityResponse__Output>('CheckCompatibility', log, ferryStatus, async (req) => {
      const input = parseCheck(req, ctx.defaultMaxDowntimeMs);
      const { requestId: _r, dataPath: requested, ...rest } = input;
      const spec: MigrationSpec = { ...rest, id: newDryRunId(), dataPath: 'driver' };
      const { compat, refusals, dataPath } = await admit(ctx.backends, spec, requested, log.child({ backend: input.source.backend, migration: spec.id, dryRun: true }), 'all');
      return {
        compatible: refusals.length === 0,
        capabilities: capabilitiesToWire(compat.capabilities),
        reasons: refusals.map((r) => r.message),
        shareSizeBytes: compat.shareSizeBytes,
        destinationFreeBytes: compat.destinationFreeBytes,
        dataPath: dataPath === 'host' ? 'DATA_PATH_HOST' : 'DATA_PATH_DRIVER',
      };
    }),

    ListBackends: unary<ListBackendsRequest__Output, ListBackendsResponse__Output>('ListBackends', log, ferryStatus, async () => {
      const backends = await Promise.all(
        [...ctx.backends.values()].map(async (entry): Promise<Backend__Output> => {
          const probe = await ctx.health.probe(entry.name);
          return {
            name: entry.name,
            pools: probe.pools,
            driverName: entry.driver?.plugin.name ?? '',
            driverVersion: entry.driver?.plugin.version ?? '',
            // Always set, as the proto promises: a backend with no driver can honour nothing.
            capabilities: capabilitiesToWire(entry.driver?.capabilities ?? NO_CAPABILITIES),
            health: probe.serving ? 'BACKEND_HEALTH_SERVING' : 'BACKEND_HEALTH_NOT_SERVING',
            healthReason: probe.reason,
            hostPath: { source: entry.driver?.dataSource !== undefined, destination: entry.driver?.dataDestination !== undefined },
          };
        }),
      );
      return { backends };
    }),
  };
}

/**
 * Streams a migration until it is terminal. A slow reader gets the latest
 * value when it catches up, not a backlog: memory per watcher is one record.
 */
function watch(engine: Engine, id: string, call: grpc.ServerWritableStream<{ id: string }, Migration__Output>): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    let pending: MigrationRecord | null = null;
    let blocked = false;
    let finished = false;
    let unsubscribe = () => {};
    const finish = (err?: Error) => {
      if (finished) return;
      finished = true;
      unsubscribe();
      call.off('drain', onDrain);
      if (err) reject(err);
      else resolve();
    };
    const send = (record: MigrationRecord) => {
      if (finished) return;
      if (blocked) {
        pending = record;
        return;
      }
      blocked = !call.write(toWireMigration(record));
      if (TERMINAL_STATES.has(record.state)) finish();
    };
    const onDrain = () => {
      blocked = false;
      const next = pending;
      pending = null;
      if (next) send(next);
    };
    call.on('drain', onDrain);
    call.on('cancelled', () => finish());
    const current = engine.get(id);
    unsubscribe = engine.watch(id, (record) => {
      if (record === null) finish(new FerryError('UNAVAILABLE', 'ferryd is shutting down; watch again after it restarts'));
      else send(record);
    });
    send(current);
  });
}
