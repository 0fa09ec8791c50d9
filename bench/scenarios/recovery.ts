/**
 * Recovery: 1,000 migrations in flight, `kill -9`, restart, and then:
 *
 *   - how long until every migration is progressing again: from the
 *     restart (the new process spawned) until the daemon reports, for each
 *     migration, more bytes copied than it reported before the kill (a
 *     WatchMigration per migration, opened once the daemon serves; the
 *     stored value it sends first does not count);
 *   - whether any migration is ever shown with less copied than it was
 *     shown before: every value of those watches, and GetMigration polled
 *     over all of them, from the restart until each progresses and 5 s
 *     more (recovery-observe.ts);
 *   - how many bytes were copied again because of the crash, as the array
 *     counts them and, once ferryd reports it, as progress.recopied_bytes.
 *
 * Two crashes, each with a fresh array and daemon in their own processes
 * (as in the many-migrations scenario), every migration capped so they are
 * all mid-copy:
 *
 *   daemon   only ferryd is killed; the array keeps copying. Nothing lives
 *            in a held thread, so nothing should be copied again: re-copied
 *            bytes are whatever the array sent beyond one copy of each block
 *            (sent - copied, summed over the jobs; no writes run).
 *   array    the array's process and ferryd are both killed, the array
 *            restarts first. The array rebuilds each job's dirty set by
 *            hashing both sides of what it had dispatched; what differs is
 *            copied again and reported as recopied_after_crash_bytes. The
 *            target allows one chunk per migration (plus what was dirty:
 *            nothing here, no writes run).
 *
 * Sizes, and why: 2 MiB shares, each migration capped at 32 KiB/s, array
 * blocks of 16 KiB and chunks of 64 KiB. A capped task carries one block,
 * so every migration moves twice a second (a restart is seen progressing
 * within half a second of the copy resuming) and checkpoints a chunk every
 * 2 s; the thousand together copy 31 MiB/s, which the array's worker
 * threads and this machine's disk keep up with while ferryd has the rest.
 * 2 MiB lasts 64 s at the cap: the first migration started has copied
 * about 0.5 MiB when the last has started (today's ferryd takes about 15 s
 * to start a thousand), and still has more than a megabyte to go after the
 * 20 s the restart may take and the 5 s of checking after it. The shares
 * are 2 GiB in all, written in a few seconds.
 */
import { mkdirSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { FerryClient, type Migration } from '../../client/client.ts';
import { SimClient } from '../../test/simulator/helpers.ts';
import { bounded, listAll, prepareShares, startMigrations } from '../lib/fleet.ts';
import { startArray, startDaemon, type Served } from '../lib/processes.ts';
import { fmt, size, type BenchContext, type Scenario, type ScenarioReport, type Table, type TargetCheck } from '../lib/report.ts';
import { summarise, type Summary } from '../lib/stats.ts';
import { sleep } from '../lib/system.ts';
import { observe, type Observed } from './recovery-observe.ts';

const KiB = 1024;
const MiB = 2 ** 20;
const SHARE_BYTES = 2 * MiB;
const CAP = 32 * KiB;
const ARRAY_CONFIG = {
  blockSizeBytes: 16 * KiB,
  chunkSizeBytes: 64 * KiB,
  backends: [
    { name: 'alpha', pools: [{ name: 'gold', capacityBytes: 64 * 2 ** 30 }] },
    { name: 'beta', pools: [{ name: 'bronze', capacityBytes: 64 * 2 ** 30 }] },
  ],
};
/** Each migration has copied at least this much before the kill. */
const MIN_COPIED = 2 * ARRAY_CONFIG.blockSizeBytes;
/** How long after the restart the scenario waits for every migration to progress. */
const LIMIT_MS = 20_000;
/** Values are checked this long after the last migration progressed. */
const TAIL_MS = 5_000;
/** The targets: all progressing within this long after the restart. */
const TARGET_MS = { daemon: 2_000, array: 3_000 } as const;

type Crash = 'daemon' | 'array';

interface CrashResult {
  crash: Crash;
  migrations: number;
  /** Starting every migration, ms. */
  startMs: number;
  /** Restart (spawn) -> ferryd serving. */
  readyMs: number;
  /** Restart (spawn) -> each migration reported beyond its pre-kill progress. */
  progressing: Summary;
  /** Migrations not progressing within LIMIT_MS. */
  stuck: number;
  observed: Omit<Observed, 'progressingMs'>;
  recopiedAfterCrashBytes: number;
  /** Bytes sent beyond one copy of each block copied (all jobs). */
  sentBeyondCopiedBytes: number;
  /** Sum of ferryd's progress.recopied_bytes, or null while ferryd has no such field. */
  daemonRecopiedBytes: number | null;
  budgetBytes: number;
}

/** progress.recopied_bytes, which ferryd is to gain (issue 13); undefined while the client's type and the daemon lack it. */
function recopiedOf(m: Migration): number | undefined {
  const v = (m.progress as { recopiedBytes?: number | string }).recopiedBytes;
  return v === undefined ? undefined : Number(v);
}

async function oneCrash(ctx: BenchContext, crash: Crash, count: number): Promise<CrashResult> {
  const dir = path.join(ctx.scratch, `recovery-${crash}`);
  mkdirSync(dir, { recursive: true });
  const arrayDir = path.join(dir, 'array');
  const daemonDir = path.join(dir, 'ferryd');
  let array: Served | undefined;
  let daemon: Served | undefined;
  let client: FerryClient | undefined;
  let sim: SimClient | undefined;
  try {
    const p0 = performance.now();
    const shares = await prepareShares(arrayDir, ARRAY_CONFIG, 'r-', count, SHARE_BYTES);
    ctx.log(`recovery (${crash}): made ${count} shares of ${size(SHARE_BYTES)} in ${fmt((performance.now() - p0) / 1000, 1)} s`);
    array = await startArray(arrayDir, ARRAY_CONFIG);
    daemon = await startDaemon(daemonDir, array.address);
    client = new FerryClient(daemon.address, 120_000);
    const burst = await startMigrations(client, shares, { maxBandwidthBytesPerSec: CAP });
    const ids = burst.migrations.map((m) => m.id);
    // Every migration mid-copy: some bytes copied, phase 1 far from done.
    for (;;) {
      const all = await listAll(client);
      const mid = all.filter((m) => m.state === 'MIGRATION_STATE_IN_PROGRESS' && m.progress.copiedBytes >= MIN_COPIED).length;
      if (mid === count) break;
      if (all.some((m) => m.state === 'MIGRATION_STATE_PHASE1_DONE' || m.state === 'MIGRATION_STATE_ERROR')) throw new Error(`recovery (${crash}): a migration left IN_PROGRESS before the kill; the shares are too small for how slowly they start`);
      await sleep(500);
    }
    await sleep(1000);
    const before = new Map((await listAll(client)).map((m) => [m.id, m.progress.copiedBytes]));
    client.close();

    await daemon.kill9();
    if (crash === 'array') await array.kill9();
    const t0 = performance.now();
    if (crash === 'array') array = await startArray(arrayDir, ARRAY_CONFIG);
    daemon = await startDaemon(daemonDir, array.address);
    const readyMs = performance.now() - t0;
    client = new FerryClient(daemon.address, 120_000);
    const { progressingMs, ...observed } = await observe(client, daemon.address, before, t0, LIMIT_MS, TAIL_MS);
    const progressing = progressingMs.filter(Number.isFinite);
    ctx.log(
      `recovery (${crash}): ferryd serving ${fmt(readyMs, 0)} ms after the restart; ${progressing.length} of ${count} progressing, the last after ${fmt(Math.max(...progressing), 0)} ms; ` +
        `shown going back: ${observed.watch.migrations} (watch), ${observed.get.migrations} (GetMigration)`,
    );

    const after = await listAll(client);
    const recopied = after.map(recopiedOf);
    sim = new SimClient(array.address);
    const jobs = await bounded(ids, 32, (id) => sim!.call('GetJob', { jobId: id }));
    return {
      crash,
      migrations: count,
      startMs: burst.ms,
      readyMs,
      progressing: summarise(progressing),
      stuck: count - progressing.length,
      observed,
      recopiedAfterCrashBytes: jobs.reduce((n, j) => n + Number(j.progress.recopiedAfterCrashBytes), 0),
      sentBeyondCopiedBytes: jobs.reduce((n, j) => n + Math.max(0, Number(j.progress.sentBytes) - Number(j.progress.copiedBytes)), 0),
      daemonRecopiedBytes: recopied.some((v) => v !== undefined) ? recopied.reduce<number>((n, v) => n + (v ?? 0), 0) : null,
      budgetBytes: count * ARRAY_CONFIG.chunkSizeBytes,
    };
  } finally {
    client?.close();
    sim?.close();
    await daemon?.stop(5_000);
    await array?.stop(5_000);
    await rm(dir, { recursive: true, force: true });
  }
}

const back = (r: { migrations: number; values: number; maxBytes: number }) => (r.migrations ? `${r.migrations} (${r.values} values, up to ${size(r.maxBytes)})` : '0');

/** The recovery scenario. */
export const recoveryScenario: Scenario = {
  name: 'recovery',
  title: 'Recovery: kill -9 with 1,000 migrations in flight, restart, time until every one progresses, progress never going back, bytes copied again',
  async run(ctx): Promise<ScenarioReport> {
    const count = ctx.quick ? 20 : 1000;
    const results: CrashResult[] = [];
    for (const crash of ['daemon', 'array'] as const) results.push(await oneCrash(ctx, crash, count));
    const table: Table = {
      title: `Recovery of ${count} migrations of ${size(SHARE_BYTES)} shares, each capped at ${size(CAP)}/s, array blocks of ${size(ARRAY_CONFIG.blockSizeBytes)} and chunks of ${size(ARRAY_CONFIG.chunkSizeBytes)}`,
      header: [
        'killed',
        'ferryd serving ms',
        'progressing p50 ms',
        'progressing max ms',
        'not progressing',
        'going back (watch)',
        'going back (GetMigration)',
        'recopied (array)',
        'recopied_bytes (ferryd)',
        'sent beyond one copy',
        'budget (1 chunk each)',
      ],
      rows: results.map((r) => [
        r.crash === 'daemon' ? 'ferryd' : 'ferry-sim + ferryd',
        fmt(r.readyMs, 0),
        fmt(r.progressing.median, 0),
        fmt(r.stuck ? Infinity : r.progressing.max, 0),
        r.stuck ? `${r.stuck} (in ${LIMIT_MS / 1000} s)` : '0',
        back(r.observed.watch),
        back(r.observed.get),
        size(r.recopiedAfterCrashBytes),
        r.daemonRecopiedBytes === null ? 'no such field yet' : size(r.daemonRecopiedBytes),
        size(r.sentBeyondCopiedBytes),
        size(r.budgetBytes),
      ]),
      notes: [
        `All times from the restart (the new process spawned). progressing: until the daemon reports more bytes copied than before the kill, per migration (waited for at most ${LIMIT_MS / 1000} s). Starting the ${count}: ${results.map((r) => `${fmt(r.startMs / 1000, 1)} s`).join(', ')}.`,
        `going back: migrations shown with less copied than they had been shown before (the value read before the kill, or a higher one since), over every value from the restart until ${TAIL_MS / 1000} s after the last progressed: ` +
          results.map((r) => `${r.crash}: ${r.observed.watchValues} watch values, ${r.observed.getValues} GetMigration answers in ${fmt(r.observed.observedMs / 1000, 1)} s (${r.observed.watchErrors} watch errors${r.observed.firstWatchError ? `, first: ${r.observed.firstWatchError}` : ''}, ${r.observed.getErrors} GetMigration errors)`).join('; ') + '.',
        'recopied (array): recopied_after_crash_bytes, summed over the jobs. recopied_bytes (ferryd): progress.recopied_bytes summed, once ferryd has the field. sent beyond one copy: sent_bytes - copied_bytes, summed (no writes run, so any excess is a copy made twice).',
      ],
    };
    const targets: TargetCheck[] = [];
    const full = count === 1000;
    for (const r of results) {
      const who = r.crash === 'daemon' ? 'ferryd killed' : 'ferry-sim and ferryd killed';
      const max = r.stuck ? Infinity : r.progressing.max;
      targets.push({
        target: `recovery (${who}): all ${count} progressing within ${TARGET_MS[r.crash] / 1000} s of the restart`,
        measured: r.stuck ? `${r.stuck} not progressing in ${LIMIT_MS / 1000} s (ferryd serving after ${fmt(r.readyMs, 0)} ms)` : `${fmt(max, 0)} ms (ferryd serving after ${fmt(r.readyMs, 0)} ms)`,
        met: full ? max <= TARGET_MS[r.crash] : null,
      });
      const backs = r.observed.watch.values + r.observed.get.values;
      targets.push({
        target: `recovery (${who}): no migration ever shown with less copied than before (every watch value and GetMigration answer)`,
        measured: backs ? `${back(r.observed.watch)} by watch, ${back(r.observed.get)} by GetMigration` : '0 violations',
        met: full ? backs === 0 : null,
      });
      const again = Math.max(r.recopiedAfterCrashBytes, r.sentBeyondCopiedBytes);
      targets.push({
        target: `recovery (${who}): re-copied bytes under one chunk per migration`,
        measured: `${size(again)} of ${size(r.budgetBytes)}${r.daemonRecopiedBytes === null ? '' : `; ferryd reports ${size(r.daemonRecopiedBytes)}`}`,
        met: full ? again < r.budgetBytes : null,
      });
    }
    return {
      tables: [table],
      summary: results.map((r) => ({
        scenario: 'recovery',
        measure: `${r.migrations} in flight, ${r.crash === 'daemon' ? 'ferryd' : 'array + ferryd'} killed: all progressing after (ms); shown going back; re-copied`,
        ferry: `${r.stuck ? `${r.stuck} not in ${LIMIT_MS / 1000} s` : fmt(r.progressing.max, 0)}; ${r.observed.watch.migrations + r.observed.get.migrations ? `${Math.max(r.observed.watch.migrations, r.observed.get.migrations)} migrations` : '0'}; ${size(Math.max(r.recopiedAfterCrashBytes, r.sentBeyondCopiedBytes))}`,
        baseline: 'Manila: resumes 1 state; Nova: migration -> error',
        ratio: '-',
      })),
      targets,
      data: { shareBytes: SHARE_BYTES, capBytesPerSec: CAP, arrayConfig: ARRAY_CONFIG, limitMs: LIMIT_MS, tailMs: TAIL_MS, results },
    };
  },
};
