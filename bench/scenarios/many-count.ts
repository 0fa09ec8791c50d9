/**
 * One size of the many-migrations scenario: a fresh array and ferryd (each
 * its own process), `count` shares, every one started, the rush until none
 * is still copying, then a steady window with all of them parked in
 * PHASE1_DONE, then ListMigrations pages timed. See many.ts for what is
 * reported.
 */
import { mkdirSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { FerryClient, type Timestamp } from '../../client/client.ts';
import { SimClient } from '../../test/simulator/helpers.ts';
import { LatencySampler, START_IN_FLIGHT, bounded, listAll, prepareShares, startMigrations, timePages, untilNoneCopying } from '../lib/fleet.ts';
import { startArray, startDaemon } from '../lib/processes.ts';
import { fmt, type BenchContext } from '../lib/report.ts';
import { summarise, type Summary } from '../lib/stats.ts';
import { cpuMs, peakRssBytes, sleep } from '../lib/system.ts';

const MiB = 2 ** 20;
/** Every share is this big. */
export const SHARE_BYTES = 1 * MiB;
/** GetMigration calls per second, open loop, round robin over the migrations started so far. */
export const RATE = 200;
/** How long the rush may take before the scenario stops waiting and measures what it has (the daemon may be that slow at 10,000). */
export const RUSH_LIMIT_MS = 180_000;
/** ListMigrations pages of 1,000 timed while every migration is parked. */
export const PAGES = 20;

/** Both arrays' pools: room for 10,000 shares and their destinations. */
export const ARRAY_CONFIG = {
  backends: [
    { name: 'alpha', pools: [{ name: 'gold', capacityBytes: 64 * 2 ** 30 }] },
    { name: 'beta', pools: [{ name: 'bronze', capacityBytes: 64 * 2 ** 30 }] },
  ],
};

/** The drivers compared: the TypeScript module, and the Python process driver. */
export type DriverName = 'typescript' | 'python';
const PLUGINS: Record<DriverName, string> = { typescript: 'simulator', python: 'simulator-py' };

/** ms since the epoch of a wire timestamp; NaN when unset. */
export const tsMs = (ts: Timestamp | null | undefined): number => (ts ? Number(ts.seconds) * 1000 + Number(ts.nanos) / 1e6 : NaN);

/** What a window of GetMigration calls and CPU readings measured. */
export interface Window {
  get: Summary;
  errors: number;
  maxLagMs: number;
  daemonCpuPercent: number;
  arrayCpuPercent: number;
  ms: number;
}

/** What one size measured. */
export interface CountResult {
  driver: DriverName;
  count: number;
  /** Bytes of data at the start of each share (the rest a hole). */
  dataBytes: number;
  /** prepareShares, ms. */
  prepareMs: number;
  burst: { inFlight: number; ms: number; perSec: number; clientCpuPercent: number };
  /** Whether every migration left STARTING and IN_PROGRESS within RUSH_LIMIT_MS. */
  rushDone: boolean;
  /** First StartMigration sent to the last phase1_done_at. */
  phase1AllMs: number;
  /** The last migration accepted (the daemon's latest created_at) to the last phase1_done_at. */
  phase1AfterLastAcceptMs: number;
  startToPhase1: Summary;
  /** The array's phase1_done_at to the daemon's. */
  noticed: Summary;
  rush: Window;
  /** After the rush: every migration parked in PHASE1_DONE unless the rush hit its limit. */
  steady: Window;
  /** ms per ListMigrations page of 1,000, timed after the steady window. */
  pages: Summary;
  daemonPeakRssMiB: number;
  /** ferryd CPU over the rush per migration, ms. */
  cpuMsPerMigrationRush: number;
  /** ferryd CPU in the steady window per migration per second, µs. */
  cpuUsPerMigrationSecondSteady: number;
  notPhase1: number;
}

/** Runs one size: `count` migrations on `driver`, a steady window of `steadyMs`; shares hold `dataBytes` of data each. */
export async function oneCount(ctx: BenchContext, count: number, steadyMs: number, driver: DriverName, dataBytes = SHARE_BYTES): Promise<CountResult> {
  const dir = path.join(ctx.scratch, `many-${driver}-${count}`);
  mkdirSync(dir, { recursive: true });
  try {
    const arrayDir = path.join(dir, 'array');
    const p0 = performance.now();
    const shares = await prepareShares(arrayDir, ARRAY_CONFIG, 'm-', count, SHARE_BYTES, { dataBytes });
    const prepareMs = performance.now() - p0;
    ctx.log(`many ${count} (${driver}): made ${count} shares of ${SHARE_BYTES / MiB} MiB (${dataBytes === SHARE_BYTES ? 'all data' : `${dataBytes / 1024} KiB of data each`}) in ${fmt(prepareMs / 1000, 1)} s`);
    const array = await startArray(arrayDir, ARRAY_CONFIG);
    try {
      const daemon = await startDaemon(path.join(dir, 'ferryd'), array.address, {}, {}, PLUGINS[driver]);
      const client = new FerryClient(daemon.address, 120_000);
      const sim = new SimClient(array.address);
      try {
        const ids: string[] = [];
        const cpu0 = cpuMs(daemon.pid);
        const acpu0 = cpuMs(array.pid);
        const t0 = performance.now();
        const wall0 = Date.now();
        const rush = new LatencySampler(client, () => ids, RATE);
        const burst = await startMigrations(client, shares, {}, (m) => ids.push(m.id), START_IN_FLIGHT);
        ctx.log(`many ${count} (${driver}): ${count} accepted in ${fmt(burst.ms / 1000, 2)} s (${fmt(burst.perSec, 0)}/s, ${burst.inFlight} in flight, this process at ${fmt(burst.clientCpuPercent, 0)}% of a core)`);
        // The rush ends when none is copying; times come from the daemon's own records, so this only decides when to stop.
        const rushDone = await untilNoneCopying(client, Math.max(0, RUSH_LIMIT_MS - (performance.now() - t0)));
        const rushMs = performance.now() - t0;
        await rush.stop();
        const cpu1 = cpuMs(daemon.pid);
        const acpu1 = cpuMs(array.pid);
        if (!rushDone) ctx.log(`many ${count} (${driver}): not every migration reached PHASE1_DONE in ${RUSH_LIMIT_MS / 1000} s; measuring the steady window anyway`);

        const steady = new LatencySampler(client, () => ids, RATE);
        await sleep(steadyMs);
        await steady.stop();
        const steadyElapsed = performance.now() - t0 - rushMs;
        const cpu2 = cpuMs(daemon.pid);
        const acpu2 = cpuMs(array.pid);
        const pages = await timePages(client, count >= 1000 ? PAGES : 5);
        const rss = peakRssBytes(daemon.pid);

        const all = await listAll(client);
        const parked = all.filter((m) => m.state === 'MIGRATION_STATE_PHASE1_DONE');
        const phase1At = parked.map((m) => tsMs(m.phase1DoneAt));
        const lastPhase1 = phase1At.length === count ? Math.max(...phase1At) : NaN;
        const jobs = await bounded(parked, 32, (m) => sim.call('GetJob', { jobId: m.id }));
        const noticed = parked.map((m, i) => tsMs(m.phase1DoneAt) - tsMs(jobs[i].phase1DoneAt)).filter(Number.isFinite);
        const window = (s: LatencySampler, cpuA: number, cpuB: number, aA: number, aB: number, ms: number): Window => ({
          get: summarise(s.ms),
          errors: s.errors,
          maxLagMs: s.maxLagMs,
          daemonCpuPercent: ((cpuB - cpuA) / ms) * 100,
          arrayCpuPercent: ((aB - aA) / ms) * 100,
          ms,
        });
        const result: CountResult = {
          driver,
          count,
          dataBytes,
          prepareMs,
          burst: { inFlight: burst.inFlight, ms: burst.ms, perSec: burst.perSec, clientCpuPercent: burst.clientCpuPercent },
          rushDone,
          phase1AllMs: lastPhase1 - wall0,
          phase1AfterLastAcceptMs: lastPhase1 - Math.max(...all.map((m) => tsMs(m.createdAt))),
          startToPhase1: summarise(parked.map((m) => tsMs(m.phase1DoneAt) - tsMs(m.createdAt)).filter(Number.isFinite)),
          noticed: summarise(noticed),
          rush: window(rush, cpu0, cpu1, acpu0, acpu1, rushMs),
          steady: window(steady, cpu1, cpu2, acpu1, acpu2, steadyElapsed),
          pages: summarise(pages),
          daemonPeakRssMiB: rss / MiB,
          cpuMsPerMigrationRush: (cpu1 - cpu0) / count,
          cpuUsPerMigrationSecondSteady: ((cpu2 - cpu1) / (steadyElapsed / 1000) / count) * 1000,
          notPhase1: count - parked.length,
        };
        ctx.log(
          `many ${count} (${driver}): ${result.notPhase1 ? `${result.notPhase1} not PHASE1_DONE after ${fmt(rushMs / 1000, 0)} s` : `all PHASE1_DONE in ${fmt(result.phase1AllMs / 1000, 2)} s (${fmt(result.phase1AfterLastAcceptMs / 1000, 2)} s after the last accept)`}; ` +
            `GetMigration p99 ${fmt(result.rush.get.p99, 1)} ms (rush) ${fmt(result.steady.get.p99, 1)} ms (steady); ferryd ${fmt(result.steady.daemonCpuPercent, 0)}% steady, peak RSS ${fmt(result.daemonPeakRssMiB, 0)} MiB; list page p99 ${fmt(result.pages.p99, 1)} ms`,
        );
        return result;
      } finally {
        client.close();
        sim.close();
        await daemon.stop(5_000);
      }
    } finally {
      await array.stop(5_000);
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
