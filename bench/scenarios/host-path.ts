/**
 * The host data path against the driver path, on the same share, in one
 * run: the array in its own process (`ferry-sim`, default config: alpha and
 * beta on one array, gamma on another) and ferryd in its own (so its RSS is
 * the mover's, not the array's).
 *
 *   phase 1     a 1 GiB share, alpha -> beta (the array's own copy job, in
 *               its worker threads) and alpha -> gamma (ferryd reads
 *               snapshots through alpha's driver and writes them through
 *               gamma's), interleaved, each run from StartMigration to
 *               PHASE1_DONE, then cancelled so the next starts from the same
 *               share. Target: the host path at 0.8x the driver path's
 *               throughput or better.
 *   freeze      20 MiB/s of 64 KiB random writes (4 in flight, each
 *               acknowledged once durable) on the 1 GiB share while it moves
 *               alpha -> gamma -> alpha ... by the host path, each cutover
 *               asked a second after PHASE1_DONE with a 500 ms window
 *               (ABORT, nondisruptive). freeze_ms is the mover's: from
 *               FreezeWrites to ReleaseWrites answered. The workload is
 *               verified afterwards: no acknowledged write may be lost.
 *               Target: p99 under 50 ms.
 *   memory      a 4 GiB share alpha -> gamma and cut over, ferryd's RSS
 *               sampled every 100 ms; growth over its RSS before the start.
 *               Target: under 64 MiB.
 *   overhead    bytes the mover wrote to targets beyond each share's size,
 *               next to the bytes the workload wrote meanwhile (from
 *               ferryd's "cutover committed" log line).
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { FerryClient, type Migration } from '../../client/client.ts';
import { SimClient } from '../../test/simulator/helpers.ts';
import { prepareShares } from '../lib/fleet.ts';
import { startArray, startDaemon, type Served } from '../lib/processes.ts';
import { fmt, ratio, size, type BenchContext, type Scenario, type ScenarioReport, type Table, type TargetCheck } from '../lib/report.ts';
import { median, summarise } from '../lib/stats.ts';
import { sleep } from '../lib/system.ts';

const MiB = 2 ** 20;
const GiB = 2 ** 30;

interface Plan {
  phase1Bytes: number;
  phase1Runs: number;
  cutovers: number;
  memoryBytes: number;
}

/**
 * The share's migration to `destination`, watched to `state`; resolves with
 * the value that reached it and the ms it took from the start. With
 * `latencies`, a GetMigration of it every 20 ms meanwhile, one at a time,
 * each one's ms pushed there (what ferryd's event loop costs a client while
 * it copies).
 */
async function migrateTo(client: FerryClient, shareId: string, from: string, destination: string, until: Migration['state'], extra: object = {}, latencies?: number[]): Promise<{ m: Migration; ms: number }> {
  const t0 = performance.now();
  const started = await client.startMigration({ share: { backend: from, shareId }, destination, writable: true, nondisruptive: true, maxDowntimeMs: 500, ...extra });
  let probing = latencies !== undefined;
  const probe = (async () => {
    while (probing) {
      const a = performance.now();
      await client.getMigration(started.id);
      latencies!.push(performance.now() - a);
      await sleep(20);
    }
  })();
  try {
    for await (const m of client.watch(started.id)) {
      if (m.state === until) return { m, ms: performance.now() - t0 };
      if (['MIGRATION_STATE_ERROR', 'MIGRATION_STATE_CANCELLED', 'MIGRATION_STATE_SUCCESS'].includes(m.state)) throw new Error(`migration ${m.id} ended ${m.state}: ${m.error?.message ?? ''}`);
    }
    throw new Error(`the watch of ${started.id} ended before ${until}`);
  } finally {
    probing = false;
    await probe;
  }
}

async function waitEnd(client: FerryClient, id: string): Promise<Migration> {
  for await (const m of client.watch(id)) if (['MIGRATION_STATE_ERROR', 'MIGRATION_STATE_CANCELLED', 'MIGRATION_STATE_SUCCESS'].includes(m.state)) return m;
  return client.getMigration(id);
}

/** Completes `id`, asking again after an aborted attempt; resolves with the SUCCESS value and the attempts. */
async function cutOver(client: FerryClient, id: string): Promise<{ m: Migration; attempts: number }> {
  for (let attempts = 1; ; attempts++) {
    await client.completeMigration(id);
    for await (const m of client.watch(id)) {
      if (m.state === 'MIGRATION_STATE_SUCCESS') return { m, attempts };
      if (m.state === 'MIGRATION_STATE_PHASE1_DONE' && m.lastCutoverAbort) break;
      if (['MIGRATION_STATE_ERROR', 'MIGRATION_STATE_CANCELLED'].includes(m.state)) throw new Error(`migration ${id} ended ${m.state}: ${m.error?.message ?? ''}`);
    }
    if (attempts >= 10) throw new Error(`migration ${id}: 10 cutover attempts aborted`);
  }
}

function rssBytes(pid: number): number {
  const line = readFileSync(`/proc/${pid}/status`, 'utf8').split('\n').find((l) => l.startsWith('VmRSS:'));
  return line ? Number(line.split(/\s+/)[1]) * 1024 : 0;
}

/** ferryd's "cutover committed" lines in its stdout file. */
function commits(file: string): { sizeBytes: number; sentBytes: number; passes: number }[] {
  return readFileSync(file, 'utf8')
    .split('\n')
    .filter((l) => l.includes('"msg":"host path: cutover committed"'))
    .map((l) => JSON.parse(l) as { sizeBytes: number; sentBytes: number; passes: number });
}

export const hostPathScenario: Scenario = {
  name: 'host-path',
  title: 'Host data path (ferryd copies between arrays) vs driver path: phase 1, freeze under writes, memory',
  async run(ctx: BenchContext): Promise<ScenarioReport> {
    const plan: Plan = ctx.quick ? { phase1Bytes: 256 * MiB, phase1Runs: 1, cutovers: 3, memoryBytes: 512 * MiB } : { phase1Bytes: 1 * GiB, phase1Runs: 3, cutovers: 20, memoryBytes: 4 * GiB };
    const dir = path.join(ctx.scratch, 'host-path');
    mkdirSync(dir, { recursive: true });
    const arrayDir = path.join(dir, 'array');
    ctx.log(`host-path: ${size(plan.phase1Bytes)} share, ${plan.phase1Runs} phase-1 runs per path, ${plan.cutovers} cutovers at 20 MiB/s, ${size(plan.memoryBytes)} for memory`);
    await prepareShares(arrayDir, {}, 'hp', 1, plan.phase1Bytes);
    await prepareShares(arrayDir, {}, 'big', 1, plan.memoryBytes);
    const stdout = path.join(dir, 'ferryd.out');
    writeFileSync(stdout, '');
    let array: Served | undefined;
    let daemon: Served | undefined;
    const phase1 = { driver: [] as number[], host: [] as number[] };
    const getLatency = { driver: [] as number[], host: [] as number[] };
    const freezes: number[] = [];
    let aborted = 0;
    let lost = 0;
    let checked = 0;
    let rssGrowth = 0;
    let rssBase = 0;
    try {
      array = await startArray(arrayDir);
      daemon = await startDaemon(path.join(dir, 'ferryd'), array.address, { minPollMs: 5 }, { BENCH_STDOUT_FILE: stdout }, 'simulator', ['alpha', 'beta', 'gamma'], { logLevel: 'info' });
      const client = new FerryClient(daemon.address, 30_000);
      const sim = new SimClient(array.address);
      try {
        // Phase 1, interleaved.
        for (let run = 0; run < plan.phase1Runs; run++) {
          for (const [path_, destination] of [
            ['driver', 'beta#bronze'],
            ['host', 'gamma#iron'],
          ] as const) {
            const { m, ms } = await migrateTo(client, 'hp0', 'alpha', destination, 'MIGRATION_STATE_PHASE1_DONE', {}, getLatency[path_]);
            if ((path_ === 'host') !== (m.dataPath === 'DATA_PATH_HOST')) throw new Error(`alpha -> ${destination} went by ${m.dataPath}`);
            phase1[path_].push(ms);
            ctx.log(`host-path: phase 1 by the ${path_} path ${fmt(ms / 1000, 2)} s (${fmt(plan.phase1Bytes / MiB / (ms / 1000), 0)} MiB/s)`);
            await client.cancelMigration(m.id);
            await waitEnd(client, m.id);
          }
        }

        // Freeze under 20 MiB/s of random writes, alpha <-> gamma by the host path.
        const wl = await sim.call('StartWorkload', { shareId: 'hp0', rateBytesPerSec: 20 * MiB, blockSize: 64 * 1024, pattern: 'WRITE_PATTERN_RANDOM', seed: 7, concurrency: 4, hotspotPercent: 10 });
        let at = 'alpha';
        for (let i = 0; i < plan.cutovers; i++) {
          const to = at === 'alpha' ? 'gamma#iron' : 'alpha#gold';
          const { m } = await migrateTo(client, 'hp0', at, to, 'MIGRATION_STATE_PHASE1_DONE');
          await sleep(1000);
          const done = await cutOver(client, m.id);
          aborted += done.attempts - 1;
          freezes.push(done.m.cutover!.freezeMs);
          at = to.split('#')[0]!;
        }
        await sim.call('StopWorkload', { workloadId: wl.workloadId });
        const verify = await sim.call('VerifyWorkload', { workloadId: wl.workloadId });
        lost = Number(verify.lost);
        checked = Number(verify.checked);
        if (lost > 0) throw new Error(`${lost} acknowledged writes were lost during the host-path cutovers`);
        ctx.log(`host-path: ${freezes.length} cutovers, freeze median ${fmt(median(freezes), 1)} ms, max ${fmt(Math.max(...freezes), 1)} ms, ${aborted} aborted`);

        // Memory while moving the big share.
        rssBase = rssBytes(daemon.pid);
        let peak = rssBase;
        const sampler = setInterval(() => (peak = Math.max(peak, rssBytes(daemon!.pid))), 100);
        try {
          const { m } = await migrateTo(client, 'big0', 'alpha', 'gamma#iron', 'MIGRATION_STATE_PHASE1_DONE');
          await cutOver(client, m.id);
        } finally {
          clearInterval(sampler);
        }
        rssGrowth = peak - rssBase;
        ctx.log(`host-path: RSS ${size(rssBase)} before, growth ${size(rssGrowth)} moving ${size(plan.memoryBytes)}`);
      } finally {
        client.close();
        sim.close();
      }
    } finally {
      await daemon?.stop();
      await array?.stop();
    }
    const committed = commits(stdout);
    await rm(dir, { recursive: true, force: true });

    const d = median(phase1.driver);
    const h = median(phase1.host);
    const f = summarise(freezes);
    const gd = summarise(getLatency.driver);
    const gh = summarise(getLatency.host);
    const extra = committed.map((c) => c.sentBytes - c.sizeBytes);
    const tables: Table[] = [
      {
        title: 'Host path vs driver path',
        header: ['measure', 'driver path', 'host path', 'host / driver'],
        rows: [
          [`phase 1, ${size(plan.phase1Bytes)} (s, median of ${plan.phase1Runs})`, fmt(d / 1000, 2), fmt(h / 1000, 2), ratio(d / h) + ' throughput'],
          [`GetMigration during phase 1 (ms, p50 / p99)`, `${fmt(gd.median, 1)} / ${fmt(gd.p99, 1)}`, `${fmt(gh.median, 1)} / ${fmt(gh.p99, 1)}`, '-'],
          [`freeze at 20 MiB/s random writes (ms, ${f.n} cutovers)`, '-', `p99 ${fmt(f.p99, 1)}, median ${fmt(f.median, 1)}, max ${fmt(f.max, 1)}`, '-'],
          ['cutover attempts aborted', '-', `${aborted}`, '-'],
          ['acknowledged writes lost / checked', '-', `${lost} / ${checked}`, '-'],
          [`ferryd RSS growth moving ${size(plan.memoryBytes)}`, '-', `${size(rssGrowth)} (from ${size(rssBase)})`, '-'],
          ['bytes written beyond the share (median per migration)', '-', size(median(extra)), '-'],
        ],
        notes: [
          'Driver path: the array copies alpha -> beta in its worker threads. Host path: ferryd reads snapshots of alpha through its driver and writes them to gamma through gamma\'s, in 4 MiB batches, each verified by CRC-32C on the target.',
          'Phase 1 is timed from StartMigration to PHASE1_DONE, both paths interleaved on the same share. GetMigration is asked every 20 ms meanwhile: on the host path ferryd\'s own event loop moves the bytes, on the driver path the array\'s workers do.',
          'Bytes written beyond the share: what the mover sent to targets over all passes minus the share size, over the host-path migrations that committed (under 20 MiB/s of writes for the cutover runs).',
        ],
      },
    ];
    const full = !ctx.quick;
    const targets: TargetCheck[] = [
      { target: 'host-path phase 1 >= 0.8x the driver path (1 GiB)', measured: `${ratio(d / h)} (${fmt(h / 1000, 2)} s vs ${fmt(d / 1000, 2)} s)`, met: full ? d / h >= 0.8 : null },
      { target: 'host-path freeze p99 < 50 ms at 20 MiB/s on 1 GiB', measured: `${fmt(f.p99, 1)} ms over ${f.n} cutovers`, met: full ? f.p99 < 50 : null },
      { target: 'ferryd RSS growth < 64 MiB moving 4 GiB', measured: size(rssGrowth), met: full ? rssGrowth < 64 * MiB : null },
      { target: 'no acknowledged write lost', measured: `${lost} of ${checked}`, met: lost === 0 },
    ];
    return {
      tables,
      summary: [{ scenario: 'host-path', measure: `phase 1 ${size(plan.phase1Bytes)}; freeze at 20 MiB/s`, ferry: `host ${fmt(h / 1000, 2)} s; p99 ${fmt(f.p99, 1)} ms`, baseline: `driver path ${fmt(d / 1000, 2)} s`, ratio: `${ratio(d / h)} throughput` }],
      targets,
      data: { plan, phase1, getLatency, freezes, aborted, lost, checked, rssBase, rssGrowth, committed },
    };
  },
};
