/**
 * The capability flags, listed once: what a driver claims (Capabilities),
 * what a migration asks for (the same names on MigrationSpec), and how the
 * API spells each (the proto's field names, snake_case), for messages.
 */
import type { Capabilities } from '../plugins/api/index.ts';

/** Every capability flag, in the proto's order. */
export const CAPABILITY_FLAGS = ['writable', 'nondisruptive', 'preserveMetadata', 'preserveSnapshots'] as const satisfies readonly (keyof Capabilities)[];

/** One of CAPABILITY_FLAGS. */
export type CapabilityFlag = (typeof CAPABILITY_FLAGS)[number];

/** What a backend with no driver can honour: nothing. */
export const NO_CAPABILITIES: Capabilities = { writable: false, nondisruptive: false, preserveMetadata: false, preserveSnapshots: false };

/** A flag as the API spells it (`preserveSnapshots` -> `preserve_snapshots`). */
export function wireName(flag: CapabilityFlag): string {
  return flag.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);
}
