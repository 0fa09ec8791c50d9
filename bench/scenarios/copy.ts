/**
 * Copy throughput: a share copied by a migration job (phase 1, from StartJob
 * to phase_1_done: the destination created, every block copied in worker
 * threads with a digest per block, the destination fdatasync'd), next to
 * `cp` and `dd bs=4M` of an equal file on the same disk, and an in-memory
 * Buffer.copy as the machine's ceiling.
 *
 * Page cache: "cold" drops it before each copy (root only: sync, then
 * /proc/sys/vm/drop_caches), so the source comes from the disk; "warm"
 * reads the source into it first. Both treatments are the same for every
 * tool. The job's figure includes an fdatasync of the destination (phase 1
 * is not done until the copy is durable), so cp and dd are also timed with
 * an fdatasync of their copy ("+ fdatasync"): that is the like-for-like
 * ratio; the bare one is shown too.
 *
 * Runs are interleaved (cp, dd, job, ... in a rotating order) so that
 * drift in a shared machine's load falls on every tool alike; each figure
 * is the median of its runs.
 */
import { rm } from 'node:fs/promises';
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import type { SimArray } from '../../simulator/index.ts';
import { fillFile } from '../lib/content.ts';
import { filledShare, openArray, startJob, waitJob } from '../lib/array.ts';
import { fmt, ratio, size, type BenchContext, type Scenario, type ScenarioReport, type Table, type TargetCheck } from '../lib/report.ts';
import { median } from '../lib/stats.ts';
import { canDropCaches, childrenCpuMs, dropCaches, fdatasync, run, warm } from '../lib/system.ts';

const MiB = 2 ** 20;
const GiB = 2 ** 30;

type Mode = 'cold' | 'warm';

/** One tool's runs at one size and cache mode. */
interface Series {
  size: number;
  mode: Mode;
  what: string;
  /** Wall times, ms. */
  ms: number[];
  /** CPU time of the copier (the cp/dd child, or this process for the job: every thread), ms. */
  cpuMs: number[];
}

interface Copier {
  what: string;
  /** Runs one copy; returns [wall ms, cpu ms] for each name it measures. */
  once(mode: Mode): Promise<Record<string, [number, number]>>;
}

/** cp or dd of `src` to a fresh `dst`, bare and then with an fdatasync of the copy. */
function external(name: string, cmd: string, args: (src: string, dst: string) => string[], src: string, dst: string): Copier {
  return {
    what: name,
    async once(mode) {
      await rm(dst, { force: true });
      if (mode === 'cold') await dropCaches();
      else await warm(src);
      const cpu0 = childrenCpuMs();
      const t0 = performance.now();
      await run(cmd, args(src, dst));
      const bare = performance.now() - t0;
      const cpu = childrenCpuMs() - cpu0;
      await fdatasync(dst);
      const synced = performance.now() - t0;
      await rm(dst, { force: true });
      return { [name]: [bare, cpu], [`${name} + fdatasync`]: [synced, cpu] };
    },
  };
}

/** A migration job of `shareId` on `array`, timed by the array itself (created -> phase 1 done). */
function job(what: string, array: SimArray, shareId: string, shareFile: string): Copier {
  let n = 0;
  return {
    what,
    async once(mode) {
      if (mode === 'cold') await dropCaches();
      else await warm(shareFile);
      const jobId = `copy-${n++}`;
      const cpu0 = process.cpuUsage();
      await startJob(array, jobId, shareId, { backend: 'beta', pool: 'bronze' });
      const v = await waitJob(array, jobId, (x) => x.record.phase1Done, 1);
      const cpu = process.cpuUsage(cpu0);
      await array.jobs.cancel(jobId);
      return { [what]: [v.record.phase1DoneAtMs - v.record.createdAtMs, (cpu.user + cpu.system) / 1000] };
    },
  };
}

/** Buffer.copy between two buffers already touched (the first touch of fresh memory is slow in a VM and is not the copy). */
function memoryCeiling(bytes: number, runs: number): number[] {
  const src = Buffer.alloc(bytes, 1);
  const dst = Buffer.alloc(bytes, 2);
  const out: number[] = [];
  for (let i = 0; i < runs; i++) {
    const t0 = performance.now();
    src.copy(dst);
    out.push(performance.now() - t0);
  }
  return out;
}

/** Runs every copier at one size. */
async function oneSize(ctx: BenchContext, bytes: number, runs: number, modes: Mode[], withSha256: boolean): Promise<Series[]> {
  const dir = path.join(ctx.scratch, `copy-${bytes / MiB}MiB`);
  mkdirSync(dir, { recursive: true });
  const src = path.join(dir, 'src.img');
  ctx.log(`copy ${size(bytes)}: writing the source file and the share`);
  await fillFile(src, bytes);
  const arrays: SimArray[] = [];
  try {
    const copiers: Copier[] = [
      external('cp', 'cp', (s, d) => [s, d], src, path.join(dir, 'cp-dst.img')),
      external('dd bs=4M', 'dd', (s, d) => [`if=${s}`, `of=${d}`, 'bs=4M', 'status=none'], src, path.join(dir, 'dd-dst.img')),
    ];
    const digests = withSha256 ? (['crc32', 'sha256'] as const) : (['crc32'] as const);
    for (const digest of digests) {
      const dataDir = path.join(dir, `array-${digest}`);
      const array = await openArray(dataDir, { blockDigest: digest });
      arrays.push(array);
      const file = await filledShare(array, dataDir, 'bench', bytes, src);
      copiers.push(job(`Ferry job (${array.config.workers} workers, ${digest})`, array, 'bench', file));
    }
    // An untimed round first: the first touch of memory a VM has not used lately costs a host page fault per page.
    for (const c of copiers) await c.once('warm');

    const series = new Map<string, Series>();
    // Warm runs first: dropping the page cache frees gigabytes at once, and for some seconds afterwards this VM hands
    // that memory back to its host (free page reporting), which made writes right after a cold run several times slower.
    for (const mode of [...modes].reverse()) {
      for (let r = 0; r < runs; r++) {
        // Rotate the order each run, so that no tool always goes first after a cache drop or after another's writeback.
        const order = copiers.map((_, i) => copiers[(i + r) % copiers.length]!);
        for (const c of order) {
          for (const [what, [ms, cpu]] of Object.entries(await c.once(mode))) {
            const key = `${mode}|${what}`;
            const s = series.get(key) ?? { size: bytes, mode, what, ms: [], cpuMs: [] };
            s.ms.push(ms);
            s.cpuMs.push(cpu);
            series.set(key, s);
          }
        }
      }
      ctx.log(`copy ${size(bytes)}: ${runs} ${mode} runs done`);
    }
    return [...series.values()];
  } finally {
    for (const a of arrays) await a.close();
    await rm(dir, { recursive: true, force: true });
  }
}

const gibps = (bytes: number, ms: number) => bytes / GiB / (ms / 1000);

/** The copy scenario. */
export const copyScenario: Scenario = {
  name: 'copy',
  title: 'Copy throughput: a migration job vs cp and dd on the same disk',
  async run(ctx): Promise<ScenarioReport> {
    const cold = canDropCaches();
    const modes: Mode[] = cold ? ['cold', 'warm'] : ['warm'];
    if (!cold) ctx.log('copy: cannot drop the page cache (not root): warm runs only');
    const plan = ctx.quick
      ? [{ bytes: 256 * MiB, runs: 2, sha: true }]
      : [
          { bytes: 256 * MiB, runs: 5, sha: false },
          { bytes: 1 * GiB, runs: 7, sha: true },
          { bytes: 4 * GiB, runs: 3, sha: false },
        ];
    const all: Series[] = [];
    for (const p of plan) all.push(...(await oneSize(ctx, p.bytes, p.runs, modes, p.sha)));
    const ceilingBytes = ctx.quick ? 256 * MiB : 1 * GiB;
    const ceiling = memoryCeiling(ceilingBytes, 5);

    const med = (s: Series | undefined) => (s ? median(s.ms) : NaN);
    const find = (bytes: number, mode: Mode, what: string) => all.find((s) => s.size === bytes && s.mode === mode && s.what === what);
    const rows: string[][] = [];
    for (const p of plan) {
      for (const mode of modes) {
        const cp = med(find(p.bytes, mode, 'cp'));
        const cpSync = med(find(p.bytes, mode, 'cp + fdatasync'));
        for (const s of all.filter((x) => x.size === p.bytes && x.mode === mode)) {
          const m = median(s.ms);
          rows.push([
            size(p.bytes),
            mode,
            s.what,
            fmt(m / 1000, 2),
            fmt(Math.min(...s.ms) / 1000, 2),
            fmt(gibps(p.bytes, m), 2),
            ratio(cp / m),
            ratio(cpSync / m),
            fmt(median(s.cpuMs) / 1000, 2),
            s.ms.map((x) => (x / 1000).toFixed(2)).join(' '),
          ]);
        }
      }
    }
    const ceilingMs = median(ceiling);
    rows.push([size(ceilingBytes), 'memory', 'Buffer.copy (ceiling)', fmt(ceilingMs / 1000, 3), fmt(Math.min(...ceiling) / 1000, 3), fmt(gibps(ceilingBytes, ceilingMs), 2), '-', '-', '-', ceiling.map((x) => (x / 1000).toFixed(3)).join(' ')]);
    const table: Table = {
      title: 'Copy throughput (median of the runs)',
      header: ['size', 'cache', 'what', 'median s', 'best s', 'GiB/s', 'vs cp', 'vs cp + fdatasync', 'CPU s', 'runs (s)'],
      rows,
      notes: [
        '"vs cp" is cp\'s time over this row\'s (medians): above 1x is faster than cp. The job\'s time includes the fdatasync of its destination, so "vs cp + fdatasync" is like for like. GiB/s is from the median.',
        'On a VM that hands free memory back to its host (free page reporting), writing into such memory costs a host page fault per page: runs come out fast or several times slower depending on what was freed when. The runs are interleaved in a rotating order so that no tool is always the one to meet it; "best s" shows each one without it.',
        'CPU s: user + system time of the copier (the cp or dd process; for the job, every thread of the array\'s process).',
        cold ? 'cold: page cache dropped (sync; echo 3 > /proc/sys/vm/drop_caches) before each copy; warm: the source read into it first.' : 'warm only: the page cache could not be dropped (not root).',
      ],
    };

    // Headline: the largest size measured with sha256 too (1 GiB in a full run).
    const head = plan.find((p) => p.sha)!;
    const summary = [];
    const targets: TargetCheck[] = [];
    for (const mode of modes) {
      const jobMs = med(find(head.bytes, mode, all.find((s) => s.size === head.bytes && s.what.includes('crc32'))!.what));
      const cpMs = med(find(head.bytes, mode, 'cp'));
      const cpSyncMs = med(find(head.bytes, mode, 'cp + fdatasync'));
      summary.push({
        scenario: 'copy',
        measure: `${size(head.bytes)} phase 1, ${mode} cache (GiB/s)`,
        ferry: fmt(gibps(head.bytes, jobMs), 2),
        baseline: `cp ${fmt(gibps(head.bytes, cpMs), 2)}; cp + fdatasync ${fmt(gibps(head.bytes, cpSyncMs), 2)}`,
        ratio: `${ratio(cpMs / jobMs)} of cp; ${ratio(cpSyncMs / jobMs)} of cp + fdatasync`,
      });
      targets.push({
        target: `copy ${size(head.bytes)} (${mode}) at least 0.9x cp`,
        measured: `${ratio(cpSyncMs / jobMs)} of cp + fdatasync (like for like), ${ratio(cpMs / jobMs)} of bare cp`,
        met: head.bytes === GiB ? cpSyncMs / jobMs >= 0.9 : null,
      });
    }
    return {
      tables: [table],
      summary,
      targets,
      data: { modes, coldPossible: cold, plan, series: all, memoryCeiling: { bytes: ceilingBytes, ms: ceiling } },
    };
  },
};
