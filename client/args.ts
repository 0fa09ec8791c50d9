/**
 * Parsers for the `ferry` CLI's arguments and flag values. Each throws
 * commander's InvalidArgumentError with a message that says what was
 * expected, so that a bad value is a usage error (exit 2) naming the
 * argument, before any call is made.
 */
import { InvalidArgumentError } from 'commander';
import { MigrationState as MIGRATION_STATES } from '../build/types/ferry/v1/MigrationState.ts';
import type { MigrationState } from './client.ts';

/** "backend/share_id" -> its parts. The share id may itself contain "/"; the backend may not. */
export function parseShareRef(value: string): { backend: string; shareId: string } {
  const at = value.indexOf('/');
  if (at <= 0 || at === value.length - 1) throw new InvalidArgumentError(`"${value}" is not a share: expected backend/share_id, e.g. alpha/share1`);
  return { backend: value.slice(0, at), shareId: value.slice(at + 1) };
}

/**
 * Checks a destination, "backend#pool" or Manila's "host@backend#pool", and
 * returns it unchanged (the daemon accepts both forms).
 */
export function parseDestination(value: string): string {
  if (!/^(?:[^@#]+@)?[^@#]+#[^@#]+$/.test(value)) throw new InvalidArgumentError(`"${value}" is not a destination: expected backend#pool (or Manila's host@backend#pool), e.g. beta#bronze`);
  return value;
}

/**
 * A migration id as given. Ids are opaque (ferryd alone judges them), but
 * an empty one is a slip of the shell (an unset variable, a `jq` that found
 * nothing), said here before any call.
 */
export function parseMigrationId(value: string): string {
  if (value.trim() === '') throw new InvalidArgumentError(`the migration id is empty: give the id StartMigration returned (mig-...), e.g. from ferry list`);
  return value;
}

const PREFIX = 'MIGRATION_STATE_';

/** A MigrationState's short name: "PHASE1_DONE" for MIGRATION_STATE_PHASE1_DONE. */
export type StateName = MigrationState extends `${typeof PREFIX}${infer Name}` ? Name : never;

/** Every MigrationState a migration can be in, short names, in the proto's order (from the enum generated from it). */
export const STATE_NAMES: readonly StateName[] = Object.values(MIGRATION_STATES)
  .filter((state): state is MigrationState => state !== 'MIGRATION_STATE_UNSPECIFIED')
  .map((state) => state.slice(PREFIX.length) as StateName);

/** A state, in any of "phase1_done", "PHASE1_DONE", "phase1-done" or "MIGRATION_STATE_PHASE1_DONE". */
export function parseState(value: string): MigrationState {
  const name = value.trim().toUpperCase().replace(/-/g, '_').replace(/^MIGRATION_STATE_/, '');
  if (!(STATE_NAMES as readonly string[]).includes(name)) throw new InvalidArgumentError(`"${value}" is not a state: expected one of ${STATE_NAMES.join(', ')}, with or without ${PREFIX}`);
  return `${PREFIX}${name as StateName}`;
}
