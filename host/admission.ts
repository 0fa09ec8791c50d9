/**
 * Admission: whether a migration may start. One decision, in one wording,
 * for StartMigration (which refuses with the first reason) and for
 * CheckCompatibility (its dry run, which lists every reason). In order:
 *
 *   both backends are configured                      else NOT_FOUND (thrown)
 *   the source backend's driver is loaded             else UNAVAILABLE (thrown)
 *   the driver supports every flag asked for          else UNIMPLEMENTED
 *   the driver's checkCompatibility answers           (its own errors, e.g. NOT_FOUND, are thrown)
 *   it can honour those flags for this share          else FAILED_PRECONDITION
 *   it gives no reason the migration cannot be done   else FAILED_PRECONDITION
 *   the destination pool has room for the share       else RESOURCE_EXHAUSTED
 *
 * A refusal is not thrown: StartMigration throws the first one as a
 * FerryError with its code; CheckCompatibility answers `compatible: false`
 * with each message as a reason. Flags are named as the API spells them.
 */
import type { Log } from '../lib/log.ts';
import { FerryError, type CompatibilityResult, type MigrationSpec } from '../plugins/api/index.ts';
import { CAPABILITY_FLAGS, wireName } from './capabilities.ts';
import type { GuardedDriver } from './guard.ts';
import type { BackendEntry } from './plugins.ts';

/** Why a migration may not start: the code StartMigration refuses it with, and one line saying why. */
export interface Refusal {
  code: 'UNIMPLEMENTED' | 'FAILED_PRECONDITION' | 'RESOURCE_EXHAUSTED';
  message: string;
}

/** What admission decided. */
export interface Admission {
  /** The source backend's driver. */
  driver: GuardedDriver;
  /** What the driver's checkCompatibility answered; absent when a refusal came before it was asked (mode 'first'). */
  compat?: CompatibilityResult;
  /** Why not, in the order above; empty when the migration may start. */
  refusals: Refusal[];
}

/**
 * Decides whether `spec` may start on the configured `backends`, asking the
 * source backend's driver (with `log`). With mode 'first' the driver is not
 * asked when a flag it never supports already refuses the migration (what
 * StartMigration needs); with 'all' it is always asked, so that every
 * reason and the driver's figures can be reported (CheckCompatibility).
 */
export function admit(backends: ReadonlyMap<string, BackendEntry>, spec: MigrationSpec, log: Log, mode: 'all'): Promise<Admission & { compat: CompatibilityResult }>;
export function admit(backends: ReadonlyMap<string, BackendEntry>, spec: MigrationSpec, log: Log, mode: 'first'): Promise<Admission>;
export async function admit(backends: ReadonlyMap<string, BackendEntry>, spec: MigrationSpec, log: Log, mode: 'first' | 'all'): Promise<Admission> {
  const { source, destination } = spec;
  const backend = configured(backends, source.backend);
  configured(backends, destination.backend);
  const driver = backend.driver;
  if (!driver) throw new FerryError('UNAVAILABLE', `backend ${backend.name} is not serving: ${backend.failure ?? 'its driver is not loaded'}`);

  const refusals: Refusal[] = [];
  const asked = CAPABILITY_FLAGS.filter((f) => spec[f]);
  const unsupported = asked.filter((f) => !driver.capabilities[f]);
  if (unsupported.length > 0) {
    refusals.push({ code: 'UNIMPLEMENTED', message: `driver ${driver.plugin.name} (backend ${backend.name}) does not support ${unsupported.map(wireName).join(', ')}` });
    if (mode === 'first') return { driver, refusals };
  }

  const compat = await driver.checkCompatibility(spec, log);
  const where = `share ${source.backend}/${source.shareId} to ${destination.backend}#${destination.pool}`;
  const refused = asked.filter((f) => driver.capabilities[f] && !compat.capabilities[f]);
  if (refused.length > 0) refusals.push({ code: 'FAILED_PRECONDITION', message: `driver ${driver.plugin.name} cannot honour ${refused.map(wireName).join(', ')} for ${where}` });
  if (compat.reasons.length > 0) refusals.push({ code: 'FAILED_PRECONDITION', message: `cannot migrate ${where}: ${compat.reasons.join('; ')}` });
  if (compat.destinationFreeBytes < compat.shareSizeBytes) {
    refusals.push({
      code: 'RESOURCE_EXHAUSTED',
      message: `pool ${destination.backend}#${destination.pool} has ${compat.destinationFreeBytes} bytes free; share ${source.shareId} needs ${compat.shareSizeBytes}`,
    });
  }
  return { driver, compat, refusals };
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
