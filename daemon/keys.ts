/**
 * Keys the engine indexes its records by: the hash that tells a retried
 * start from a conflicting reuse of its request id, and the sorted ids that
 * ListMigrations pages through.
 */
import { createHash } from 'node:crypto';

/**
 * The SHA-256 (hex) of a value's canonical JSON. Stored in each record as
 * its fingerprint and compared after restarts: it must never change for
 * the same value.
 */
export function canonicalHash(value: unknown): string {
  return createHash('sha256').update(canonicalJson(value)).digest('hex');
}

/** JSON with object keys sorted at every level, so equal values always hash alike. */
function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  if (typeof value === 'object' && value !== null) {
    const entries = Object.entries(value).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(',')}}`;
  }
  return JSON.stringify(value);
}

/** The index of the first id in sorted `ids` greater than `after`. */
export function firstAfter(ids: readonly string[], after: string): number {
  let lo = 0;
  let hi = ids.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (ids[mid]! <= after) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** Inserts `id` into sorted `ids`; new ids are almost always the greatest, so it looks from the end. */
export function insertSorted(ids: string[], id: string): void {
  let i = ids.length;
  while (i > 0 && ids[i - 1]! > id) i--;
  ids.splice(i, 0, id);
}
