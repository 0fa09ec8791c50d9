/**
 * Phase 1 seen: the delay from the array marking phase 1 done (its
 * Job.phase1_done_at, read with GetJob; the simulator driver uses the
 * migration id as the job id) to a WatchMigration client receiving the
 * PHASE1_DONE value (Date.now() in the client). It splits into "noticed"
 * (until the daemon's own phase1_done_at: the driver's poll interval plus
 * the engine's persist) and "delivered" (from there to the watcher).
 * Manila's manager polls every 60 s, one share after the other.
 *
 * Two set-ups, each with ferryd as its own process and default settings:
 * the array embedded in ferryd (the zero-setup default), and the array as
 * its own process (as a vendor's array is). One migration at a time, of a
 * small share filled with data; the watch is opened right after
 * StartMigration. A migration whose first watched value is already
 * PHASE1_DONE measures the watch's opening, not the notification, and is
 * left out (and counted). All clocks are this machine's Date.now(), in ms.
 */
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { FerryClient, TERMINAL, type Migration, type Timestamp } from '../../client/client.ts';
import { SimClient } from '../../test/simulator/helpers.ts';
import { content } from '../lib/content.ts';
import { startArray, startDaemon, startEmbeddedDaemon, type Served } from '../lib/processes.ts';
import { fmt, ratio, type Scenario, type ScenarioReport, type Table } from '../lib/report.ts';
import { summarise, type Summary } from '../lib/stats.ts';

const MiB = 2 ** 20;
const SHARE_BYTES = 16 * MiB;

const ms = (ts: Timestamp | null | undefined): number => (ts ? Number(ts.seconds) * 1000 + Math.floor(Number(ts.nanos) / 1e6) : NaN);

interface Sample {
  /** Array's phase1_done_at -> watcher received PHASE1_DONE. */
  seenMs: number;
  /** Array's phase1_done_at -> daemon's phase1_done_at. */
  noticedMs: number;
  /** Daemon's phase1_done_at -> watcher received. */
  deliveredMs: number;
}

/** One migration: start, watch, and the three delays (undefined when phase 1 was done before the watch opened). */
async function once(client: FerryClient, sim: SimClient, shareId: string): Promise<Sample | undefined> {
  await sim.call('CreateShare', { shareId, backend: 'alpha', pool: 'gold', sizeBytes: SHARE_BYTES });
  for (let off = 0; off < SHARE_BYTES; off += MiB) await sim.call('WriteShare', { shareId, offset: off, data: content(off, MiB, 5) });
  const m = await client.startMigration({ share: { backend: 'alpha', shareId }, destination: 'beta#bronze', writable: true });
  let first = true;
  let seenAt = NaN;
  let done: Migration | undefined;
  for await (const value of client.watch(m.id)) {
    if (value.state === 'MIGRATION_STATE_PHASE1_DONE') {
      seenAt = Date.now();
      done = value;
      break;
    }
    first = false;
    if (TERMINAL.has(value.state)) throw new Error(`migration ${m.id} ended ${value.state} before phase 1: ${value.error?.message ?? ''}`);
  }
  if (!done) throw new Error(`the watch of ${m.id} ended without PHASE1_DONE`);
  const job = await sim.call('GetJob', { jobId: m.id });
  await client.cancelMigration(m.id);
  await client.waitFor(m.id, () => false);
  if (first) return undefined;
  const arrayDone = ms(job.phase1DoneAt);
  const daemonDone = ms(done.phase1DoneAt);
  return { seenMs: seenAt - arrayDone, noticedMs: daemonDone - arrayDone, deliveredMs: seenAt - daemonDone };
}

interface SetupResult {
  setup: string;
  seen: Summary;
  noticed: Summary;
  delivered: Summary;
  skipped: number;
  samples: Sample[];
}

async function measure(setup: string, daemon: Served, arrayAddress: string, runs: number): Promise<SetupResult> {
  const client = new FerryClient(daemon.address, 30_000);
  const sim = new SimClient(arrayAddress);
  const samples: Sample[] = [];
  let skipped = 0;
  try {
    for (let i = 0; i < runs; i++) {
      const s = await once(client, sim, `p1-${i}`);
      if (s) samples.push(s);
      else skipped++;
    }
  } finally {
    client.close();
    sim.close();
  }
  return {
    setup,
    seen: summarise(samples.map((s) => s.seenMs)),
    noticed: summarise(samples.map((s) => s.noticedMs)),
    delivered: summarise(samples.map((s) => s.deliveredMs)),
    skipped,
    samples,
  };
}

/** The phase-1-seen scenario. */
export const phase1SeenScenario: Scenario = {
  name: 'phase1-seen',
  title: 'Phase 1 seen: from the array marking phase 1 done to a WatchMigration client receiving PHASE1_DONE',
  async run(ctx): Promise<ScenarioReport> {
    const runs = ctx.quick ? 10 : 40;
    const results: SetupResult[] = [];
    {
      const dir = path.join(ctx.scratch, 'phase1-embedded');
      mkdirSync(dir, { recursive: true });
      const daemon = await startEmbeddedDaemon(path.join(dir, 'ferryd'));
      try {
        results.push(await measure('array embedded in ferryd', daemon, daemon.address, runs));
      } finally {
        await daemon.stop();
      }
    }
    {
      const dir = path.join(ctx.scratch, 'phase1-separate');
      mkdirSync(dir, { recursive: true });
      const array = await startArray(path.join(dir, 'array'));
      try {
        const daemon = await startDaemon(path.join(dir, 'ferryd'), array.address);
        try {
          results.push(await measure('array as its own process', daemon, array.address, runs));
        } finally {
          await daemon.stop();
        }
      } finally {
        await array.stop();
      }
    }
    for (const r of results) ctx.log(`phase1-seen, ${r.setup}: median ${r.seen.median} ms, p99 ${r.seen.p99} ms over ${r.seen.n} (left out ${r.skipped})`);

    const row = (r: SetupResult, what: string, s: Summary) => [r.setup, what, `${s.n}`, fmt(s.median, 0), fmt(s.p90, 0), fmt(s.p99, 0), fmt(s.max, 0)];
    const table: Table = {
      title: `Phase 1 seen (ms), one migration of a ${SHARE_BYTES / MiB} MiB share at a time`,
      header: ['set-up', 'delay', 'n', 'median', 'p90', 'p99', 'max'],
      rows: results.flatMap((r) => [row(r, 'array done -> watcher', r.seen), row(r, '  array -> daemon PHASE1_DONE', r.noticed), row(r, '  daemon -> watcher', r.delivered)]),
      notes: [
        'Timestamps are whole milliseconds. p99 is nearest-rank: with fewer than 100 samples it is the largest.',
        `Left out (phase 1 done before the watch opened): ${results.map((r) => `${r.setup} ${r.skipped}`).join(', ')}.`,
      ],
    };
    const worst = results.reduce((a, b) => (b.seen.p99 > a.seen.p99 ? b : a));
    return {
      tables: [table],
      summary: results.map((r) => ({
        scenario: 'phase1-seen',
        measure: `phase 1 done -> watcher, ${r.setup} (ms)`,
        ferry: `p99 ${fmt(r.seen.p99, 0)}, median ${fmt(r.seen.median, 0)}`,
        baseline: 'Manila: polls every 60 000',
        ratio: `${ratio(60_000 / r.seen.p99)} sooner`,
      })),
      targets: [{ target: 'phase 1 seen p99 < 100 ms', measured: results.map((r) => `${fmt(r.seen.p99, 0)} ms (${r.setup}, n=${r.seen.n})`).join('; '), met: worst.seen.p99 < 100 }],
      data: { shareBytes: SHARE_BYTES, runs, results },
    };
  },
};
