/**
 * Capacity accounting of the array's pools: which pools exist, and how much
 * of each is used by the shares that live there, the jobs that hold space
 * in it and the targets not promoted yet.
 *
 * The figure is kept incrementally, so that a read costs O(pools) rather
 * than a walk of every share and job (ListBackends is called once per
 * StartMigration). Pools remembers what each share, job and target holds;
 * whoever changes what one of them holds calls its note, synchronously,
 * right after the change (no await in between), and the note replaces what
 * Pools remembered of it with what it holds now:
 *
 *   - noteShare(shareId): a share created or deleted, or its place
 *     (backend, pool), size or retiring place changed;
 *   - noteJob(jobId, rec): a job added or forgotten, its state entering or
 *     leaving ACTIVE_JOB_STATES, or `switched` set;
 *   - noteTarget(targetId, rec): a target created, promoted or discarded.
 *
 * A note is idempotent (one too many is harmless; one missing is a wrong
 * figure). `recompute` is the full walk, kept as the reference the tests
 * compare the kept figure with.
 */
import type { SimulatorConfig } from './config.ts';
import { ArrayError } from './errors.ts';
import { ACTIVE_JOB_STATES } from './job-record.ts';
import type { JobRecord } from './job-record.ts';
import type { ShareRecord } from './model.ts';

/** Space held in a pool by something other than a share or a job (a target, a retiring place). */
export interface Reservation {
  backend: string;
  pool: string;
  bytes: number;
}

/** What one share, job or target holds: bytes by "backend/pool". */
type Holding = ReadonlyArray<readonly [key: string, bytes: number]>;

const poolKey = (backend: string, pool: string) => `${backend}/${pool}`;

/** What a share holds: its place, and its former place until it is retired. */
function shareHolding(s: ShareRecord | undefined): Holding {
  if (!s) return [];
  const h: Array<[string, number]> = [[poolKey(s.backend, s.pool), s.sizeBytes]];
  if (s.retiring) h.push([poolKey(s.retiring.backend, s.retiring.pool), s.sizeBytes]);
  return h;
}

/** What a job holds: an active one its destination, or after the switch its source until it is deleted. */
function jobHolding(j: JobRecord | undefined): Holding {
  if (!j || !ACTIVE_JOB_STATES.has(j.state)) return [];
  const place = j.switched ? j.source : j.dest;
  return [[poolKey(place.backend, place.pool), j.sizeBytes]];
}

/** What a target holds: its space until it is promoted (then it is its share's). */
function targetHolding(t: { backend: string; pool: string; sizeBytes: number; promotedTo: string } | undefined): Holding {
  return t && !t.promotedTo ? [[poolKey(t.backend, t.pool), t.sizeBytes]] : [];
}

/** The pools of an array. */
export class Pools {
  private readonly config: SimulatorConfig;
  private readonly shares: ReadonlyMap<string, ShareRecord>;
  /** Used bytes by "backend/pool": the sum of `held`. */
  private readonly used = new Map<string, number>();
  /** What each share ("s:"), job ("j:") and target ("t:") holds, as last noted; nothing for one that holds nothing. */
  private readonly held = new Map<string, Holding>();
  /** Targets not promoted yet, set by the array once its target manager exists (for `recompute`). */
  reservations: () => Iterable<Reservation> = () => [];

  /** Counts the shares already in `shares`; the job and target managers note theirs as they load them. */
  constructor(config: SimulatorConfig, shares: ReadonlyMap<string, ShareRecord>) {
    this.config = config;
    this.shares = shares;
    for (const shareId of shares.keys()) this.noteShare(shareId);
  }

  /** A share was created, deleted, moved, resized, or its retiring place set or deleted (see the file's comment). */
  noteShare(shareId: string): void {
    this.hold(`s:${shareId}`, shareHolding(this.shares.get(shareId)));
  }

  /** A job was added (rec) or forgotten (undefined), became active or not, or switched (see the file's comment). */
  noteJob(jobId: string, rec: JobRecord | undefined): void {
    this.hold(`j:${jobId}`, jobHolding(rec));
  }

  /** A target was created, promoted (rec) or discarded (undefined) (see the file's comment). */
  noteTarget(targetId: string, rec: { backend: string; pool: string; sizeBytes: number; promotedTo: string } | undefined): void {
    this.hold(`t:${targetId}`, targetHolding(rec));
  }

  /** Replaces what `id` held by `now` in the figure. */
  private hold(id: string, now: Holding): void {
    const before = this.held.get(id);
    if (before) for (const [key, bytes] of before) this.add(key, -bytes);
    for (const [key, bytes] of now) this.add(key, bytes);
    if (now.length > 0) this.held.set(id, now);
    else this.held.delete(id);
  }

  private add(key: string, bytes: number): void {
    const n = (this.used.get(key) ?? 0) + bytes;
    if (n === 0) this.used.delete(key);
    else this.used.set(key, n);
  }

  /**
   * Used bytes per "backend/pool": shares where they live, destinations
   * reserved by active jobs, sources not yet deleted after a switch or a
   * promote, targets not promoted yet. A copy of the kept figure.
   */
  usage(): Map<string, number> {
    return new Map(this.used);
  }

  /** The same as `usage`, from a walk of every share, job and target: the reference for the kept figure. */
  recompute(jobs: Iterable<JobRecord>): Map<string, number> {
    const used = new Map<string, number>();
    const add = (backend: string, pool: string, bytes: number) => {
      const key = poolKey(backend, pool);
      used.set(key, (used.get(key) ?? 0) + bytes);
    };
    for (const s of this.shares.values()) {
      add(s.backend, s.pool, s.sizeBytes);
      if (s.retiring) add(s.retiring.backend, s.retiring.pool, s.sizeBytes);
    }
    for (const r of this.reservations()) add(r.backend, r.pool, r.bytes);
    for (const j of jobs) {
      if (!ACTIVE_JOB_STATES.has(j.state)) continue;
      if (j.switched) add(j.source.backend, j.source.pool, j.sizeBytes);
      else add(j.dest.backend, j.dest.pool, j.sizeBytes);
    }
    return used;
  }

  /** Free bytes in a pool, counting shares, jobs and targets. */
  free(backend: string, pool: string): number {
    return this.capacity(backend, pool) - (this.used.get(poolKey(backend, pool)) ?? 0);
  }

  /** A pool's capacity; 0 for a pool that does not exist. */
  capacity(backend: string, pool: string): number {
    return this.config.backends.find((b) => b.name === backend)?.pools.find((p) => p.name === pool)?.capacityBytes ?? 0;
  }

  /** Throws NO_SUCH_OBJECT naming the field (as the request calls it) unless the backend and pool exist. */
  check(backend: string, pool: string, fields: { backend: string; pool: string }): void {
    const { backends } = this.config;
    const b = backends.find((x) => x.name === backend);
    if (!b) throw new ArrayError('NO_SUCH_OBJECT', `${fields.backend}: backend ${backend} not found on this array (it has ${backends.map((x) => x.name).join(', ')})`);
    if (!b.pools.some((p) => p.name === pool)) {
      throw new ArrayError('NO_SUCH_OBJECT', `${fields.pool}: pool ${pool} not found on backend ${backend} (it has ${b.pools.map((p) => p.name).join(', ')})`);
    }
  }
}
