/**
 * Admission: whether a migration may start, and by which data path. One
 * decision, in one wording, for StartMigration (which refuses with the first
 * reason) and for CheckCompatibility (its dry run, which lists every
 * reason). In order:
 *
 *   both backends are configured                      else NOT_FOUND (thrown)
 *   the source backend's driver is loaded             else UNAVAILABLE (thrown)
 *   the driver's checkCompatibility answers           (its own errors, e.g. NOT_FOUND, are thrown)
 *   the path: the driver path unless the driver says it cannot reach the
 *   destination (or the host path was asked for); then the host path, which
 *   both backends' drivers must serve           else FAILED_PRECONDITION
 *   the path supports every flag asked for            else UNIMPLEMENTED
 *   it can honour those flags for this share          else FAILED_PRECONDITION
 *   it gives no reason the migration cannot be done   else FAILED_PRECONDITION
 *   the destination pool has room for the share       else RESOURCE_EXHAUSTED
 *
 * On the driver path the source's driver answers for all of it. On the host
 * path ferryd moves the data, so it answers for the flags itself (writable
 * always, nondisruptive when the source's driver holds writes, metadata
 * always, snapshots never: the host path does not move them), the source's
 * driver for the share's size and other reasons, and the destination's
 * driver for the pool's room.
 *
 * A refusal is not thrown: StartMigration throws the first one as a
 * FerryError with its code; CheckCompatibility answers `compatible: false`
 * with each message as a reason. Flags are named as the API spells them.
 */
import type { Log } from '../lib/log.ts';
import { FerryError, type Capabilities, type CompatibilityResult, type DataPath, type MigrationSpec } from '../plugins/api/index.ts';
import { CAPABILITY_FLAGS, wireName, type CapabilityFlag } from './capabilities.ts';
import type { GuardedDriver } from './guard.ts';
import { hostPathGap } from './mover/host-path.ts';
import type { BackendEntry } from './plugins.ts';

/** Why a migration may not start: the code StartMigration refuses it with, and one line saying why. */
export interface Refusal {
  code: 'UNIMPLEMENTED' | 'FAILED_PRECONDITION' | 'RESOURCE_EXHAUSTED';
  message: string;
}

/** What admission decided. */
export interface Admission {
  /** The path the data would move by (when refused, the one that came closest). */
  dataPath: DataPath;
  /** What the path can do for this share, and the share's and pool's figures; absent when a refusal came before they were asked (mode 'first'). */
  compat?: CompatibilityResult;
  /** Why not, in the order above; empty when the migration may start. */
  refusals: Refusal[];
}

/** What the host path honours for a source whose driver claims `source`. */
function hostPathCapabilities(source: Capabilities): Capabilities {
  return { writable: true, nondisruptive: source.nondisruptive, preserveMetadata: true, preserveSnapshots: false };
}

/**
 * Decides whether `spec` may start on the configured `backends`, and by
 * which path (`requested`, or chosen when undefined), asking the drivers
 * (with `log`). With mode 'first' it stops at the first refusal (what
 * StartMigration needs); with 'all' it always asks for the figures, so that
 * every reason can be reported (CheckCompatibility).
 */
export function admit(backends: ReadonlyMap<string, BackendEntry>, spec: MigrationSpec, requested: DataPath | undefined, log: Log, mode: 'all'): Promise<Admission & { compat: CompatibilityResult }>;
export function admit(backends: ReadonlyMap<string, BackendEntry>, spec: MigrationSpec, requested: DataPath | undefined, log: Log, mode: 'first'): Promise<Admission>;
export async function admit(backends: ReadonlyMap<string, BackendEntry>, spec: MigrationSpec, requested: DataPath | undefined, log: Log, mode: 'first' | 'all'): Promise<Admission> {
  const { source, destination } = spec;
  const backend = configured(backends, source.backend);
  const target = configured(backends, destination.backend);
  const driver = backend.driver;
  if (!driver) throw new FerryError('UNAVAILABLE', `backend ${backend.name} is not serving: ${backend.failure ?? 'its driver is not loaded'}`);
  const where = `share ${source.backend}/${source.shareId} to ${destination.backend}#${destination.pool}`;
  const asked = CAPABILITY_FLAGS.filter((f) => spec[f]);

  if (requested !== 'host') {
    const refusals: Refusal[] = [];
    const unsupported = asked.filter((f) => !driver.capabilities[f]);
    if (unsupported.length > 0) {
      refusals.push({ code: 'UNIMPLEMENTED', message: `driver ${driver.plugin.name} (backend ${backend.name}) does not support ${unsupported.map(wireName).join(', ')}` });
      if (mode === 'first' && requested === 'driver') return { dataPath: 'driver', refusals };
    }
    const compat = await driver.checkCompatibility({ ...spec, dataPath: 'driver' }, log);
    if (compat.destinationUnreachable !== true) {
      if (unsupported.length > 0 && mode === 'first') return { dataPath: 'driver', refusals };
      const refused = asked.filter((f) => driver.capabilities[f] && !compat.capabilities[f]);
      return { dataPath: 'driver', compat, refusals: [...refusals, ...judge(compat, spec, where, refused, `driver ${driver.plugin.name}`)] };
    }
    if (requested === 'driver') {
      const message = `driver ${driver.plugin.name} (backend ${backend.name}) cannot reach ${destination.backend}#${destination.pool}: it moves data only within its array; leave data_path unset or ask for DATA_PATH_HOST`;
      return { dataPath: 'driver', compat, refusals: [{ code: 'FAILED_PRECONDITION', message }] };
    }
    return hostPath(driver, backend, target, spec, where, asked, log, compat, `driver ${driver.plugin.name} (backend ${backend.name}) cannot reach ${destination.backend}#${destination.pool}, and `);
  }
  return hostPath(driver, backend, target, spec, where, asked, log, undefined, '');
}

/** The host path's part of admission; `compat` is the source driver's answer when it was asked already. */
async function hostPath(
  driver: GuardedDriver,
  backend: BackendEntry,
  target: BackendEntry,
  spec: MigrationSpec,
  where: string,
  asked: readonly CapabilityFlag[],
  log: Log,
  compat: CompatibilityResult | undefined,
  because: string,
): Promise<Admission> {
  const gaps = [
    ['source', backend, hostPathGap(backend, 'dataSource')],
    ['destination', target, hostPathGap(target, 'dataDestination')],
  ] as const;
  const missing = gaps.filter(([, , gap]) => gap).map(([role, entry, gap]) => `the ${role} backend ${entry.name}: ${gap}`);
  const capabilities = hostPathCapabilities(driver.capabilities);
  const answer = compat ?? (await driver.checkCompatibility({ ...spec, dataPath: 'driver' }, log));
  const pools = target.driver ? (await target.driver.describe()).pools : [];
  const pool = pools.find((p) => p.name === spec.destination.pool);
  if (target.driver && !pool) {
    throw new FerryError('NOT_FOUND', `pool ${spec.destination.pool} not found on backend ${target.name} (it has ${pools.map((p) => p.name).join(', ') || 'none'})`);
  }
  const result: CompatibilityResult = {
    capabilities,
    reasons: answer.reasons,
    shareSizeBytes: answer.shareSizeBytes,
    destinationFreeBytes: pool?.freeBytes ?? 0,
  };
  if (missing.length > 0) {
    const message = `${because || `the host path cannot move ${where}: `}the host path needs ${missing.join('; ')}`;
    return { dataPath: 'host', compat: result, refusals: [{ code: 'FAILED_PRECONDITION', message: because ? `no data path can move ${where}: ${message}` : message }] };
  }
  const refusals: Refusal[] = [];
  const unsupported = asked.filter((f) => !capabilities[f]);
  if (unsupported.length > 0) refusals.push({ code: 'UNIMPLEMENTED', message: `the host data path (${spec.source.backend} to ${spec.destination.backend}) does not support ${unsupported.map(wireName).join(', ')}` });
  // The host path's flags do not depend on the share: a flag it lacks is UNIMPLEMENTED above, never refused for this share.
  refusals.push(...judge(result, spec, where, [], 'the host data path'));
  return { dataPath: 'host', compat: result, refusals };
}

/** The refusals that follow from a path's answer for this share; `refused` are the flags asked for that it cannot honour for it. */
function judge(compat: CompatibilityResult, spec: MigrationSpec, where: string, refused: readonly CapabilityFlag[], who: string): Refusal[] {
  const refusals: Refusal[] = [];
  if (refused.length > 0) refusals.push({ code: 'FAILED_PRECONDITION', message: `${who} cannot honour ${refused.map(wireName).join(', ')} for ${where}` });
  if (compat.reasons.length > 0) refusals.push({ code: 'FAILED_PRECONDITION', message: `cannot migrate ${where}: ${compat.reasons.join('; ')}` });
  if (compat.destinationFreeBytes < compat.shareSizeBytes) {
    refusals.push({
      code: 'RESOURCE_EXHAUSTED',
      message: `pool ${spec.destination.backend}#${spec.destination.pool} has ${compat.destinationFreeBytes} bytes free; share ${spec.source.shareId} needs ${compat.shareSizeBytes}`,
    });
  }
  return refusals;
}

/** The driver's answer for a migration admission let through; otherwise throws the first refusal, as StartMigration answers it. */
export function admitted(admission: Admission): CompatibilityResult {
  const [refusal] = admission.refusals;
  if (refusal) throw new FerryError(refusal.code, refusal.message);
  if (!admission.compat) throw new FerryError('INTERNAL', 'admission let a migration through without asking its driver');
  return admission.compat;
}

function configured(backends: ReadonlyMap<string, BackendEntry>, name: string): BackendEntry {
  const backend = backends.get(name);
  if (!backend) throw new FerryError('NOT_FOUND', `backend ${name} is not configured (known: ${[...backends.keys()].join(', ') || 'none'})`);
  return backend;
}
