/**
 * Migration ids, made in one place: by the engine for each migration it
 * starts, for each dry run (CheckCompatibility), and by the conformance kit
 * for the migrations it drives itself. A driver may rely on
 * `MigrationSpec.id` being unique (its array job is often named by it).
 */
import { randomBytes } from 'node:crypto';

let lastMs = 0;
let sameMsCount = 0;

/** PREFIX-, then 12 hex ms and a 4 hex counter (time-ordered), then "-" and 8 hex random. */
function timeOrderedId(prefix: string, now: number): string {
  if (now <= lastMs) {
    sameMsCount++;
    now = lastMs;
  } else {
    lastMs = now;
    sameMsCount = 0;
  }
  const time = now.toString(16).padStart(12, '0');
  const count = sameMsCount.toString(16).padStart(4, '0');
  return `${prefix}-${time}${count}-${randomBytes(4).toString('hex')}`;
}

/**
 * A new migration id: time-ordered (so ids sort in creation order, which
 * ListMigrations pages by) and unique ("mig-" + 12 hex ms + 4 hex counter + "-" + 8 hex random).
 */
export function newMigrationId(now = Date.now()): string {
  return timeOrderedId('mig', now);
}

/**
 * The id of a dry run (the spec CheckCompatibility gives the driver): unique
 * like a migration's, and never taken for one ("dry-run-" instead of "mig-").
 */
export function newDryRunId(now = Date.now()): string {
  return timeOrderedId('dry-run', now);
}

/**
 * Makes later ids sort after `id` even if the clock went back since it was
 * made (called for every id loaded at start, so creation order survives restarts).
 */
export function observeMigrationId(id: string): void {
  const ms = parseInt(id.slice(4, 16), 16);
  if (Number.isFinite(ms) && ms > lastMs) {
    lastMs = ms;
    sameMsCount = parseInt(id.slice(16, 20), 16);
  }
}

/** Whether a string has the shape of a migration id. */
export function isMigrationId(id: string): boolean {
  return /^mig-[0-9a-f]{16}-[0-9a-f]{8}$/.test(id);
}
