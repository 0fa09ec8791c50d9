/**
 * GetMigration latency with 200 migrations active.
 *
 * ferryd runs as its own process (`node --import tsx daemon/main.ts`, the
 * embedded simulator with its default config, default engine settings), so
 * the client does not share its event loop. The bench:
 *
 *   1. measures a baseline with no migration active (one finished migration);
 *   2. starts `--active` migrations (default 200) of `--size` shares with a
 *      `--bandwidth` cap each, so they stay in IN_PROGRESS for the whole run
 *      while the engine polls every one of them;
 *   3. measures GetMigration at a steady `--rate` (default 200 calls/s,
 *      open loop: calls are sent on schedule whether or not the previous
 *      one has answered) and back to back (one call in flight), `--calls`
 *      calls each (default 3000), round-robin over the active migrations;
 *   4. checks that they were all still active at the end.
 *
 * Latency is from just before the call is made to its callback, with
 * performance.now(). Also reports ferryd's CPU use during each phase (from
 * /proc, on Linux).
 *
 *   node --import tsx bench/get-latency.ts [--active 200] [--calls 3000] [--rate 200] [--size 64MiB] [--bandwidth 64KiB]
 *
 * Prints a table and writes bench/results/get-latency-<time>.json. Not part
 * of `npm test`.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism, cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { parseSize } from '../client/args.ts';
import { FerryClient } from '../client/client.ts';
import { ROOT, spawnDaemon, type ChildDaemon } from '../test/helpers.ts';
import { SimClient } from '../test/simulator/helpers.ts';

const { values: flags } = parseArgs({
  options: {
    active: { type: 'string', default: '200' },
    calls: { type: 'string', default: '3000' },
    rate: { type: 'string', default: '200' },
    size: { type: 'string', default: '64MiB' },
    bandwidth: { type: 'string', default: '64KiB' },
  },
});
const ACTIVE = Number(flags.active);
const CALLS = Number(flags.calls);
const RATE = Number(flags.rate);
const SIZE = parseSize(flags.size);
const BANDWIDTH = parseSize(flags.bandwidth);
if (!(ACTIVE > 0 && CALLS > 0 && RATE > 0 && BANDWIDTH > 0)) throw new TypeError('--active, --calls, --rate and --bandwidth must be positive');

function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!;
}

interface Row {
  phase: string;
  calls: number;
  p50: number;
  p90: number;
  p99: number;
  max: number;
  mean: number;
  /** Calls answered per second over the phase. */
  throughput: number;
  /** ferryd's CPU use over the phase, percent of one core. */
  daemonCpuPercent: number;
  /** Steady phases: how late the sender fired its worst call (a late sender would hide latency). */
  maxSendLagMs?: number;
  errors: number;
}

/** ferryd's user+system CPU time so far, in ms (Linux /proc); NaN elsewhere. */
function cpuMs(pid: number): number {
  try {
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
    const ticks = Number(fields[11]) + Number(fields[12]);
    return (ticks * 1000) / 100;
  } catch {
    return NaN;
  }
}

function timedGet(client: FerryClient, id: string): Promise<{ ms: number; ok: boolean }> {
  const start = performance.now();
  return client.getMigration(id).then(
    () => ({ ms: performance.now() - start, ok: true }),
    () => ({ ms: performance.now() - start, ok: false }),
  );
}

function summarise(phase: string, results: { ms: number; ok: boolean }[], elapsedMs: number, cpu: number, maxSendLagMs?: number): Row {
  const ok = results.filter((r) => r.ok).map((r) => r.ms).sort((a, b) => a - b);
  const row: Row = {
    phase,
    calls: results.length,
    p50: percentile(ok, 50),
    p90: percentile(ok, 90),
    p99: percentile(ok, 99),
    max: ok.at(-1) ?? NaN,
    mean: ok.reduce((a, b) => a + b, 0) / ok.length,
    throughput: (results.length * 1000) / elapsedMs,
    daemonCpuPercent: (cpu / elapsedMs) * 100,
    errors: results.length - ok.length,
  };
  if (maxSendLagMs !== undefined) row.maxSendLagMs = maxSendLagMs;
  return row;
}

/** `calls` GetMigrations sent on a fixed schedule at `rate` per second, round-robin over `ids`. */
async function steady(phase: string, client: FerryClient, ids: string[], pid: number): Promise<Row> {
  const interval = 1000 / RATE;
  const pending: Promise<{ ms: number; ok: boolean }>[] = [];
  let maxLag = 0;
  const cpu0 = cpuMs(pid);
  const t0 = performance.now();
  for (let i = 0; i < CALLS; i++) {
    const due = t0 + i * interval;
    const wait = due - performance.now();
    if (wait > 1) await new Promise((r) => setTimeout(r, wait));
    maxLag = Math.max(maxLag, performance.now() - due);
    pending.push(timedGet(client, ids[i % ids.length]!));
  }
  const results = await Promise.all(pending);
  const elapsed = performance.now() - t0;
  return summarise(phase, results, elapsed, cpuMs(pid) - cpu0, maxLag);
}

/** `calls` GetMigrations one after another. */
async function backToBack(phase: string, client: FerryClient, ids: string[], pid: number): Promise<Row> {
  const results: { ms: number; ok: boolean }[] = [];
  const cpu0 = cpuMs(pid);
  const t0 = performance.now();
  for (let i = 0; i < CALLS; i++) results.push(await timedGet(client, ids[i % ids.length]!));
  return summarise(phase, results, performance.now() - t0, cpuMs(pid) - cpu0);
}

async function countActive(client: FerryClient, ids: Set<string>): Promise<Record<string, number>> {
  const counts: Record<string, number> = {};
  let pageToken = '';
  do {
    const page = await client.listMigrations({ pageSize: 1000, pageToken });
    for (const m of page.migrations) if (ids.has(m.id)) counts[m.state] = (counts[m.state] ?? 0) + 1;
    pageToken = page.nextPageToken;
  } while (pageToken);
  return counts;
}

function gitCommit(): string {
  try {
    return execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: ROOT, encoding: 'utf8' }).trim();
  } catch {
    return 'unknown';
  }
}

const log = (text: string) => process.stdout.write(`${text}\n`);

async function main(): Promise<void> {
  const dataDir = mkdtempSync(join(tmpdir(), 'ferry-bench-get-'));
  let daemon: ChildDaemon | undefined;
  let client: FerryClient | undefined;
  let sim: SimClient | undefined;
  try {
    daemon = await spawnDaemon(['--listen', '127.0.0.1:0', '--data-dir', join(dataDir, 'data')]);
    const pid = daemon.child.pid!;
    client = new FerryClient(daemon.address, 30_000);
    sim = new SimClient(daemon.address);
    log(`ferryd (pid ${pid}) at ${daemon.address}; ${CALLS} calls per phase, steady at ${RATE}/s`);

    // Baseline: nothing active, one finished migration to read.
    await sim.call('CreateShare', { shareId: 'bench-get-idle', backend: 'alpha', pool: 'gold', sizeBytes: 1024 * 1024 });
    const idle = await client.migrate({ share: { backend: 'alpha', shareId: 'bench-get-idle' }, destination: 'beta#bronze' });
    for (let i = 0; i < 200; i++) await timedGet(client, idle.id);
    const rows: Row[] = [];
    rows.push(await steady('0 active, steady', client, [idle.id], pid));
    rows.push(await backToBack('0 active, back-to-back', client, [idle.id], pid));

    log(`starting ${ACTIVE} migrations of ${flags.size} capped at ${flags.bandwidth}/s each`);
    const ids: string[] = [];
    for (let i = 0; i < ACTIVE; i++) {
      const shareId = `bench-get-${i}`;
      await sim.call('CreateShare', { shareId, backend: 'alpha', pool: 'gold', sizeBytes: SIZE });
      ids.push((await client.startMigration({ share: { backend: 'alpha', shareId }, destination: 'beta#bronze', writable: true, maxBandwidthBytesPerSec: BANDWIDTH })).id);
    }
    const reached = await Promise.all(ids.map((id) => client!.waitFor(id, (m) => m.state === 'MIGRATION_STATE_IN_PROGRESS' || m.state === 'MIGRATION_STATE_PHASE1_DONE')));
    const notActive = reached.filter((m) => m.state !== 'MIGRATION_STATE_IN_PROGRESS' && m.state !== 'MIGRATION_STATE_PHASE1_DONE');
    if (notActive.length) throw new Error(`${notActive.length} migrations did not become active: ${notActive[0]!.state} ${notActive[0]!.error?.message ?? ''}`);
    log(`${ACTIVE} migrations active; warming up`);
    for (let i = 0; i < 200; i++) await timedGet(client, ids[i % ids.length]!);

    rows.push(await steady(`${ACTIVE} active, steady`, client, ids, pid));
    rows.push(await backToBack(`${ACTIVE} active, back-to-back`, client, ids, pid));
    const after = await countActive(client, new Set(ids));
    const stillActive = (after.MIGRATION_STATE_IN_PROGRESS ?? 0) + (after.MIGRATION_STATE_PHASE1_DONE ?? 0);

    const f = (v: number) => (Number.isFinite(v) ? v.toFixed(2) : '-');
    const header = ['phase', 'calls', 'p50 ms', 'p90 ms', 'p99 ms', 'max ms', 'mean ms', 'calls/s', 'ferryd CPU', 'errors'];
    const table = [header, ...rows.map((r) => [r.phase, String(r.calls), f(r.p50), f(r.p90), f(r.p99), f(r.max), f(r.mean), r.throughput.toFixed(0), `${r.daemonCpuPercent.toFixed(0)}%`, String(r.errors)])];
    const widths = header.map((_, i) => Math.max(...table.map((row) => row[i]!.length)));
    log('');
    for (const row of table) log(row.map((cell, i) => (i === 0 ? cell.padEnd(widths[i]!) : cell.padStart(widths[i]!))).join('  '));
    log('');
    log(`still active at the end: ${stillActive} of ${ACTIVE} (${JSON.stringify(after)})`);
    const lag = Math.max(...rows.map((r) => r.maxSendLagMs ?? 0));
    log(`worst sender lag in the steady phases: ${lag.toFixed(1)} ms`);

    const outDir = join(ROOT, 'bench/results');
    mkdirSync(outDir, { recursive: true });
    const file = join(outDir, `get-latency-${new Date().toISOString().replace(/[:.]/g, '-')}.json`);
    writeFileSync(
      file,
      JSON.stringify(
        {
          bench: 'get-latency',
          at: new Date().toISOString(),
          commit: gitCommit(),
          node: process.version,
          cpus: availableParallelism(),
          cpuModel: cpus()[0]?.model ?? 'unknown',
          settings: { active: ACTIVE, calls: CALLS, rate: RATE, shareSizeBytes: SIZE, bandwidthBytesPerSec: BANDWIDTH, daemon: 'child process, embedded simulator, default config' },
          unit: 'ms',
          rows,
          activeAtEnd: after,
        },
        null,
        2,
      ),
    );
    log(`wrote ${file}`);
  } finally {
    client?.close();
    sim?.close();
    if (daemon) {
      daemon.child.kill('SIGTERM');
      const timer = setTimeout(() => daemon!.child.kill('SIGKILL'), 20_000);
      await daemon.exited;
      clearTimeout(timer);
    }
    rmSync(dataDir, { recursive: true, force: true });
  }
}

await main();
