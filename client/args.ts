/**
 * Parsers for the `ferry` CLI's arguments and flag values. Each throws
 * commander's InvalidArgumentError with a message that says what was
 * expected, so that a bad value is a usage error (exit 2) naming the
 * argument, before any call is made.
 */
import { InvalidArgumentError } from 'commander';
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

const SIZE_UNITS: Record<string, number> = {
  '': 1,
  b: 1,
  k: 1024,
  kib: 1024,
  kb: 1000,
  m: 1024 ** 2,
  mib: 1024 ** 2,
  mb: 1000 ** 2,
  g: 1024 ** 3,
  gib: 1024 ** 3,
  gb: 1000 ** 3,
  t: 1024 ** 4,
  tib: 1024 ** 4,
  tb: 1000 ** 4,
};

/**
 * A byte count or rate: "1048576", "512KiB", "10MiB", "1.5GiB", "20MB"
 * (KiB/MiB/GiB/TiB and K/M/G/T are powers of 1024; KB/MB/GB/TB are powers
 * of 1000; case does not matter; a trailing "/s" is allowed).
 */
export function parseSize(value: string): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([a-z]*)(?:\/s)?\s*$/i.exec(value);
  const unit = m ? SIZE_UNITS[m[2]!.toLowerCase()] : undefined;
  if (!m || unit === undefined) throw new InvalidArgumentError(`"${value}" is not a size: expected bytes or a number with a unit, e.g. 1048576, 512KiB, 10MiB, 1.5GiB`);
  const bytes = Math.round(Number(m[1]) * unit);
  if (!Number.isSafeInteger(bytes)) throw new InvalidArgumentError(`"${value}" is too large`);
  return bytes;
}

/** A whole number from `min` to `max`. */
export function integer(min: number, max: number): (value: string) => number {
  return (value: string) => {
    const n = /^\d+$/.test(value.trim()) ? Number(value) : NaN;
    if (!Number.isSafeInteger(n) || n < min || n > max) throw new InvalidArgumentError(`"${value}" is not a whole number from ${min} to ${max}`);
    return n;
  };
}

/** Every MigrationState, short names. */
export const STATE_NAMES = ['STARTING', 'IN_PROGRESS', 'PHASE1_DONE', 'COMPLETING', 'SUCCESS', 'CANCELLING', 'CANCELLED', 'ERROR'] as const;

/** A state, in any of "phase1_done", "PHASE1_DONE", "phase1-done" or "MIGRATION_STATE_PHASE1_DONE". */
export function parseState(value: string): MigrationState {
  const name = value.trim().toUpperCase().replace(/-/g, '_').replace(/^MIGRATION_STATE_/, '');
  if (!(STATE_NAMES as readonly string[]).includes(name)) throw new InvalidArgumentError(`"${value}" is not a state: expected one of ${STATE_NAMES.join(', ')}, with or without MIGRATION_STATE_`);
  return `MIGRATION_STATE_${name}` as MigrationState;
}
