/**
 * The cutover window on a big share under a bandwidth cap, part of the
 * cutover scenario: the freeze of a cutover asked for the moment PHASE1_DONE
 * is reached, next to one asked after the background verification caught
 * up (as the main cutover table does).
 *
 * PHASE1_DONE promises that a cutover now is short, so an operator (or the
 * one-shot `ferry migrate`) may complete at once. At that moment the
 * background sweep has verified nothing yet and the dirty set is whatever
 * phase 1 left (up to half the window's worth at the capped copy rate).
 *
 * Each job: start with the cap, phase 1, then either the cutover at once
 * (the job polled every millisecond, in this process) or after the sweep
 * (verified + dirty >= 99 % of the share, at most 120 s); every attempt is
 * retried until DONE. Every freeze of every attempt counts, aborted ones
 * included (they held writes too), as the share's write gate measures it:
 * from closing it to releasing the waiting writes. `over window` is the
 * worst freeze minus max_downtime_ms (negative: under it).
 */
import { performance } from 'node:perf_hooks';
import type { SimArray } from '../../simulator/index.ts';
import { filledShare, startJob, waitJob, type Place } from '../lib/array.ts';
import { fmt, size, type BenchContext, type Table, type TargetCheck } from '../lib/report.ts';
import { median, summarise, type Summary } from '../lib/stats.ts';
import { sleep } from '../lib/system.ts';

const MiB = 2 ** 20;
const SHARE = 'big';
const RING: Place[] = [
  { backend: 'beta', pool: 'bronze' },
  { backend: 'alpha', pool: 'silver' },
  { backend: 'alpha', pool: 'gold' },
];
/** When the cutover is asked for. */
type When = 'at PHASE1_DONE' | 'after the sweep';
const CASES: When[] = ['at PHASE1_DONE', 'after the sweep'];

/** One write rate and cap, and how many cutovers of each case. */
interface Config {
  rateMiBps: number;
  capMiBps: number;
  cutovers: number;
}

/** One job's cutover, every attempt of it. */
export interface WindowCutover {
  rateMiBps: number;
  capMiBps: number;
  when: When;
  /** Every freeze, in ms, one per attempt (the gate's measure). */
  freezesMs: number[];
  attempts: number;
  abortReasons: string[];
  finalDeltaBytes: number;
  verifiedInFreezeBytes: number;
  /** Dirty and verified bytes when the cutover was asked for. */
  dirtyAtAskBytes: number;
  verifiedAtAskBytes: number;
  phase1Ms: number;
  /** From asking for the cutover to DONE (all attempts). */
  askToDoneMs: number;
}

/** A case at one rate and cap. */
export interface WindowRow {
  rateMiBps: number;
  capMiBps: number;
  when: When;
  freeze: Summary;
  worstOverWindowMs: number;
  aborted: number;
  finalDeltaMedian: number;
  verifiedInFreezeMedian: number;
  askToDoneMedianMs: number;
}

/** What this part hands the cutover scenario. */
export interface WindowReport {
  table: Table;
  targets: TargetCheck[];
  data: { sizeBytes: number; windowMs: number; rows: WindowRow[]; cutovers: WindowCutover[] };
}

async function oneCutover(array: SimArray, jobId: string, dest: Place, config: Config, when: When, windowMs: number, sizeBytes: number): Promise<WindowCutover> {
  const started = performance.now();
  await startJob(array, jobId, SHARE, dest, { maxDowntimeMs: windowMs, maxBandwidthBytesPerSec: config.capMiBps * MiB });
  let ask = await waitJob(array, jobId, (v) => v.record.phase1Done, 1);
  const phase1Ms = performance.now() - started;
  if (when === 'after the sweep') {
    const done = performance.now();
    await sleep(750);
    ask = await waitJob(array, jobId, (v) => v.progress.verifiedBytes + v.progress.dirtyBytes >= 0.99 * sizeBytes || performance.now() - done > 120_000, 10);
  }
  const gate = array.data.gate(SHARE);
  const asked = performance.now();
  const freezesMs: number[] = [];
  const abortReasons: string[] = [];
  let v = ask;
  for (;;) {
    const before = gate.freezes;
    v = await array.jobs.cutover(jobId, 0);
    if (gate.freezes > before) freezesMs.push(gate.lastFreezeMs);
    if (v.record.state === 'DONE') break;
    if (v.record.state !== 'SYNCING') throw new Error(`job ${jobId} is ${v.record.state} after its cutover: ${v.record.error?.message ?? ''}`);
    abortReasons.push(v.record.lastAbortReason);
  }
  const c = v.record.cutover!;
  return {
    rateMiBps: config.rateMiBps,
    capMiBps: config.capMiBps,
    when,
    freezesMs,
    attempts: v.record.cutoverAttempts,
    abortReasons,
    finalDeltaBytes: c.finalDeltaBytes,
    verifiedInFreezeBytes: c.verifiedBytes,
    dirtyAtAskBytes: ask.progress.dirtyBytes,
    verifiedAtAskBytes: ask.progress.verifiedBytes,
    phase1Ms,
    askToDoneMs: performance.now() - asked,
  };
}

/** Runs every case on a share of its own in `array` (created here in alpha/gold). */
export async function cutoverWindow(ctx: BenchContext, array: SimArray, dataDir: string): Promise<WindowReport> {
  const windowMs = 500;
  const sizeBytes = (ctx.quick ? 256 : 2048) * MiB;
  const configs: Config[] = ctx.quick
    ? [
        { rateMiBps: 20, capMiBps: 50, cutovers: 1 },
        { rateMiBps: 50, capMiBps: 200, cutovers: 1 },
      ]
    : [
        { rateMiBps: 20, capMiBps: 50, cutovers: 3 },
        { rateMiBps: 50, capMiBps: 200, cutovers: 5 },
      ];
  ctx.log(`cutover window: ${size(sizeBytes)} share, ${windowMs} ms window (ABORT), ${configs.map((c) => `${c.rateMiBps} MiB/s writes under a ${c.capMiBps} MiB/s cap`).join('; ')}`);
  await filledShare(array, dataDir, SHARE, sizeBytes);
  const cutovers: WindowCutover[] = [];
  const rows: WindowRow[] = [];
  let at = 0;
  for (const config of configs) {
    const wl = await array.workloads.start({ shareId: SHARE, rateBytesPerSec: config.rateMiBps * MiB, blockSize: 64 * 1024, pattern: 'RANDOM', seed: config.rateMiBps, concurrency: 4, hotspotPercent: 10 });
    const mine: WindowCutover[] = [];
    try {
      // Alternate the cases, so that both see the same machine over the run.
      for (let i = 0; i < config.cutovers; i++) {
        for (const when of CASES) {
          const c = await oneCutover(array, `win-${cutovers.length + mine.length}`, RING[at++ % RING.length]!, config, when, windowMs, sizeBytes);
          mine.push(c);
          ctx.log(
            `cutover window ${config.rateMiBps} MiB/s, cap ${config.capMiBps} MiB/s, ${when}: freezes ${c.freezesMs.map((f) => fmt(f, 1)).join(', ')} ms, ` +
              `final delta ${size(c.finalDeltaBytes)}, verified in freeze ${size(c.verifiedInFreezeBytes)}, asked -> DONE ${fmt(c.askToDoneMs / 1000, 1)} s`,
          );
        }
      }
    } finally {
      await array.workloads.stop(wl.workloadId);
    }
    const verify = await array.workloads.verify(wl.workloadId);
    if (verify.lost > 0) throw new Error(`${verify.lost} acknowledged writes were lost at ${config.rateMiBps} MiB/s`);
    cutovers.push(...mine);
    for (const when of CASES) {
      const these = mine.filter((c) => c.when === when);
      const freezes = these.flatMap((c) => c.freezesMs);
      const freeze = summarise(freezes);
      rows.push({
        rateMiBps: config.rateMiBps,
        capMiBps: config.capMiBps,
        when,
        freeze,
        worstOverWindowMs: freeze.max - windowMs,
        aborted: these.reduce((n, c) => n + c.attempts - 1, 0),
        finalDeltaMedian: median(these.map((c) => c.finalDeltaBytes)),
        verifiedInFreezeMedian: median(these.map((c) => c.verifiedInFreezeBytes)),
        askToDoneMedianMs: median(these.map((c) => c.askToDoneMs)),
      });
    }
  }

  const table: Table = {
    title: `Cutover window, ${size(sizeBytes)} share under a bandwidth cap, ${windowMs} ms window (ms)`,
    header: ['MiB/s', 'cap MiB/s', 'cutover asked', 'freezes', 'p50', 'p99', 'max', 'over window', 'aborted', 'final delta', 'verified in freeze', 'asked -> DONE s'],
    rows: rows.map((r) => [
      `${r.rateMiBps}`,
      `${r.capMiBps}`,
      r.when,
      `${r.freeze.n}`,
      fmt(r.freeze.median, 1),
      fmt(r.freeze.p99, 1),
      fmt(r.freeze.max, 1),
      fmt(r.worstOverWindowMs, 1),
      `${r.aborted}`,
      size(r.finalDeltaMedian),
      size(r.verifiedInFreezeMedian),
      fmt(r.askToDoneMedianMs / 1000, 1),
    ]),
    notes: [
      'freezes: every freeze of every attempt (aborted ones included), as the share\'s write gate measures it; p99 is nearest-rank (with fewer than 100, the largest).',
      `over window: the worst freeze minus max_downtime_ms (${windowMs} ms); negative means under it. aborted: attempts that rolled back (then retried).`,
      'final delta, verified in freeze: medians of the committed attempt. asked -> DONE: from asking for the cutover to DONE, every attempt and anything done before the freeze included.',
      'at PHASE1_DONE: asked within a millisecond of phase 1 done (the background verification has not begun); after the sweep: once verified + dirty >= 99 % of the share (at most 120 s).',
    ],
  };
  const full = !ctx.quick;
  const at20 = rows.find((r) => r.rateMiBps === 20 && r.when === 'at PHASE1_DONE');
  const worst = rows.reduce((w, r) => Math.max(w, r.worstOverWindowMs), -Infinity);
  const targets: TargetCheck[] = [
    ...(at20
      ? [
          {
            target: `freeze p99 < 50 ms at 20 MiB/s on 2 GiB (cap ${at20.capMiBps} MiB/s), cutover asked at PHASE1_DONE`,
            measured: `${fmt(at20.freeze.p99, 1)} ms over ${at20.freeze.n} freezes (${size(sizeBytes)})`,
            met: full ? at20.freeze.p99 < 50 : null,
          },
        ]
      : []),
    {
      target: 'no freeze over max_downtime_ms by more than a few ms (5)',
      measured: `worst ${fmt(worst + windowMs, 1)} ms against a ${windowMs} ms window (${worst > 0 ? `${fmt(worst, 1)} ms over` : `${fmt(-worst, 1)} ms under`})`,
      met: full ? worst <= 5 : null,
    },
  ];
  return { table, targets, data: { sizeBytes, windowMs, rows, cutovers } };
}
