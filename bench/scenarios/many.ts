/**
 * Many migrations: 10, 100 and 1,000 concurrent migrations of small shares
 * through one ferryd, to show how the daemon's cost grows with the count;
 * and the largest count again with the Python reference driver (a process
 * driver, plugins/simulator-py), to show what the process boundary costs
 * the daemon.
 *
 * The array runs as its own process (bin/ferry-sim.mjs) and ferryd as
 * another (`simulator.embedded: false`, backends alpha and beta driven by
 * the simulator plugin against the array's address, default engine
 * settings), so the daemon's CPU and memory are the daemon's alone. For
 * each count, a fresh array and daemon:
 *
 *   1. the shares are made in advance (1 MiB each, filled with data);
 *   2. StartMigration for every share (32 calls in flight), while an
 *      open-loop sender calls GetMigration at 200 calls/s round-robin over
 *      the migrations started so far ("rush": until every one is PHASE1_DONE);
 *   3. then the same sender for a fixed time with every migration in
 *      PHASE1_DONE, which the engine keeps polling to keep the destination
 *      warm ("steady").
 *
 * Reported: time until every migration was accepted and until every one
 * was PHASE1_DONE (from the first StartMigration sent to the last
 * phase1_done_at the daemon recorded), how long the daemon took to notice
 * each phase 1 (the array's phase1_done_at to the daemon's), GetMigration
 * latency in both phases, ferryd's CPU (percent of one core, from
 * /proc/PID/stat) in both phases and its peak resident memory (VmHWM).
 */
import { mkdirSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { FerryClient, type Migration, type Timestamp } from '../../client/client.ts';
import { SimClient } from '../../test/simulator/helpers.ts';
import { LatencySampler, bounded, listAll, prepareShares, startMigrations } from '../lib/fleet.ts';
import { startArray, startDaemon } from '../lib/processes.ts';
import { fmt, type BenchContext, type Scenario, type ScenarioReport, type Table } from '../lib/report.ts';
import { summarise, type Summary } from '../lib/stats.ts';
import { cpuMs, peakRssBytes, sleep } from '../lib/system.ts';

const MiB = 2 ** 20;
const SHARE_BYTES = 1 * MiB;
const RATE = 200;

const tsMs = (ts: Timestamp | null | undefined): number => (ts ? Number(ts.seconds) * 1000 + Number(ts.nanos) / 1e6 : NaN);

/** The drivers compared: the TypeScript module, and the Python process driver. */
type DriverName = 'typescript' | 'python';
const PLUGINS: Record<DriverName, string> = { typescript: 'simulator', python: 'simulator-py' };

interface CountResult {
  driver: DriverName;
  count: number;
  startAllMs: number;
  phase1AllMs: number;
  startToPhase1: Summary;
  noticed: Summary;
  rush: { get: Summary; errors: number; maxLagMs: number; daemonCpuPercent: number; arrayCpuPercent: number; ms: number };
  steady: { get: Summary; errors: number; maxLagMs: number; daemonCpuPercent: number; arrayCpuPercent: number; ms: number };
  daemonPeakRssMiB: number;
  daemonCpuMsPerMigrationRush: number;
  notPhase1: number;
}

async function oneCount(ctx: BenchContext, count: number, steadyMs: number, driver: DriverName): Promise<CountResult> {
  const dir = path.join(ctx.scratch, `many-${driver}-${count}`);
  mkdirSync(dir, { recursive: true });
  try {
    const arrayDir = path.join(dir, 'array');
    const config = { backends: [{ name: 'alpha', pools: [{ name: 'gold', capacityBytes: 64 * 2 ** 30 }] }, { name: 'beta', pools: [{ name: 'bronze', capacityBytes: 64 * 2 ** 30 }] }] };
    ctx.log(`many ${count} (${driver}): making ${count} shares of ${SHARE_BYTES / MiB} MiB`);
    const shares = await prepareShares(arrayDir, config, 'm-', count, SHARE_BYTES);
    const array = await startArray(arrayDir, config);
    try {
      const daemon = await startDaemon(path.join(dir, 'ferryd'), array.address, {}, {}, PLUGINS[driver]);
      const client = new FerryClient(daemon.address, 60_000);
      const sim = new SimClient(array.address);
      try {
        const ids: string[] = [];
        const cpu0 = cpuMs(daemon.pid);
        const acpu0 = cpuMs(array.pid);
        const t0 = performance.now();
        const wall0 = Date.now();
        const rush = new LatencySampler(client, () => ids, RATE);
        await startMigrations(client, shares, {}, (m) => ids.push(m.id));
        const startAllMs = performance.now() - t0;
        let done: Migration[] = [];
        for (;;) {
          // Not too often: listing 1,000 migrations costs the daemon (and this process) a few ms each time. The
          // times reported come from the daemon's own phase1_done_at, so this only decides when the rush ends.
          done = await listAll(client, 'MIGRATION_STATE_PHASE1_DONE');
          if (done.length >= count || performance.now() - t0 > 600_000) break;
          await sleep(500);
        }
        const rushMs = performance.now() - t0;
        await rush.stop();
        const cpu1 = cpuMs(daemon.pid);
        const acpu1 = cpuMs(array.pid);

        const steady = new LatencySampler(client, () => ids, RATE);
        await sleep(steadyMs);
        await steady.stop();
        const steadyElapsed = performance.now() - t0 - rushMs;
        const cpu2 = cpuMs(daemon.pid);
        const acpu2 = cpuMs(array.pid);
        const rss = peakRssBytes(daemon.pid);

        const all = await listAll(client);
        const phase1At = all.map((m) => tsMs(m.phase1DoneAt)).filter(Number.isFinite);
        const jobs = await bounded(all, 32, (m) => sim.call('GetJob', { jobId: m.id }));
        const noticed = all.map((m, i) => tsMs(m.phase1DoneAt) - tsMs(jobs[i].phase1DoneAt)).filter(Number.isFinite);
        const result: CountResult = {
          driver,
          count,
          startAllMs,
          phase1AllMs: Math.max(...phase1At) - wall0,
          startToPhase1: summarise(all.map((m) => tsMs(m.phase1DoneAt) - tsMs(m.createdAt)).filter(Number.isFinite)),
          noticed: summarise(noticed),
          rush: { get: summarise(rush.ms), errors: rush.errors, maxLagMs: rush.maxLagMs, daemonCpuPercent: ((cpu1 - cpu0) / rushMs) * 100, arrayCpuPercent: ((acpu1 - acpu0) / rushMs) * 100, ms: rushMs },
          steady: {
            get: summarise(steady.ms),
            errors: steady.errors,
            maxLagMs: steady.maxLagMs,
            daemonCpuPercent: ((cpu2 - cpu1) / steadyElapsed) * 100,
            arrayCpuPercent: ((acpu2 - acpu1) / steadyElapsed) * 100,
            ms: steadyElapsed,
          },
          daemonPeakRssMiB: rss / MiB,
          daemonCpuMsPerMigrationRush: (cpu1 - cpu0) / count,
          notPhase1: count - done.length,
        };
        ctx.log(
          `many ${count} (${driver}): all PHASE1_DONE in ${fmt(result.phase1AllMs / 1000, 2)} s; GetMigration p99 ${fmt(result.rush.get.p99, 1)} ms (rush) ${fmt(result.steady.get.p99, 1)} ms (steady); ferryd peak RSS ${fmt(result.daemonPeakRssMiB, 0)} MiB`,
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

/** The many-migrations scenario. */
export const manyScenario: Scenario = {
  name: 'many',
  title: 'Many concurrent migrations: time to PHASE1_DONE, GetMigration latency, ferryd CPU and memory',
  async run(ctx): Promise<ScenarioReport> {
    const counts = ctx.quick ? [10, 100] : [10, 100, 1000];
    const steadyMs = ctx.quick ? 3_000 : 10_000;
    const results: CountResult[] = [];
    for (const count of counts) results.push(await oneCount(ctx, count, steadyMs, 'typescript'));
    const largestTs = results[results.length - 1]!;
    const py = await oneCount(ctx, largestTs.count, steadyMs, 'python');
    results.push(py);

    const table: Table = {
      title: `Many migrations of ${SHARE_BYTES / MiB} MiB shares; GetMigration at ${RATE} calls/s (ms unless said)`,
      header: [
        'driver',
        'migrations',
        'all accepted s',
        'all PHASE1_DONE s',
        'noticed p50',
        'noticed p99',
        'Get p50 (rush)',
        'Get p99 (rush)',
        'Get p50 (steady)',
        'Get p99 (steady)',
        'ferryd CPU rush',
        'ferryd CPU steady',
        'ferryd CPU ms / migration',
        'ferryd peak RSS MiB',
        'array CPU rush',
      ],
      rows: results.map((r) => [
        r.driver,
        `${r.count}`,
        fmt(r.startAllMs / 1000, 2),
        fmt(r.phase1AllMs / 1000, 2),
        fmt(r.noticed.median, 0),
        fmt(r.noticed.p99, 0),
        fmt(r.rush.get.median, 2),
        fmt(r.rush.get.p99, 2),
        fmt(r.steady.get.median, 2),
        fmt(r.steady.get.p99, 2),
        `${fmt(r.rush.daemonCpuPercent, 0)}%`,
        `${fmt(r.steady.daemonCpuPercent, 0)}%`,
        fmt(r.daemonCpuMsPerMigrationRush, 1),
        fmt(r.daemonPeakRssMiB, 0),
        `${fmt(r.rush.arrayCpuPercent, 0)}%`,
      ]),
      notes: [
        'rush: from the first StartMigration until every migration is PHASE1_DONE; steady: afterwards, every migration PHASE1_DONE and polled by the engine (every 500 ms, as the simulator driver asks).',
        'noticed: the array\'s phase1_done_at to the daemon\'s (whole ms). CPU: percent of one core over the phase. ferryd CPU ms / migration: the rush\'s CPU over the count.',
        'driver: typescript is the simulator plugin inside ferryd; python is plugins/simulator-py, a process driver ferryd starts and calls over ferry.driver.v1 (its own CPU is not in ferryd\'s).',
        `GetMigration errors: ${results.map((r) => `${r.driver} ${r.count}: ${r.rush.errors + r.steady.errors}`).join(', ')}; worst sender lag ${fmt(Math.max(...results.map((r) => Math.max(r.rush.maxLagMs, r.steady.maxLagMs))), 1)} ms (a late sender would hide latency).`,
      ],
    };
    const big = results.find((r) => r.count === 1000 && r.driver === 'typescript');
    const bigPy = results.find((r) => r.count === 1000 && r.driver === 'python');
    const largest = largestTs;
    const cpuRatio = py.steady.daemonCpuPercent / largestTs.steady.daemonCpuPercent;
    return {
      tables: [table],
      summary: [
        {
          scenario: 'many',
          measure: `${largest.count} migrations: GetMigration p99 rush / steady (ms); ferryd peak RSS`,
          ferry: `${fmt(largest.rush.get.p99, 1)} / ${fmt(largest.steady.get.p99, 1)}; ${fmt(largest.daemonPeakRssMiB, 0)} MiB`,
          baseline: `10 migrations: ${fmt(results[0]!.rush.get.p99, 1)} / ${fmt(results[0]!.steady.get.p99, 1)}; ${fmt(results[0]!.daemonPeakRssMiB, 0)} MiB`,
          ratio: `all PHASE1_DONE in ${fmt(largest.phase1AllMs / 1000, 1)} s vs ${fmt(results[0]!.phase1AllMs / 1000, 2)} s`,
        },
        {
          scenario: 'many',
          measure: `${py.count} migrations, Python process driver: ferryd CPU steady; GetMigration p99 rush / steady (ms); all PHASE1_DONE`,
          ferry: `${fmt(py.steady.daemonCpuPercent, 0)}%; ${fmt(py.rush.get.p99, 1)} / ${fmt(py.steady.get.p99, 1)}; ${fmt(py.phase1AllMs / 1000, 1)} s`,
          baseline: `TypeScript module: ${fmt(largestTs.steady.daemonCpuPercent, 0)}%; ${fmt(largestTs.rush.get.p99, 1)} / ${fmt(largestTs.steady.get.p99, 1)}; ${fmt(largestTs.phase1AllMs / 1000, 1)} s`,
          ratio: `ferryd CPU ${fmt(cpuRatio, 2)}x`,
        },
      ],
      targets: [
        {
          target: '1,000 migrations: GetMigration p99 < 10 ms',
          measured: big ? `${fmt(big.rush.get.p99, 1)} ms while starting, ${fmt(big.steady.get.p99, 1)} ms steady` : 'not run (--quick)',
          met: big ? big.rush.get.p99 < 10 && big.steady.get.p99 < 10 : null,
        },
        { target: '1,000 migrations: ferryd peak RSS < 300 MiB', measured: big ? `${fmt(big.daemonPeakRssMiB, 0)} MiB` : 'not run (--quick)', met: big ? big.daemonPeakRssMiB < 300 : null },
        {
          target: '1,000 migrations on the Python process driver: ferryd steady CPU at most 1.5x the TypeScript module\'s',
          measured: bigPy && big ? `${fmt(bigPy.steady.daemonCpuPercent, 0)}% vs ${fmt(big.steady.daemonCpuPercent, 0)}% (${fmt(cpuRatio, 2)}x)` : `not run (--quick); at ${py.count}: ${fmt(cpuRatio, 2)}x`,
          met: bigPy && big ? cpuRatio <= 1.5 : null,
        },
      ],
      data: { shareBytes: SHARE_BYTES, rate: RATE, steadyMs, results },
    };
  },
};
