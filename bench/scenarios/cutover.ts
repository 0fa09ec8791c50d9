/**
 * Cutover freeze under load: how long writes wait while the share switches
 * to its new home, with a random-write workload running, at several write
 * rates. Next to it, in the same run, what users do instead:
 *
 *   stop-and-copy  stop the writes, copy the whole share (cp), fdatasync the
 *                  copy, switch: writes wait for the whole copy.
 *   rsync          `rsync --inplace --no-whole-file` while the workload
 *                  runs (a first pass, then another one just before the
 *                  stop, as the practice goes), then stop the workload and
 *                  time the final pass plus an fdatasync of the copy. Every
 *                  pass adds --ignore-times: rsync's quick check compares
 *                  mtimes to the second, so a final pass within a second of
 *                  the last write skipped the file and left the copy stale
 *                  (seen here: a pass in the same second as the last write sent nothing).
 *                  The copy is compared with the share (cmp) after each
 *                  final pass, untimed.
 *
 * Ferry: the array in this process, one share, a workload of 64 KiB random
 * writes (4 in flight, each acknowledged once durable) at the rate; the
 * share migrates round a ring of pools, one job after the other. Each job:
 * start, phase 1, stay syncing until the background verification has
 * caught up and at least a settle time has passed (an operator does not
 * complete the instant phase 1 ends), then the cutover with the defaults a
 * migration gets (500 ms window, ABORT; nondisruptive, so writes wait
 * rather than fail). freeze_ms is the array's own measure, from closing the
 * write gate to releasing the waiting writes: the final copy, its
 * fdatasync, verification and the synced commit batch included. Aborted
 * attempts are counted and retried. After each rate the workload is
 * verified: no acknowledged write may be lost.
 *
 * The baselines write to a plain file of the same size with the same kind
 * of workload (bench/lib/plain-workload.ts).
 *
 * Then, in the same array, the cutover window on a 2 GiB share under a
 * bandwidth cap: a cutover asked for the moment PHASE1_DONE is reached next
 * to one asked after the sweep (cutover-window.ts).
 */
import { mkdirSync } from 'node:fs';
import { rename, rm } from 'node:fs/promises';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import type { SimArray } from '../../simulator/index.ts';
import { fillFile } from '../lib/content.ts';
import { filledShare, openArray, startJob, waitJob, type Place } from '../lib/array.ts';
import { cutoverWindow, type WindowReport } from './cutover-window.ts';
import { PlainWorkload } from '../lib/plain-workload.ts';
import { fmt, ratio, size, type BenchContext, type Scenario, type ScenarioReport, type Table, type TargetCheck } from '../lib/report.ts';
import { median, summarise, type Summary } from '../lib/stats.ts';
import { ensureRsync, fdatasync, run, rsyncVersion, sleep } from '../lib/system.ts';

const MiB = 2 ** 20;
const RING: Place[] = [
  { backend: 'beta', pool: 'bronze' },
  { backend: 'alpha', pool: 'silver' },
  { backend: 'alpha', pool: 'gold' },
];

/** One Ferry cutover. */
interface Cutover {
  rateMiBps: number;
  freezeMs: number;
  finalDeltaBytes: number;
  verifiedInFreezeBytes: number;
  attempts: number;
  phase1Ms: number;
  settleMs: number;
  passes: number;
}

/** Everything measured at one write rate. */
export interface RateResult {
  rateMiBps: number;
  ferry: Summary;
  finalDelta: Summary;
  abortedAttempts: number;
  workload: { writesAcked: number; writesFailed: number; latencyP99Ms: number; latencyMaxMs: number; checked: number; lost: number } | null;
  stopAndCopyMs: number[];
  rsyncFinalMs: number[];
  rsyncLiveMs: number[];
}

/** What the scenario hands the chart. */
export interface CutoverData {
  sizeBytes: number;
  cutoversPerRate: number;
  rates: RateResult[];
  rsync: string | null;
  cutovers: Cutover[];
  window: WindowReport['data'] | null;
}

interface Plan {
  sizeBytes: number;
  rates: number[];
  cutovers: number;
  settleMs: number;
  baselineSamples: number;
}

/** Runs `count` cutovers of `shareId` at `rate`, moving it round the ring from `at`; returns them and where the share is now. */
async function ferryCutovers(ctx: BenchContext, array: SimArray, plan: Plan, rate: number, at: number, first: number): Promise<{ cutovers: Cutover[]; at: number }> {
  const out: Cutover[] = [];
  for (let i = 0; i < plan.cutovers; i++, at++) {
    const jobId = `cut-${first + i}`;
    const dest = RING[at % RING.length]!;
    await startJob(array, jobId, 'bench', dest);
    const done = await waitJob(array, jobId, (v) => v.record.phase1Done, 5);
    const settled = performance.now();
    // Let the background verification catch up (writes keep a little of it undone), for at least the settle time, at most 30 s.
    await sleep(plan.settleMs);
    await waitJob(array, jobId, (v) => v.progress.verifiedBytes + v.progress.dirtyBytes >= 0.99 * plan.sizeBytes || performance.now() - settled > 30_000, 10);
    const settleMs = performance.now() - settled;
    let v = await array.jobs.cutover(jobId, 0);
    while (v.record.state !== 'DONE') {
      if (v.record.state !== 'SYNCING') throw new Error(`job ${jobId} is ${v.record.state} after its cutover: ${v.record.error?.message ?? ''}`);
      v = await array.jobs.cutover(jobId, 0);
    }
    const c = v.record.cutover!;
    out.push({
      rateMiBps: rate,
      freezeMs: c.freezeMs,
      finalDeltaBytes: c.finalDeltaBytes,
      verifiedInFreezeBytes: c.verifiedBytes,
      attempts: v.record.cutoverAttempts,
      phase1Ms: done.record.phase1DoneAtMs - done.record.createdAtMs,
      settleMs,
      passes: v.record.pass,
    });
  }
  const f = out.map((c) => c.freezeMs);
  ctx.log(`cutover ${rate} MiB/s: Ferry ${out.length} cutovers, freeze median ${fmt(median(f), 1)} ms, max ${fmt(Math.max(...f), 1)} ms`);
  return { cutovers: out, at };
}

/** Stop-and-copy at `rate`: the freeze is the whole copy of the share plus its fdatasync. */
async function stopAndCopy(file: string, plan: Plan, rate: number): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < plan.baselineSamples; i++) {
    const w = await PlainWorkload.start(file, plan.sizeBytes, rate * MiB, i + 1);
    await sleep(1000);
    await w.stop();
    const copy = `${file}.copy`;
    const t0 = performance.now();
    await run('cp', [file, copy]);
    await fdatasync(copy);
    await rename(copy, `${file}.switched`); // The switch: the copy becomes the share.
    out.push(performance.now() - t0);
    await rm(`${file}.switched`, { force: true });
  }
  return out;
}

/** The rsync practice at `rate`: passes while the workload runs, then the final pass (timed, with an fdatasync of the copy) once it stops. */
async function rsyncPractice(rsync: string, file: string, plan: Plan, rate: number): Promise<{ finalMs: number[]; liveMs: number[] }> {
  const dst = `${file}.rsync`;
  await rm(dst, { force: true });
  const args = ['--inplace', '--no-whole-file', '--ignore-times', file, dst];
  const finalMs: number[] = [];
  const liveMs: number[] = [];
  let w = await PlainWorkload.start(file, plan.sizeBytes, rate * MiB, 100);
  try {
    liveMs.push(await run(rsync, args)); // The first full copy, while the share is in use.
    for (let i = 0; i < plan.baselineSamples; i++) {
      await sleep(1000);
      liveMs.push(await run(rsync, args)); // Catch up once more just before the stop, as the practice goes.
      await w.stop();
      const t0 = performance.now();
      await run(rsync, args);
      await fdatasync(dst);
      finalMs.push(performance.now() - t0);
      await run('cmp', ['--silent', file, dst]); // Rejects if the copy differs: a fast pass must also be a right one.
      w = await PlainWorkload.start(file, plan.sizeBytes, rate * MiB, 200 + i);
    }
  } finally {
    await w.stop();
    await rm(dst, { force: true });
  }
  return { finalMs, liveMs };
}

/** The cutover scenario. */
export const cutoverScenario: Scenario = {
  name: 'cutover',
  title: 'Cutover freeze under a random-write workload, vs stop-and-copy and rsync',
  async run(ctx): Promise<ScenarioReport> {
    const plan: Plan = ctx.quick
      ? { sizeBytes: 256 * MiB, rates: [0, 5, 20, 50], cutovers: 3, settleMs: 300, baselineSamples: 1 }
      : { sizeBytes: 1024 * MiB, rates: [0, 5, 20, 50], cutovers: 20, settleMs: 750, baselineSamples: 3 };
    const dir = path.join(ctx.scratch, 'cutover');
    mkdirSync(dir, { recursive: true });
    const rsync = ensureRsync(ctx.log);
    const plain = path.join(dir, 'plain.img');
    ctx.log(`cutover: ${size(plan.sizeBytes)} share, rates ${plan.rates.join(', ')} MiB/s, ${plan.cutovers} cutovers per rate; ${rsync ? rsyncVersion(rsync) : 'no rsync'}`);
    await fillFile(plain, plan.sizeBytes, 9);
    const dataDir = path.join(dir, 'array');
    const array = await openArray(dataDir);
    const results: RateResult[] = [];
    const cutovers: Cutover[] = [];
    let windowReport: WindowReport | null = null;
    try {
      await filledShare(array, dataDir, 'bench', plan.sizeBytes, plain);
      let at = 0;
      for (const rate of plan.rates) {
        const wl = rate > 0 ? await array.workloads.start({ shareId: 'bench', rateBytesPerSec: rate * MiB, blockSize: 64 * 1024, pattern: 'RANDOM', seed: rate, concurrency: 4, hotspotPercent: 10 }) : null;
        let mine: Cutover[];
        try {
          ({ cutovers: mine, at } = await ferryCutovers(ctx, array, plan, rate, at, cutovers.length));
        } finally {
          if (wl) await array.workloads.stop(wl.workloadId);
        }
        let workload: RateResult['workload'] = null;
        if (wl) {
          const stats = array.workloads.get(wl.workloadId).stats;
          const verify = await array.workloads.verify(wl.workloadId);
          workload = { writesAcked: stats.writesAcked, writesFailed: stats.writesFailed, latencyP99Ms: stats.latencyP99Ms, latencyMaxMs: stats.latencyMaxMs, checked: verify.checked, lost: verify.lost };
          if (verify.lost > 0) throw new Error(`${verify.lost} acknowledged writes were lost at ${rate} MiB/s`);
        }
        cutovers.push(...mine);

        const stop = await stopAndCopy(plain, plan, rate);
        ctx.log(`cutover ${rate} MiB/s: stop-and-copy freeze median ${fmt(median(stop), 0)} ms`);
        const rs = rsync ? await rsyncPractice(rsync, plain, plan, rate) : { finalMs: [], liveMs: [] };
        if (rsync) ctx.log(`cutover ${rate} MiB/s: rsync final pass median ${fmt(median(rs.finalMs), 0)} ms (live passes ${rs.liveMs.map((x) => fmt(x, 0)).join(', ')} ms)`);
        results.push({
          rateMiBps: rate,
          ferry: summarise(mine.map((c) => c.freezeMs)),
          finalDelta: summarise(mine.map((c) => c.finalDeltaBytes)),
          abortedAttempts: mine.reduce((n, c) => n + c.attempts - 1, 0),
          workload,
          stopAndCopyMs: stop,
          rsyncFinalMs: rs.finalMs,
          rsyncLiveMs: rs.liveMs,
        });
      }
      windowReport = await cutoverWindow(ctx, array, dataDir);
    } finally {
      await array.close();
      await rm(dir, { recursive: true, force: true });
    }

    const rows = results.map((r) => {
      const stop = median(r.stopAndCopyMs);
      const rs = median(r.rsyncFinalMs);
      return [
        `${r.rateMiBps}`,
        `${r.ferry.n}`,
        fmt(r.ferry.median, 1),
        fmt(r.ferry.p99, 1),
        fmt(r.ferry.max, 1),
        size(r.finalDelta.median),
        `${r.abortedAttempts}`,
        r.workload ? `${fmt(r.workload.latencyP99Ms, 0)}` : '-',
        r.workload ? `${r.workload.lost}/${r.workload.checked}` : '-',
        fmt(stop, 0),
        fmt(rs, 0),
        ratio(stop / r.ferry.p99),
        ratio(rs / r.ferry.p99),
      ];
    });
    const table: Table = {
      title: `Cutover freeze, ${size(plan.sizeBytes)} share, 64 KiB random writes (ms)`,
      header: ['MiB/s', 'cutovers', 'Ferry median', 'Ferry p99', 'Ferry max', 'final delta', 'aborted', 'write p99', 'lost/checked', 'stop-and-copy', 'rsync final', 'stop-and-copy / Ferry p99', 'rsync / Ferry p99'],
      rows,
      notes: [
        'Ferry: freeze_ms as the array measures it (gate closed -> waiting writes released), over every cutover; p99 is nearest-rank (with fewer than 100 cutovers, the largest).',
        'final delta: median bytes copied while frozen. aborted: attempts that ran past the 500 ms window and rolled back (then retried). write p99: the workload\'s write latency (each write acknowledged once durable) over the whole rate, phase-1 copies included. lost/checked: acknowledged writes lost, of those checked after the rate.',
        `stop-and-copy: cp of the whole share + fdatasync (median of ${plan.baselineSamples}); rsync final: \`rsync --inplace --no-whole-file --ignore-times\` after the workload stopped + fdatasync, the copy then checked with cmp (median of ${plan.baselineSamples}).`,
        'Ratios: the baseline\'s median over Ferry\'s p99 (how many times shorter Ferry\'s worst-case freeze is).',
      ],
    };
    const at20 = results.find((r) => r.rateMiBps === 20);
    const summary = at20
      ? [
          {
            scenario: 'cutover',
            measure: `freeze at 20 MiB/s, ${size(plan.sizeBytes)} (ms)`,
            ferry: `p99 ${fmt(at20.ferry.p99, 1)}, median ${fmt(at20.ferry.median, 1)}`,
            baseline: `stop-and-copy ${fmt(median(at20.stopAndCopyMs), 0)}; rsync final pass ${fmt(median(at20.rsyncFinalMs), 0)}`,
            ratio: `${ratio(median(at20.stopAndCopyMs) / at20.ferry.p99)} shorter; ${ratio(median(at20.rsyncFinalMs) / at20.ferry.p99)} shorter`,
          },
        ]
      : [];
    const full = plan.sizeBytes === 1024 * MiB;
    const targets: TargetCheck[] = at20
      ? [
          { target: 'freeze p99 < 50 ms at 20 MiB/s on 1 GiB', measured: `${fmt(at20.ferry.p99, 1)} ms over ${at20.ferry.n} cutovers (${size(plan.sizeBytes)})`, met: full ? at20.ferry.p99 < 50 : null },
          { target: 'freeze >= 100x shorter than stop-and-copy', measured: ratio(median(at20.stopAndCopyMs) / at20.ferry.p99), met: full ? median(at20.stopAndCopyMs) / at20.ferry.p99 >= 100 : null },
          {
            target: 'freeze >= 10x shorter than the rsync final pass',
            measured: rsync ? ratio(median(at20.rsyncFinalMs) / at20.ferry.p99) : 'rsync missing',
            met: full && rsync ? median(at20.rsyncFinalMs) / at20.ferry.p99 >= 10 : null,
          },
        ]
      : [];
    const data: CutoverData = { sizeBytes: plan.sizeBytes, cutoversPerRate: plan.cutovers, rates: results, rsync: rsync ? rsyncVersion(rsync) : null, cutovers, window: windowReport?.data ?? null };
    const tables = windowReport ? [table, windowReport.table] : [table];
    return { tables, summary, targets: [...targets, ...(windowReport?.targets ?? [])], data };
  },
};
