/**
 * Pools keep the used bytes of each pool incrementally (simulator/pools.ts):
 * a real array over real gRPC and LevelDB is driven through many random
 * operations (shares created and deleted, jobs started several at once,
 * cancelled, cut over to DONE, failing to start and failing to copy,
 * targets created, discarded and promoted, former places retired, and the
 * array reopened on its data dir), and the kept figure must equal the full
 * walk after every step, and at every moment a timer sees it in between.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { SimArray } from '../../simulator/index.ts';
import type { SimulatorConfig } from '../../simulator/index.ts';
import { phase1Done, serveArray, waitForJob } from './helpers.ts';
import type { ServedArray } from './helpers.ts';

const KiB = 1024;
const MiB = 1024 * KiB;

/** Small pools, so that NO_SPACE is common. */
const CONFIG: Partial<SimulatorConfig> = {
  blockSizeBytes: 4 * KiB,
  chunkSizeBytes: 64 * KiB,
  workers: 2,
  backends: [
    { name: 'alpha', pools: [{ name: 'gold', capacityBytes: 10 * MiB }, { name: 'silver', capacityBytes: 10 * MiB }] },
    { name: 'beta', pools: [{ name: 'bronze', capacityBytes: 10 * MiB }, { name: 'tiny', capacityBytes: 2 * MiB }] },
  ],
};
const POOLS = CONFIG.backends!.flatMap((b) => b.pools.map((p) => ({ backend: b.name, pool: p.name })));

/** A seeded PRNG (mulberry32), so that a failure repeats. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** '' when the kept figure equals the walk, else what differs. */
function mismatch(array: SimArray): string {
  const { kept, recomputed } = array.poolUsage();
  const diffs: string[] = [];
  for (const key of new Set([...kept.keys(), ...recomputed.keys()])) {
    const a = kept.get(key) ?? 0;
    const b = recomputed.get(key) ?? 0;
    if (a !== b) diffs.push(`${key}: kept ${a}, recomputed ${b}`);
  }
  return diffs.join('; ');
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Internals = { blocks: { create: (...a: any[]) => Promise<void> }; pool: { copy: (...a: any[]) => Promise<unknown> } };

test('the pools\' kept usage equals a full recomputation after every step of a random run, across a reopen', async (t) => {
  const seed = Number(process.env.POOLS_SEED ?? 20240611);
  const random = prng(seed);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(random() * xs.length)]!;
  let served: ServedArray = await serveArray(t, { config: CONFIG });
  const { dataDir } = served;
  // Faults the test injects into the array's parts (no fault knob reaches them).
  let failCreates = 0;
  let failCopies = false;
  const instrument = (array: SimArray) => {
    const parts = array as unknown as Internals;
    const create = parts.blocks.create.bind(parts.blocks);
    parts.blocks.create = async (...a) => {
      if (failCreates > 0) {
        failCreates--;
        counts['failed start'] = (counts['failed start'] ?? 0) + 1;
        throw new Error('injected: the destination cannot be created');
      }
      return create(...a);
    };
    const copy = parts.pool.copy.bind(parts.pool);
    parts.pool.copy = async (...a) => {
      if (failCopies) throw new Error('injected: the copy fails');
      return copy(...a);
    };
  };
  instrument(served.array);

  // In between the steps: a timer compares at every turn it gets, while calls are in flight.
  let between = '';
  let turns = 0;
  const timer = setInterval(() => {
    turns++;
    between ||= mismatch(served.array);
  }, 0);
  t.after(() => clearInterval(timer));

  const shares = new Set<string>();
  const jobs = new Set<string>();
  const targets = new Set<string>();
  const retiring = new Map<string, string>(); // share -> backend of its former place
  const counts: Record<string, number> = {};
  let n = 0;
  const check = (step: string) => {
    counts[step] = (counts[step] ?? 0) + 1;
    assert.equal(mismatch(served.array), '', `after step ${n} (${step}), seed ${seed}`);
    assert.equal(between, '', `during step ${n} (${step}), seed ${seed}`);
  };
  const settle = (p: Promise<unknown>) => p.then(() => true, () => false);

  const reopen = async () => {
    await served.close();
    served = await serveArray(t, { dataDir, config: CONFIG });
    instrument(served.array);
    check('reopen');
  };

  // Every kind of step must occur: the seed fixes which are asked for, but not every outcome (copies run meanwhile), so a run
  // goes on past 400 steps until each kind has happened, up to 2,000.
  const kinds = ['create share', 'delete share', 'start jobs', 'cancel job', 'cutover job', 'failed copy', 'create target', 'discard target', 'promote target', 'failed start', 'promoted onto a share', 'retire', 'reopen'];
  for (n = 0; n < 400 || (n < 2000 && kinds.some((k) => !counts[k])); n++) {
    if (n % 100 === 99) {
      await reopen();
      continue;
    }
    const c = served.client;
    const r = random();
    if (r < 0.22) {
      const id = `s${n}`;
      const at = pick(POOLS);
      if (await settle(c.call('CreateShare', { shareId: id, ...at, sizeBytes: (1 + Math.floor(random() * 6)) * 256 * KiB }))) shares.add(id);
      check('create share');
    } else if (r < 0.3 && shares.size > 0) {
      const id = pick([...shares]);
      if (await settle(c.call('DeleteShare', { shareId: id }))) {
        shares.delete(id);
        retiring.delete(id);
      }
      check('delete share');
    } else if (r < 0.5 && shares.size > 0) {
      // Several StartJobs at once (their destinations are created outside the array's lock), one of them perhaps failing to create it.
      if (random() < 0.3) failCreates = 1;
      const idle = [...shares].filter((id) => !served.array.getShare(id).migrating);
      const starts = Array.from({ length: idle.length > 0 ? 1 + Math.floor(random() * 4) : 0 }, (_, k) => {
        const jobId = `j${n}-${k}`;
        jobs.add(jobId);
        return c.call('StartJob', { jobId, shareId: pick(idle), ...destOf(pick(POOLS)), writable: true, nondisruptive: true }).then(
          () => (counts['job started'] = (counts['job started'] ?? 0) + 1),
          (err) => (counts[`start: ${/NO_SPACE|already|lacks room/.exec(err.details)?.[0] ?? err.details.slice(0, 30)}`] = (counts[`start: ${/NO_SPACE|already|lacks room/.exec(err.details)?.[0] ?? err.details.slice(0, 30)}`] ?? 0) + 1),
        );
      });
      await Promise.all(starts);
      failCreates = 0;
      check('start jobs');
    } else if (r < 0.6 && jobs.size > 0) {
      await settle(c.call('CancelJob', { jobId: pick([...jobs]) }));
      check('cancel job');
    } else if (r < 0.72 && jobs.size > 0) {
      const jobId = pick([...jobs]);
      const job = await c.call('GetJob', { jobId }).catch(() => undefined);
      if (job && (job.state === 'JOB_STATE_COPYING' || job.state === 'JOB_STATE_SYNCING')) {
        await phase1Done(c, jobId);
        const done = await c.call('CutoverJob', { jobId });
        assert.equal(done.state, 'JOB_STATE_DONE');
      }
      check('cutover job');
    } else if (r < 0.77 && shares.size > 0) {
      // A job whose copy fails: FAILED, its destination discarded.
      const jobId = `j${n}-f`;
      failCopies = true;
      if (await settle(c.call('StartJob', { jobId, shareId: pick([...shares]), ...destOf(pick(POOLS)), writable: true, nondisruptive: true }))) {
        jobs.add(jobId);
        await waitForJob(c, jobId, (j) => j.state === 'JOB_STATE_FAILED', 'failed');
      }
      failCopies = false;
      check('failed copy');
    } else if (r < 0.84) {
      const targetId = `t${n}`;
      const at = pick(POOLS);
      if (await settle(served.array.targets.create({ targetId, ...at, sizeBytes: (1 + Math.floor(random() * 4)) * 256 * KiB, metadata: {}, shareType: '' }))) targets.add(targetId);
      check('create target');
    } else if (r < 0.87 && targets.size > 0) {
      const targetId = pick([...targets]);
      targets.delete(targetId);
      await settle(served.array.targets.discard(targetId));
      check('discard target');
    } else if (r < 0.95 && targets.size > 0) {
      // Promote to be a new share, or an existing one (frozen), whose former place is then retiring.
      const targetId = pick([...targets]);
      targets.delete(targetId);
      const candidates = [...shares].filter((id) => !retiring.has(id) && !served.array.getShare(id).migrating);
      const existing = candidates.length > 0 && random() < 0.6 ? pick(candidates) : '';
      if (existing) {
        const before = served.array.getShare(existing).backend;
        if (await settle(served.array.leases.freeze(existing, 'test', 60_000, false))) {
          if (await settle(served.array.targets.promote(targetId, existing))) {
            retiring.set(existing, before);
            counts['promoted onto a share'] = (counts['promoted onto a share'] ?? 0) + 1;
          }
          served.array.leases.release(existing, 'test');
        }
      } else if (await settle(served.array.targets.promote(targetId, `p${n}`))) {
        shares.add(`p${n}`);
      }
      check('promote target');
    } else if (r < 0.985 && retiring.size > 0) {
      const [shareId, backend] = pick([...retiring]);
      retiring.delete(shareId);
      await settle(served.array.targets.retire(shareId, backend));
      check('retire');
    } else if (r >= 0.985) {
      await reopen();
    }
  }
  // The run went through every kind of step, and the timer saw the figure many times in between.
  for (const step of kinds) {
    assert.ok(counts[step], `no "${step}" step in the run (seed ${seed}): ${JSON.stringify(counts)}`);
  }
  t.diagnostic(`seed ${seed}: ${JSON.stringify(counts)}; the timer compared ${turns} times`);
  assert.ok(turns > 100, `the timer ran only ${turns} times`);
  const listed = await served.client.call('ListBackends');
  const { kept } = served.array.poolUsage();
  for (const b of listed.backends) for (const p of b.pools) assert.equal(Number(p.usedBytes), kept.get(`${b.name}/${p.name}`) ?? 0);
});

function destOf(at: { backend: string; pool: string }) {
  return { destBackend: at.backend, destPool: at.pool };
}
