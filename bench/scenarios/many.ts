/**
 * Many migrations: 10, 100, 1,000 and 10,000 concurrent migrations of
 * 1 MiB shares through one ferryd, to show how the daemon's cost grows
 * with the count; the 1,000 again with the Python reference driver (a
 * process driver, plugins/simulator-py), to show what the process boundary
 * costs the daemon; and 10 watchers on each of 1,000 migrations, to show
 * how fast PHASE1_DONE reaches them.
 *
 * The array runs as its own process (bin/ferry-sim.mjs) and ferryd as
 * another (`simulator.embedded: false`, backends alpha and beta driven by
 * the simulator plugin against the array's address, default engine
 * settings), so the daemon's CPU and memory are the daemon's alone. For
 * each count, a fresh array and daemon (many-count.ts):
 *
 *   1. the shares are made in advance (1 MiB each; filled with data, except
 *      at 10,000 where each holds 64 KiB of data and a hole: see below);
 *   2. StartMigration for every share (32 calls in flight; accepted per
 *      second measured over this burst), while an open-loop sender calls
 *      GetMigration at 200 calls/s round-robin over the migrations started
 *      so far ("rush": until none is STARTING or IN_PROGRESS, at most 180 s);
 *   3. then the same sender for a fixed time with every migration in
 *      PHASE1_DONE, which the engine keeps polling to keep the destination
 *      warm ("steady");
 *   4. then ListMigrations pages of 1,000 timed, one after the other.
 *
 * Why 64 KiB of data at 10,000: this machine's disk writes about 280 MB/s,
 * so 10 GiB of sources take 40 s to write and their copy writes 10 GiB more
 * during the rush, which then measures the disk (and slows ferryd's own
 * fsyncs) rather than the daemon. The daemon's work per migration does not
 * depend on the bytes: the array still copies 1 MiB per share (a hole
 * reads as zeros and is not written to the fresh destination).
 */
import { fmt, type Scenario, type ScenarioReport, type Table, type TargetCheck } from '../lib/report.ts';
import { SHARE_BYTES, RATE, RUSH_LIMIT_MS, oneCount, type CountResult } from './many-count.ts';
import { CHANNELS, WATCH_CAP, watchersRun, type WatchersResult } from './many-watchers.ts';

const MiB = 2 ** 20;
/** Data in each share at 10,000 (see the file comment). */
const DATA_AT_10K = 64 * 1024;
const WATCHERS_PER_MIGRATION = 10;

/** One point of the cost-growth chart. */
export interface GrowthPoint {
  migrations: number;
  cpuMsPerMigrationRush: number;
  cpuUsPerMigrationSecondSteady: number;
  getP99RushMs: number;
  getP99SteadyMs: number;
}

/** What the scenario hands the runner besides its tables (the chart reads `growth`). */
export interface ManyData {
  shareBytes: number;
  rate: number;
  steadyMs: number;
  results: CountResult[];
  watchers: WatchersResult;
  growth: GrowthPoint[];
  /** The chart's subtitle, one line each. */
  growthSubtitle: string[];
}

const pct = (v: number) => `${fmt(v, 0)}%`;
const rushNote = (r: CountResult) => (r.rushDone ? '' : ` (rush not over in ${RUSH_LIMIT_MS / 1000} s: ${r.notPhase1} not PHASE1_DONE)`);

function timingTable(results: CountResult[]): Table {
  return {
    title: `Many migrations of ${SHARE_BYTES / MiB} MiB shares: making them, starting them, phase 1 (s unless said)`,
    header: ['driver', 'migrations', 'data / share', 'shares made', 'accepted /s', 'all accepted', 'all PHASE1_DONE', 'after last accept', 'not PHASE1_DONE', 'noticed p50 ms', 'noticed p99 ms'],
    rows: results.map((r) => [
      r.driver,
      `${r.count}`,
      r.dataBytes === SHARE_BYTES ? 'all' : `${r.dataBytes / 1024} KiB`,
      fmt(r.prepareMs / 1000, 1),
      `${fmt(r.burst.perSec, 0)} (${r.burst.inFlight} in flight)`,
      fmt(r.burst.ms / 1000, 2),
      fmt(r.phase1AllMs / 1000, 2),
      fmt(r.phase1AfterLastAcceptMs / 1000, 2),
      `${r.notPhase1}`,
      fmt(r.noticed.median, 0),
      fmt(r.noticed.p99, 0),
    ]),
    notes: [
      'shares made: prepareShares (records in one batch, files 16 at a time, one sync). accepted /s: StartMigration answers over the burst (first sent to last answered).',
      `this process during the burst, % of a core: ${results.map((r) => `${r.driver} ${r.count}: ${fmt(r.burst.clientCpuPercent, 0)}%`).join(', ')} (near 100 would mean the client, not ferryd, set the rate).`,
      'all PHASE1_DONE: first StartMigration sent to the last phase1_done_at the daemon recorded; after last accept: the latest created_at to the latest phase1_done_at (both the daemon\'s). "-": not every migration got there.',
      `noticed: the array's phase1_done_at to the daemon's (whole ms). The rush is cut at ${RUSH_LIMIT_MS / 1000} s.`,
    ],
  };
}

function costTable(results: CountResult[]): Table {
  return {
    title: `Many migrations: GetMigration at ${RATE} calls/s (ms), ferryd's CPU and memory, ListMigrations pages of 1,000 (ms)`,
    header: ['driver', 'migrations', 'Get p50 rush', 'Get p99 rush', 'Get p50 steady', 'Get p99 steady', 'sender lag max', 'ferryd CPU rush', 'ferryd CPU steady', 'array CPU rush', 'ferryd peak RSS MiB', 'page p50', 'page p99'],
    rows: results.map((r) => [
      r.driver,
      `${r.count}${r.rushDone ? '' : ' (rush cut)'}`,
      fmt(r.rush.get.median, 2),
      fmt(r.rush.get.p99, 2),
      fmt(r.steady.get.median, 2),
      fmt(r.steady.get.p99, 2),
      fmt(Math.max(r.rush.maxLagMs, r.steady.maxLagMs), 1),
      pct(r.rush.daemonCpuPercent),
      pct(r.steady.daemonCpuPercent),
      pct(r.rush.arrayCpuPercent),
      fmt(r.daemonPeakRssMiB, 0),
      fmt(r.pages.median, 1),
      fmt(r.pages.p99, 1),
    ]),
    notes: [
      'rush: from the first StartMigration until none is STARTING or IN_PROGRESS; steady: afterwards, every migration PHASE1_DONE and polled by the engine (every 500 ms, as the simulator driver asks). "rush cut": the steady window began with some still starting.',
      'CPU: percent of one core over the phase (/proc/PID/stat). Pages: ListMigrations of 1,000 one after the other after the steady window, walking the list (from the start again at its end): 20 pages at 1,000 and more, 5 below.',
      'driver: typescript is the simulator plugin inside ferryd; python is plugins/simulator-py, a process driver ferryd starts and calls over ferry.driver.v1 (its own CPU is not in ferryd\'s).',
      `sender lag max: how late the open-loop sender fired its latest call (ms): this process's own event loop held up, which also delays reading answers. GetMigration errors: ${results.map((r) => `${r.driver} ${r.count}: ${r.rush.errors + r.steady.errors}`).join(', ')}.`,
    ],
  };
}

function growthTable(points: GrowthPoint[], ts: CountResult[]): Table {
  return {
    title: 'How ferryd\'s cost grows with the number of migrations (TypeScript driver)',
    header: ['migrations', 'CPU ms / migration, rush', 'CPU µs / parked migration / s, steady', 'ferryd CPU steady', 'Get p99 rush ms', 'Get p99 steady ms', 'peak RSS MiB'],
    rows: points.map((p, i) => [
      `${p.migrations}${ts[i]!.rushDone ? '' : ' (rush cut)'}`,
      fmt(p.cpuMsPerMigrationRush, 2),
      fmt(p.cpuUsPerMigrationSecondSteady, 1),
      pct(ts[i]!.steady.daemonCpuPercent),
      fmt(p.getP99RushMs, 1),
      fmt(p.getP99SteadyMs, 1),
      fmt(ts[i]!.daemonPeakRssMiB, 0),
    ]),
    notes: ['CPU ms / migration, rush: ferryd\'s CPU over the whole rush divided by the count. CPU µs / parked migration / s: ferryd\'s CPU per second of the steady window divided by the count (flat if parked migrations cost what they cost, falling if a fixed cost dominates).'],
  };
}

function watchersTable(w: WatchersResult): Table {
  return {
    title: `Watchers: ${w.watchers} WatchMigration streams over ${w.migrations} migrations (${w.watchers / w.migrations} each), ${w.channels} channels`,
    header: ['saw PHASE1_DONE', 'opened late', 'failed', 'delivery p50 ms', 'delivery p99 ms', 'delivery max ms', 'messages', 'run s', 'ferryd CPU', 'this process CPU', 'this process loop delay p99 / max ms'],
    rows: [
      [
        `${w.got} of ${w.watchers}`,
        `${w.late}`,
        `${w.failed}${w.firstError ? ` (${w.firstError})` : ''}`,
        fmt(w.delivery.median, 1),
        fmt(w.delivery.p99, 1),
        fmt(w.delivery.max, 1),
        `${w.messages}`,
        fmt(w.ms / 1000, 1),
        pct(w.daemonCpuPercent),
        pct(w.benchCpuPercent),
        `${fmt(w.loopDelayP99Ms, 1)} / ${fmt(w.loopDelayMaxMs, 1)}`,
      ],
    ],
    notes: [
      `Each migration capped at ${WATCH_CAP / MiB} MiB/s (its copy lasts about a second) and its ${w.watchers / w.migrations} watchers opened as it is accepted, so they are in place before PHASE1_DONE; opened late: a watcher whose first value was already PHASE1_DONE (left out of the delivery figures).`,
      'delivery: from the phase1_done_at carried in the value (the daemon\'s record; checked against GetMigration afterwards: ' +
        `${w.mismatched} differed) to this process receiving it. Streams stay open until every watcher has it (at most 120 s).`,
      'The watchers are raw grpc-js streams with a decoder of the three fields they read; this process runs on the same two cores as ferryd and the array, so its CPU is shown, and its event loop delay (perf_hooks.monitorEventLoopDelay): a value is read no later than that after it arrives.',
    ],
  };
}

/** The many-migrations scenario. */
export const manyScenario: Scenario = {
  name: 'many',
  title: 'Many concurrent migrations (10 to 10,000) and 10,000 watchers: phase 1, GetMigration and ListMigrations latency, ferryd CPU and memory',
  async run(ctx): Promise<ScenarioReport> {
    const counts = ctx.quick ? [10, 100] : [10, 100, 1000, 10_000];
    const steadyMs = ctx.quick ? 3_000 : 10_000;
    const ts: CountResult[] = [];
    for (const count of counts.filter((c) => c <= 1000)) ts.push(await oneCount(ctx, count, steadyMs, 'typescript'));
    const py = await oneCount(ctx, Math.min(1000, counts.at(-1)!), steadyMs, 'python');
    const watchers = await watchersRun(ctx, ctx.quick ? 100 : 1000, WATCHERS_PER_MIGRATION);
    for (const count of counts.filter((c) => c > 1000)) ts.push(await oneCount(ctx, count, steadyMs, 'typescript', DATA_AT_10K));
    const results = [...ts, py];

    const growth: GrowthPoint[] = ts.map((r) => ({
      migrations: r.count,
      cpuMsPerMigrationRush: r.cpuMsPerMigrationRush,
      cpuUsPerMigrationSecondSteady: r.cpuUsPerMigrationSecondSteady,
      getP99RushMs: r.rush.get.p99,
      getP99SteadyMs: r.steady.get.p99,
    }));
    const big = ts.find((r) => r.count === 1000);
    const huge = ts.find((r) => r.count === 10_000);
    const bigPy = py.count === 1000 ? py : undefined;
    const cpuRatio = py.steady.daemonCpuPercent / (ts.find((r) => r.count === py.count)?.steady.daemonCpuPercent ?? NaN);
    const notRun = 'not run (--quick)';
    const targets: TargetCheck[] = [
      {
        target: '1,000 migrations: GetMigration p99 < 10 ms while they start and steady',
        measured: big ? `${fmt(big.rush.get.p99, 1)} ms while starting, ${fmt(big.steady.get.p99, 1)} ms steady${rushNote(big)}` : notRun,
        met: big ? big.rush.get.p99 < 10 && big.steady.get.p99 < 10 : null,
      },
      { target: '1,000 migrations: ferryd < 10 % of a core while all are parked in PHASE1_DONE', measured: big ? `${pct(big.steady.daemonCpuPercent)}${rushNote(big)}` : notRun, met: big ? big.rushDone && big.steady.daemonCpuPercent < 10 : null },
      {
        target: '1,000 migrations: all PHASE1_DONE within 3 s of the last being accepted',
        measured: big ? `${fmt(big.phase1AfterLastAcceptMs / 1000, 2)} s (${fmt(big.phase1AllMs / 1000, 2)} s from the first start)${rushNote(big)}` : notRun,
        met: big ? big.notPhase1 === 0 && big.phase1AfterLastAcceptMs <= 3000 : null,
      },
      { target: '1,000 migrations: ferryd peak RSS < 300 MiB', measured: big ? `${fmt(big.daemonPeakRssMiB, 0)} MiB` : notRun, met: big ? big.daemonPeakRssMiB < 300 : null },
      {
        target: '1,000 migrations on the Python process driver: ferryd steady CPU at most 1.5x the TypeScript module\'s',
        measured: bigPy && big ? `${pct(bigPy.steady.daemonCpuPercent)} vs ${pct(big.steady.daemonCpuPercent)} (${fmt(cpuRatio, 2)}x)` : `${notRun}; at ${py.count}: ${fmt(cpuRatio, 2)}x`,
        met: bigPy && big ? cpuRatio <= 1.5 : null,
      },
      {
        target: '10,000 migrations: GetMigration p99 < 20 ms steady',
        measured: huge ? `${fmt(huge.steady.get.p99, 1)} ms${rushNote(huge)}` : notRun,
        met: huge ? huge.rushDone && huge.steady.get.p99 < 20 : null,
      },
      { target: '10,000 migrations: GetMigration p99 < 50 ms while they start', measured: huge ? `${fmt(huge.rush.get.p99, 1)} ms${rushNote(huge)}` : notRun, met: huge ? huge.rush.get.p99 < 50 : null },
      {
        target: '10,000 migrations: StartMigration accepted at >= 2,000 per second',
        measured: huge ? `${fmt(huge.burst.perSec, 0)}/s with ${huge.burst.inFlight} calls in flight (this process at ${pct(huge.burst.clientCpuPercent)} of a core)` : notRun,
        met: huge ? huge.burst.perSec >= 2000 : null,
      },
      {
        target: '10,000 migrations: a ListMigrations page of 1,000 < 50 ms (all parked)',
        measured: huge ? `p50 ${fmt(huge.pages.median, 1)} ms, p99 ${fmt(huge.pages.p99, 1)} ms over ${huge.pages.n} pages${rushNote(huge)}` : notRun,
        met: huge ? huge.rushDone && huge.pages.p99 < 50 : null,
      },
      { target: '10,000 migrations: ferryd peak RSS < 600 MiB', measured: huge ? `${fmt(huge.daemonPeakRssMiB, 0)} MiB${rushNote(huge)}` : notRun, met: huge ? huge.daemonPeakRssMiB < 600 : null },
      {
        target: '10,000 watchers over 1,000 migrations: PHASE1_DONE to every watcher, p99 < 100 ms',
        measured: `${watchers.got} of ${watchers.watchers} got it; p50 ${fmt(watchers.delivery.median, 1)} ms, p99 ${fmt(watchers.delivery.p99, 1)} ms, max ${fmt(watchers.delivery.max, 1)} ms (${watchers.late} opened late; this process at ${pct(watchers.benchCpuPercent)} of a core)`,
        met: watchers.watchers === 10_000 ? watchers.got === watchers.watchers && watchers.failed === 0 && watchers.delivery.p99 < 100 : null,
      },
    ];
    const largest = ts.at(-1)!;
    const first = ts[0]!;
    const data: ManyData = {
      shareBytes: SHARE_BYTES,
      rate: RATE,
      steadyMs,
      results,
      watchers,
      growth,
      growthSubtitle: [
        `${SHARE_BYTES / MiB} MiB shares${huge ? ` (${DATA_AT_10K / 1024} KiB of data each at 10,000)` : ''}, TypeScript driver, GetMigration at ${RATE}/s`,
        ...ts.filter((r) => !r.rushDone).map((r) => `${r.count}: rush cut at ${RUSH_LIMIT_MS / 1000} s, steady measured with ${r.notPhase1} not parked`),
      ],
    };
    return {
      tables: [timingTable(results), costTable(results), growthTable(growth, ts), watchersTable(watchers)],
      summary: [
        {
          scenario: 'many',
          measure: `${largest.count} migrations: GetMigration p99 rush / steady (ms); ferryd peak RSS`,
          ferry: `${fmt(largest.rush.get.p99, 1)} / ${fmt(largest.steady.get.p99, 1)}; ${fmt(largest.daemonPeakRssMiB, 0)} MiB`,
          baseline: `10 migrations: ${fmt(first.rush.get.p99, 1)} / ${fmt(first.steady.get.p99, 1)}; ${fmt(first.daemonPeakRssMiB, 0)} MiB`,
          ratio: largest.notPhase1 ? `${largest.notPhase1} not PHASE1_DONE after ${RUSH_LIMIT_MS / 1000} s` : `all PHASE1_DONE in ${fmt(largest.phase1AllMs / 1000, 1)} s vs ${fmt(first.phase1AllMs / 1000, 2)} s`,
        },
        ...(big
          ? [
              {
                scenario: 'many',
                measure: '1,000 migrations: all PHASE1_DONE after the last accept; ferryd CPU steady; GetMigration p99 rush / steady (ms)',
                ferry: `${fmt(big.phase1AfterLastAcceptMs / 1000, 2)} s; ${pct(big.steady.daemonCpuPercent)}; ${fmt(big.rush.get.p99, 1)} / ${fmt(big.steady.get.p99, 1)}`,
                baseline: `targets: 3 s; 10%; 10 / 10`,
                ratio: '-',
              },
            ]
          : []),
        {
          scenario: 'many',
          measure: `${py.count} migrations, Python process driver: ferryd CPU steady; GetMigration p99 rush / steady (ms); all PHASE1_DONE`,
          ferry: `${pct(py.steady.daemonCpuPercent)}; ${fmt(py.rush.get.p99, 1)} / ${fmt(py.steady.get.p99, 1)}; ${fmt(py.phase1AllMs / 1000, 1)} s`,
          baseline: `TypeScript module: ${pct(big?.steady.daemonCpuPercent ?? ts.at(-1)!.steady.daemonCpuPercent)}; ${fmt((big ?? largest).rush.get.p99, 1)} / ${fmt((big ?? largest).steady.get.p99, 1)}; ${fmt((big ?? largest).phase1AllMs / 1000, 1)} s`,
          ratio: `ferryd CPU ${fmt(cpuRatio, 2)}x`,
        },
        {
          scenario: 'many',
          measure: `${watchers.watchers} watchers over ${watchers.migrations} migrations (${CHANNELS} channels): PHASE1_DONE delivery p50 / p99 / max (ms)`,
          ferry: `${fmt(watchers.delivery.median, 1)} / ${fmt(watchers.delivery.p99, 1)} / ${fmt(watchers.delivery.max, 1)}; ${watchers.got} of ${watchers.watchers} got it`,
          baseline: `this process at ${pct(watchers.benchCpuPercent)}, ferryd at ${pct(watchers.daemonCpuPercent)} of a core`,
          ratio: '-',
        },
      ],
      targets,
      data,
    };
  },
};
