/**
 * Recovery: migrations in flight, `kill -9`, restart, and then:
 *
 *   - how long until every migration is progressing again: from the
 *     restart (the new process spawned) until the daemon reports, for each
 *     migration, more bytes copied than it reported before the kill (a
 *     WatchMigration per migration, opened once the daemon serves; the
 *     stored value it sends first does not count);
 *   - how many bytes were copied again because of the crash;
 *   - whether any migration was shown going backwards after the restart.
 *
 * Two crashes, each with a fresh array and daemon in their own processes
 * (as in the many-migrations scenario), the shares filled with data and
 * every migration capped at a bandwidth so they are all mid-copy:
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
 */
import { setMaxListeners } from 'node:events';
import { mkdirSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { FerryClient } from '../../client/client.ts';
import { SimClient } from '../../test/simulator/helpers.ts';
import { bounded, listAll, prepareShares, startMigrations } from '../lib/fleet.ts';
import { startArray, startDaemon, type Served } from '../lib/processes.ts';
import { fmt, size, type BenchContext, type Scenario, type ScenarioReport, type Table, type TargetCheck } from '../lib/report.ts';
import { summarise, type Summary } from '../lib/stats.ts';
import { sleep } from '../lib/system.ts';

const MiB = 2 ** 20;
const SHARE_BYTES = 16 * MiB;
const CAP = 1 * MiB;
/** Small chunks, so that a capped copy moves (and checkpoints) four times a second rather than once every 8 s. */
const ARRAY_CONFIG = {
  chunkSizeBytes: 256 * 1024,
  backends: [
    { name: 'alpha', pools: [{ name: 'gold', capacityBytes: 64 * 2 ** 30 }] },
    { name: 'beta', pools: [{ name: 'bronze', capacityBytes: 64 * 2 ** 30 }] },
  ],
};

type Crash = 'daemon' | 'array';

interface CrashResult {
  crash: Crash;
  migrations: number;
  /** Restart (spawn) -> ferryd serving. */
  readyMs: number;
  /** Restart (spawn) -> each migration reported beyond its pre-kill progress. */
  progressing: Summary;
  /** Migrations not progressing within the wait. */
  stuck: number;
  /** Migrations whose first values after the restart showed fewer bytes copied than before the kill, and the largest step back. */
  regressed: number;
  maxRegressBytes: number;
  recopiedAfterCrashBytes: number;
  /** Bytes sent beyond one copy of each block copied (all jobs). */
  sentBeyondCopiedBytes: number;
  budgetBytes: number;
}

/** Watches every migration until each reports more than `before[id]` copied; returns ms after `t0` per migration (NaN if not within `limitMs`). */
async function untilProgressing(client: FerryClient, before: Map<string, number>, t0: number, limitMs: number): Promise<{ ms: number[]; regressed: number; maxRegress: number }> {
  const abort = new AbortController();
  setMaxListeners(before.size + 10, abort.signal); // One listener per watch, on purpose.
  const timer = setTimeout(() => abort.abort(), limitMs);
  let regressed = 0;
  let maxRegress = 0;
  const ms = await Promise.all(
    [...before].map(async ([id, was]) => {
      let first = true;
      let stepBack = 0;
      try {
        for await (const m of client.watch(id, { signal: abort.signal })) {
          // The first value is the stored record, not news from the driver.
          const copied = m.progress?.copiedBytes ?? 0;
          if (copied < was) stepBack = Math.max(stepBack, was - copied);
          if (!first && copied > was) return performance.now() - t0;
          first = false;
        }
      } catch {
        // Aborted at the limit.
      } finally {
        if (stepBack > 0) {
          regressed++;
          maxRegress = Math.max(maxRegress, stepBack);
        }
      }
      return NaN;
    }),
  );
  clearTimeout(timer);
  abort.abort();
  return { ms, regressed, maxRegress };
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
    ctx.log(`recovery (${crash}): making ${count} shares of ${size(SHARE_BYTES)}`);
    const shares = await prepareShares(arrayDir, ARRAY_CONFIG, 'r-', count, SHARE_BYTES);
    array = await startArray(arrayDir, ARRAY_CONFIG);
    daemon = await startDaemon(daemonDir, array.address);
    client = new FerryClient(daemon.address, 60_000);
    const started = await startMigrations(client, shares, { maxBandwidthBytesPerSec: CAP });
    const ids = started.migrations.map((m) => m.id);
    // Every migration mid-copy: some bytes copied, phase 1 far from done.
    for (;;) {
      const all = await listAll(client);
      if (all.filter((m) => m.state === 'MIGRATION_STATE_IN_PROGRESS' && m.progress.copiedBytes >= 2 * MiB).length === count) break;
      await sleep(200);
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
    client = new FerryClient(daemon.address, 60_000);
    const seen = await untilProgressing(client, before, t0, 30_000);
    ctx.log(`recovery (${crash}): ferryd serving ${fmt(readyMs, 0)} ms after the restart; every migration progressing after ${fmt(Math.max(...seen.ms), 0)} ms`);

    sim = new SimClient(array.address);
    const jobs = await bounded(ids, 32, (id) => sim!.call('GetJob', { jobId: id }));
    const recopied = jobs.reduce((n, j) => n + Number(j.progress.recopiedAfterCrashBytes), 0);
    const beyond = jobs.reduce((n, j) => n + Math.max(0, Number(j.progress.sentBytes) - Number(j.progress.copiedBytes)), 0);
    return {
      crash,
      migrations: count,
      readyMs,
      progressing: summarise(seen.ms.filter(Number.isFinite)),
      stuck: seen.ms.filter((x) => !Number.isFinite(x)).length,
      regressed: seen.regressed,
      maxRegressBytes: seen.maxRegress,
      recopiedAfterCrashBytes: recopied,
      sentBeyondCopiedBytes: beyond,
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

/** The recovery scenario. */
export const recoveryScenario: Scenario = {
  name: 'recovery',
  title: 'Recovery: kill -9 with migrations in flight, restart, time until every one progresses, bytes copied again',
  async run(ctx): Promise<ScenarioReport> {
    const count = ctx.quick ? 20 : 100;
    const results: CrashResult[] = [];
    for (const crash of ['daemon', 'array'] as const) results.push(await oneCrash(ctx, crash, count));
    const table: Table = {
      title: `Recovery of ${count} migrations of ${size(SHARE_BYTES)} shares, each capped at ${size(CAP)}/s, array chunks of ${size(ARRAY_CONFIG.chunkSizeBytes)}`,
      header: ['killed', 'ferryd serving ms', 'progressing p50 ms', 'progressing max ms', 'not progressing', 'shown going back', 'recopied after crash', 'sent beyond one copy', 'budget (1 chunk each)'],
      rows: results.map((r) => [
        r.crash === 'daemon' ? 'ferryd' : 'ferry-sim + ferryd',
        fmt(r.readyMs, 0),
        fmt(r.progressing.median, 0),
        fmt(r.progressing.max, 0),
        `${r.stuck}`,
        r.regressed ? `${r.regressed} (up to ${size(r.maxRegressBytes)})` : '0',
        size(r.recopiedAfterCrashBytes),
        size(r.sentBeyondCopiedBytes),
        size(r.budgetBytes),
      ]),
      notes: [
        'All times from the restart (the new process spawned). progressing: until the daemon reports more bytes copied than before the kill, per migration.',
        'shown going back: migrations whose progress, as the restarted daemon first reported it, was below what was reported before the kill.',
        'recopied after crash: the array\'s recopied_after_crash_bytes, summed. sent beyond one copy: sent_bytes - copied_bytes, summed (no writes run, so any excess is a copy made twice).',
      ],
    };
    const targets: TargetCheck[] = [];
    for (const r of results) {
      const full = count === 100;
      const max = r.stuck ? Infinity : r.progressing.max;
      targets.push({ target: `recovery (${r.crash} killed): all ${count} progressing within 2 s of the restart`, measured: `${fmt(max, 0)} ms (ferryd serving after ${fmt(r.readyMs, 0)} ms)`, met: full ? max <= 2000 : null });
      const again = Math.max(r.recopiedAfterCrashBytes, r.sentBeyondCopiedBytes);
      targets.push({ target: `recovery (${r.crash} killed): re-copied bytes under one chunk per migration`, measured: `${size(again)} of ${size(r.budgetBytes)}`, met: full ? again < r.budgetBytes : null });
    }
    return {
      tables: [table],
      summary: results.map((r) => ({
        scenario: 'recovery',
        measure: `${r.migrations} in flight, ${r.crash === 'daemon' ? 'ferryd' : 'array + ferryd'} killed: all progressing after (ms); re-copied`,
        ferry: `${fmt(r.stuck ? Infinity : r.progressing.max, 0)}; ${size(Math.max(r.recopiedAfterCrashBytes, r.sentBeyondCopiedBytes))}`,
        baseline: 'Manila: resumes 1 state; Nova: migration -> error',
        ratio: '-',
      })),
      targets,
      data: { shareBytes: SHARE_BYTES, capBytesPerSec: CAP, arrayConfig: ARRAY_CONFIG, results },
    };
  },
};
