/**
 * What a check is: a stable id (for --check and the JSON report), a title
 * that reads as a sentence about behaviour, an optional gate that says why
 * it does not apply (a capability the driver does not claim, an optional
 * adapter feature), and the check itself.
 */
import { FerryCallError, type Migration } from '../../../client/client.ts';
import { CAPABILITY_FLAGS, wireName } from '../../../host/capabilities.ts';
import type { Capabilities } from '../../api/index.ts';
import type { CheckContext } from '../context.ts';
import { describeError, expect, fail } from '../failure.ts';
import type { Harness } from '../harness.ts';

/** One check of the suite. */
export interface Check {
  /** Stable, kebab-case: what --check and the JSON report name it by. */
  id: string;
  /** A sentence about the behaviour checked. */
  title: string;
  /** Why the check does not apply to this driver or adapter, or null when it does. */
  gate?: (h: Harness) => string | null;
  run(c: CheckContext): Promise<void>;
}

/** The wire name of a capability, as the API and the docs spell it. */
export const CAPABILITY_NAMES = Object.fromEntries(CAPABILITY_FLAGS.map((f) => [f, wireName(f)])) as Record<keyof Capabilities, string>;

/** A gate: skip unless the driver claims every one of `flags`. */
export function claims(...flags: (keyof Capabilities)[]): (h: Harness) => string | null {
  return (h) => {
    const missing = flags.filter((f) => !h.capabilities[f]);
    return missing.length === 0 ? null : `driver does not claim ${missing.map((f) => CAPABILITY_NAMES[f]).join(' or ')}`;
  };
}

/** A gate: skip unless the kit's pass-through wrapper is in ferryd, for a check that holds a call at an exact point. */
export function needsWrapper(h: Harness): string | null {
  return h.wrapped ? null : `holds a driver call at an exact point, which the kit can do only for a plugin ferryd starts (kind module or process; this one is of kind ${h.kind})`;
}

/** The halves of the host data path a check needs. */
export type HostHalf = 'source' | 'destination';

/**
 * A gate: skip unless the plugin's drivers offer the host data path's
 * `halves` (the source backend's driver a `dataSource`, the destination
 * backend's a `dataDestination`), as the drivers opened at setup have them.
 */
export function offersHostPath(...halves: HostHalf[]): (h: Harness) => string | null {
  return (h) => {
    const missing = halves.filter((half) => !h.hostPath[half]);
    if (missing.length === 0) return null;
    const what = missing.map((half) => (half === 'source' ? `the source backend's driver (${h.source.name}) offers no dataSource` : `the destination backend's driver (${h.destination.name}) offers no dataDestination`));
    return `${what.join(' and ')}: the host data path is optional (section 14 of the driver guide)`;
  };
}

/** Both gates: every one of `gates` must let the check run; the first reason to skip is given. */
export function allOf(...gates: ((h: Harness) => string | null)[]): (h: Harness) => string | null {
  return (h) => {
    for (const gate of gates) {
      const reason = gate(h);
      if (reason !== null) return reason;
    }
    return null;
  };
}

/** Runs `fn`, expecting it to be refused with Ferry code `code`; fails naming the call otherwise. */
export async function expectRefused(call: string, code: string, fn: () => Promise<unknown>): Promise<FerryCallError> {
  let value: unknown;
  try {
    value = await fn();
  } catch (err) {
    expect(err instanceof FerryCallError, `${call} failed without a gRPC status: ${describeError(err)}`, call);
    expect(err.code === code, `${call} was refused with ${err.code} (${err.message}); the contract says ${code}`, call);
    return err;
  }
  const state = (value as Partial<Migration> | null)?.state;
  return fail(`${call} was accepted${state ? ` (the migration is ${stateName(state)})` : ''}; the contract says it is refused with ${code}`, call);
}

/** A state without its MIGRATION_STATE_ prefix, for messages. */
export function stateName(state: string): string {
  return state.replace('MIGRATION_STATE_', '');
}

/** States a migration is in during phase 1 or after it. */
export const PAST_STARTING = new Set(['MIGRATION_STATE_IN_PROGRESS', 'MIGRATION_STATE_PHASE1_DONE', 'MIGRATION_STATE_COMPLETING', 'MIGRATION_STATE_SUCCESS']);
