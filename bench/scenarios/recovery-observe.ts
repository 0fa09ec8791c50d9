/**
 * What the recovery scenario watches after a restart: a WatchMigration per
 * migration (raw streams over two channels, see lib/watchers.ts) and an
 * open-loop GetMigration sender over all of them, every value from either
 * checked against what the daemon reported before the kill and against
 * the highest value reported since: copied_bytes must never go back.
 */
import { performance } from 'node:perf_hooks';
import type { FerryClient } from '../../client/client.ts';
import { LatencySampler } from '../lib/fleet.ts';
import { sleep, within } from '../lib/system.ts';
import { WatcherFleet } from '../lib/watchers.ts';

/** How many watch channels the per-migration streams are spread over. */
const CHANNELS = 2;
/** GetMigration calls per second while observing. */
const GET_RATE = 500;

/** Values that showed a migration with less copied than it had been shown before. */
export interface Regressions {
  /** Migrations with at least one such value. */
  migrations: number;
  /** Values below what was shown before (the pre-kill value or a later, higher one). */
  values: number;
  /** The largest step back, bytes. */
  maxBytes: number;
}

/** What the observation found. */
export interface Observed {
  /** ms after `t0` at which each migration was first reported (by its watch, not counting the stored value it sends first) beyond its pre-kill progress; NaN if not within the limit. */
  progressingMs: number[];
  /** Watch values and GetMigration answers checked. */
  watchValues: number;
  getValues: number;
  /** Going back, as watchers saw it and as GetMigration answered. */
  watch: Regressions;
  get: Regressions;
  /** Streams that failed with an error. */
  watchErrors: number;
  firstWatchError: string;
  getErrors: number;
  /** How long values were checked after the restart, ms. */
  observedMs: number;
}

/** Tracks, per migration, the highest copied_bytes shown so far, and counts values below it. */
class HighWater {
  readonly regressions: Regressions = { migrations: 0, values: 0, maxBytes: 0 };
  private readonly high: Map<string, number>;
  private readonly regressed = new Set<string>();

  constructor(before: ReadonlyMap<string, number>) {
    this.high = new Map(before);
  }

  see(id: string, copied: number): void {
    const high = this.high.get(id) ?? 0;
    if (copied >= high) {
      this.high.set(id, copied);
      return;
    }
    this.regressions.values++;
    this.regressions.maxBytes = Math.max(this.regressions.maxBytes, high - copied);
    if (!this.regressed.has(id)) {
      this.regressed.add(id);
      this.regressions.migrations++;
    }
  }
}

/**
 * Watches every migration of `before` (id -> copied_bytes before the kill)
 * and polls them with GetMigration, from now until each has progressed
 * (at most `limitMs` after `t0`) and then for `tailMs` more.
 */
export async function observe(client: FerryClient, address: string, before: ReadonlyMap<string, number>, t0: number, limitMs: number, tailMs: number): Promise<Observed> {
  const ids = [...before.keys()];
  const watchHigh = new HighWater(before);
  const getHigh = new HighWater(before);
  const progressingMs = new Map<string, number>();
  let watchValues = 0;
  let watchErrors = 0;
  let firstWatchError = '';
  let allProgressing: () => void = () => {};
  const progressing = new Promise<void>((resolve) => (allProgressing = resolve));
  const fleet = new WatcherFleet(address, CHANNELS);
  const sampler = new LatencySampler(client, () => ids, GET_RATE, (m) => getHigh.see(m.id, m.progress.copiedBytes));
  const start = performance.now();
  try {
    for (const id of ids) {
      let first = true;
      const was = before.get(id)!;
      fleet.watch(
        id,
        (seen) => {
          watchValues++;
          watchHigh.see(id, seen.copiedBytes);
          // The first value is the stored record, not news from the driver.
          if (!first && seen.copiedBytes > was && !progressingMs.has(id)) {
            progressingMs.set(id, performance.now() - t0);
            if (progressingMs.size === ids.length) allProgressing();
          }
          first = false;
        },
        (end) => {
          if (!end) return;
          watchErrors++;
          firstWatchError ||= `${end.code} ${end.details}`;
        },
      );
    }
    await within(progressing, Math.max(0, limitMs - (performance.now() - t0)));
    await sleep(tailMs);
  } finally {
    await sampler.stop();
    fleet.close();
  }
  if (fleet.selfCheck) throw new Error(fleet.selfCheck);
  return {
    progressingMs: ids.map((id) => progressingMs.get(id) ?? NaN),
    watchValues,
    getValues: sampler.ms.length,
    watch: watchHigh.regressions,
    get: getHigh.regressions,
    watchErrors,
    firstWatchError,
    getErrors: sampler.errors,
    observedMs: performance.now() - start,
  };
}
