/**
 * Many watchers: `perMigration` WatchMigration streams on each of
 * `migrations` migrations, opened as each migration is accepted (before it
 * can reach PHASE1_DONE: every migration is capped at WATCH_CAP, so its
 * 1 MiB copy takes about a second), held open until every watcher has seen
 * PHASE1_DONE (or the limit), spread over a few channels as a few watching
 * programs would be. Measured: from each migration's phase1_done_at (the
 * daemon's own record, sent in the value itself) to each watcher receiving
 * PHASE1_DONE; how many watchers never got it; and the CPU of ferryd and of
 * this process (which is on the same two cores, so a reader can judge how
 * much of the latency is the watchers' own).
 */
import { mkdirSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import path from 'node:path';
import { monitorEventLoopDelay, performance } from 'node:perf_hooks';
import { FerryClient } from '../../client/client.ts';
import { listAll, prepareShares, startMigrations } from '../lib/fleet.ts';
import { startArray, startDaemon } from '../lib/processes.ts';
import { fmt, type BenchContext } from '../lib/report.ts';
import { summarise, type Summary } from '../lib/stats.ts';
import { cpuMs, within } from '../lib/system.ts';
import { WatcherFleet, type Seen } from '../lib/watchers.ts';
import { ARRAY_CONFIG, SHARE_BYTES, tsMs } from './many-count.ts';

const MiB = 2 ** 20;
/** Per-migration cap: the copy lasts about a second, so the watchers opened at its acceptance are in place before PHASE1_DONE. */
export const WATCH_CAP = 1 * MiB;
/** Channels the watchers are spread over (each its own TCP connection). */
export const CHANNELS = 4;
/** How long to wait for every watcher to see PHASE1_DONE. */
export const WATCH_LIMIT_MS = 120_000;

/** What the watchers run measured. */
export interface WatchersResult {
  migrations: number;
  watchers: number;
  channels: number;
  /** Watchers whose first value was already PHASE1_DONE (opened too late to measure; left out of the latency). */
  late: number;
  /** Watchers that saw PHASE1_DONE. */
  got: number;
  /** Watchers whose stream failed. */
  failed: number;
  firstError: string;
  /** phase1_done_at to receipt, ms, over the watchers that were in place. */
  delivery: Summary;
  /** Watchers whose value's phase1_done_at differs from the daemon's record read afterwards. */
  mismatched: number;
  /** First StartMigration to the last watcher served (or the limit). */
  ms: number;
  messages: number;
  daemonCpuPercent: number;
  benchCpuPercent: number;
  /** This process's event loop delay over the run, ms. */
  loopDelayP99Ms: number;
  loopDelayMaxMs: number;
}

/** Runs the watchers measurement. */
export async function watchersRun(ctx: BenchContext, migrations: number, perMigration: number): Promise<WatchersResult> {
  const dir = path.join(ctx.scratch, 'many-watchers');
  mkdirSync(dir, { recursive: true });
  const watchers = migrations * perMigration;
  try {
    const arrayDir = path.join(dir, 'array');
    const shares = await prepareShares(arrayDir, ARRAY_CONFIG, 'w-', migrations, SHARE_BYTES);
    const array = await startArray(arrayDir, ARRAY_CONFIG);
    try {
      const daemon = await startDaemon(path.join(dir, 'ferryd'), array.address);
      const client = new FerryClient(daemon.address, 120_000);
      const fleet = new WatcherFleet(daemon.address, CHANNELS);
      try {
        /** Per watcher: when it received PHASE1_DONE, and the phase1_done_at in that value. */
        const got: Array<{ id: string; at: Seen; late: boolean } | null> = new Array(watchers).fill(null);
        let failed = 0;
        let firstError = '';
        let served = 0;
        let next = 0;
        let allServed: () => void = () => {};
        const done = new Promise<void>((resolve) => (allServed = resolve));
        const cpu0 = cpuMs(daemon.pid);
        const bench0 = process.cpuUsage();
        const loop = monitorEventLoopDelay({ resolution: 5 });
        loop.enable();
        const t0 = performance.now();
        ctx.log(`many watchers: ${migrations} migrations capped at ${WATCH_CAP / MiB} MiB/s, ${perMigration} watchers each opened on acceptance, over ${CHANNELS} channels`);
        await startMigrations(client, shares, { maxBandwidthBytesPerSec: WATCH_CAP }, (m) => {
          for (let k = 0; k < perMigration; k++) {
            const slot = next++;
            let first = true;
            fleet.watch(
              m.id,
              (seen) => {
                const wasFirst = first;
                first = false;
                if (seen.state !== 'MIGRATION_STATE_PHASE1_DONE' || got[slot]) return;
                got[slot] = { id: m.id, at: seen, late: wasFirst };
                if (++served === watchers) allServed();
              },
              (end) => {
                if (!end || got[slot]) return;
                failed++;
                firstError ||= `${end.code} ${end.details}`;
                if (++served === watchers) allServed();
              },
            );
          }
        });
        await within(done, WATCH_LIMIT_MS);
        const ms = performance.now() - t0;
        const bench = process.cpuUsage(bench0);
        loop.disable();
        const daemonCpuPercent = ((cpuMs(daemon.pid) - cpu0) / ms) * 100;
        if (fleet.selfCheck) throw new Error(fleet.selfCheck);
        const record = new Map((await listAll(client)).map((m) => [m.id, tsMs(m.phase1DoneAt)]));
        const seen = got.filter((g): g is { id: string; at: Seen; late: boolean } => g !== null);
        const inPlace = seen.filter((g) => !g.late);
        const delivery = inPlace.map((g) => g.at.receivedAtMs - g.at.phase1DoneAtMs);
        const result: WatchersResult = {
          migrations,
          watchers,
          channels: CHANNELS,
          late: seen.length - inPlace.length,
          got: seen.length,
          failed,
          firstError,
          delivery: summarise(delivery),
          mismatched: seen.filter((g) => Math.abs(g.at.phase1DoneAtMs - (record.get(g.id) ?? NaN)) > 0.001 || !Number.isFinite(g.at.phase1DoneAtMs)).length,
          ms,
          messages: fleet.messages,
          daemonCpuPercent,
          benchCpuPercent: ((bench.user + bench.system) / 1000 / ms) * 100,
          loopDelayP99Ms: loop.percentile(99) / 1e6,
          loopDelayMaxMs: loop.max / 1e6,
        };
        ctx.log(
          `many watchers: ${result.got} of ${watchers} saw PHASE1_DONE${result.got < watchers ? ` (not all within ${WATCH_LIMIT_MS / 1000} s)` : ''} in ${fmt(ms / 1000, 1)} s; delivery p50 ${fmt(result.delivery.median, 1)} ms, p99 ${fmt(result.delivery.p99, 1)} ms, max ${fmt(result.delivery.max, 1)} ms; ` +
            `ferryd ${fmt(daemonCpuPercent, 0)}%, this process ${fmt(result.benchCpuPercent, 0)}% of a core (its event loop delay p99 ${fmt(result.loopDelayP99Ms, 1)} ms)`,
        );
        return result;
      } finally {
        fleet.close();
        client.close();
        await daemon.stop(5_000);
      }
    } finally {
      await array.stop(5_000);
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
