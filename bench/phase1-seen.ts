/**
 * How soon a watcher sees phase 1 done.
 *
 * For each of N migrations of a small share, the delay from the moment the
 * array marked phase 1 done (the simulator's Job.phase1_done_at, read with
 * GetJob; the simulator driver uses the migration id as the job id) to the
 * moment a WatchMigration client received the PHASE1_DONE value (Date.now()
 * in the 'data' handler). The delay splits into "noticed" (until the
 * daemon's own phase1_done_at: the driver's poll interval plus the engine's
 * persist) and "delivered" (from there to the watcher).
 *
 * ferryd runs as its own process (`node --import tsx daemon/main.ts`, the
 * embedded simulator with its default config, default engine settings), so
 * the watcher does not share its event loop. All three clocks are this
 * machine's Date.now(), in ms.
 *
 *   node --import tsx bench/phase1-seen.ts [--runs 30] [--size 4MiB] [--concurrency 1]
 *
 * Prints median / p90 / p99 / max and writes the samples to
 * bench/results/phase1-seen-<time>.json. Not part of `npm test`.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism, cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { execFileSync } from 'node:child_process';
import { parseSize } from '../client/args.ts';
import { FerryClient, TERMINAL, type Migration, type Timestamp } from '../client/client.ts';
import { ROOT, spawnDaemon, type ChildDaemon } from '../test/helpers.ts';
import { SimClient } from '../test/simulator/helpers.ts';

const { values: flags } = parseArgs({
  options: {
    runs: { type: 'string', default: '30' },
    size: { type: 'string', default: '4MiB' },
    concurrency: { type: 'string', default: '1' },
  },
});
const RUNS = Number(flags.runs);
const SIZE = parseSize(flags.size);
const CONCURRENCY = Number(flags.concurrency);
if (!(RUNS > 0) || !(CONCURRENCY > 0)) throw new TypeError('--runs and --concurrency must be positive');

const ms = (ts: Timestamp | null | undefined): number => (ts ? Number(ts.seconds) * 1000 + Math.floor(Number(ts.nanos) / 1e6) : NaN);

/** Nearest-rank percentile of sorted values. */
function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!;
}

interface Sample {
  id: string;
  /** Array's phase1_done_at -> watcher received PHASE1_DONE. */
  seenMs: number;
  /** Array's phase1_done_at -> daemon's phase1_done_at. */
  noticedMs: number;
  /** Daemon's phase1_done_at -> watcher received. */
  deliveredMs: number;
}

/**
 * Starts a migration, opens a watch on it at once, and resolves with the
 * receive time of the first PHASE1_DONE value. `alreadyDone` is true when
 * the watch's first value was already PHASE1_DONE (phase 1 finished before
 * the watch opened): such a sample measures the watch's opening, not the
 * notification, and is left out.
 */
async function oneMigration(client: FerryClient, sim: SimClient, shareId: string): Promise<{ sample?: Sample; alreadyDone: boolean }> {
  await sim.call('CreateShare', { shareId, backend: 'alpha', pool: 'gold', sizeBytes: SIZE });
  const m = await client.startMigration({ share: { backend: 'alpha', shareId }, destination: 'beta#bronze', writable: true });
  let first = true;
  let alreadyDone = false;
  let seenAt = NaN;
  let phase1: Migration | undefined;
  for await (const value of client.watch(m.id)) {
    if (value.state === 'MIGRATION_STATE_PHASE1_DONE') {
      seenAt = Date.now();
      alreadyDone = first;
      phase1 = value;
      break;
    }
    first = false;
    if (TERMINAL.has(value.state)) throw new Error(`migration ${m.id} ended ${value.state} before phase 1: ${value.error?.message ?? ''}`);
  }
  if (!phase1) throw new Error(`the watch of ${m.id} ended without PHASE1_DONE`);
  const job = await sim.call('GetJob', { jobId: m.id });
  const arrayDone = ms(job.phase1DoneAt);
  const daemonDone = ms(phase1.phase1DoneAt);
  await client.cancelMigration(m.id);
  await client.waitFor(m.id, () => false);
  if (alreadyDone) return { alreadyDone };
  return { alreadyDone, sample: { id: m.id, seenMs: seenAt - arrayDone, noticedMs: daemonDone - arrayDone, deliveredMs: seenAt - daemonDone } };
}

function stats(values: number[]) {
  const sorted = [...values].sort((a, b) => a - b);
  return { n: sorted.length, min: sorted[0] ?? NaN, median: percentile(sorted, 50), p90: percentile(sorted, 90), p99: percentile(sorted, 99), max: sorted.at(-1) ?? NaN };
}

function gitCommit(): string {
  try {
    return execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: ROOT, encoding: 'utf8' }).trim();
  } catch {
    return 'unknown';
  }
}

async function main(): Promise<void> {
  const dataDir = mkdtempSync(join(tmpdir(), 'ferry-bench-phase1-'));
  let daemon: ChildDaemon | undefined;
  let client: FerryClient | undefined;
  let sim: SimClient | undefined;
  try {
    daemon = await spawnDaemon(['--listen', '127.0.0.1:0', '--data-dir', join(dataDir, 'data')]);
    client = new FerryClient(daemon.address, 30_000);
    sim = new SimClient(daemon.address);
    process.stdout.write(`ferryd (pid ${daemon.child.pid}) at ${daemon.address}; ${RUNS} migrations of ${flags.size}, ${CONCURRENCY} at a time\n`);

    const samples: Sample[] = [];
    let skipped = 0;
    let next = 0;
    const worker = async () => {
      for (let i = next++; i < RUNS; i = next++) {
        const r = await oneMigration(client!, sim!, `bench-p1-${i}`);
        if (r.sample) samples.push(r.sample);
        else skipped++;
      }
    };
    await Promise.all(Array.from({ length: CONCURRENCY }, worker));

    const seen = stats(samples.map((s) => s.seenMs));
    const noticed = stats(samples.map((s) => s.noticedMs));
    const delivered = stats(samples.map((s) => s.deliveredMs));
    const row = (name: string, s: ReturnType<typeof stats>) =>
      `${name.padEnd(34)} ${[s.median, s.p90, s.p99, s.max, s.min].map((v) => `${v} ms`.padStart(8)).join(' ')}`;
    process.stdout.write(
      [
        '',
        `${'delay (ms precision)'.padEnd(34)} ${['median', 'p90', 'p99', 'max', 'min'].map((h) => h.padStart(8)).join(' ')}`,
        row('array phase 1 done -> watcher', seen),
        row('  array -> daemon PHASE1_DONE', noticed),
        row('  daemon -> watcher received', delivered),
        `samples: ${samples.length}; left out (phase 1 done before the watch opened): ${skipped}`,
        `(p99 of ${samples.length} samples is nearest-rank: with fewer than 100 samples it is the max)`,
        '',
      ].join('\n'),
    );

    const outDir = join(ROOT, 'bench/results');
    mkdirSync(outDir, { recursive: true });
    const file = join(outDir, `phase1-seen-${new Date().toISOString().replace(/[:.]/g, '-')}.json`);
    writeFileSync(
      file,
      JSON.stringify(
        {
          bench: 'phase1-seen',
          at: new Date().toISOString(),
          commit: gitCommit(),
          node: process.version,
          cpus: availableParallelism(),
          cpuModel: cpus()[0]?.model ?? 'unknown',
          settings: { runs: RUNS, shareSizeBytes: SIZE, concurrency: CONCURRENCY, daemon: 'child process, embedded simulator, default config' },
          unit: 'ms',
          seen,
          noticed,
          delivered,
          skipped,
          samples,
        },
        null,
        2,
      ),
    );
    process.stdout.write(`wrote ${file}\n`);
  } finally {
    client?.close();
    sim?.close();
    if (daemon) {
      daemon.child.kill('SIGTERM');
      const timer = setTimeout(() => daemon!.child.kill('SIGKILL'), 15_000);
      await daemon.exited;
      clearTimeout(timer);
    }
    rmSync(dataDir, { recursive: true, force: true });
  }
}

await main();
