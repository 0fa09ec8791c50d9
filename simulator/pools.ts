/**
 * Capacity accounting of the array's pools: which pools exist, and how much
 * of each is used by the shares that live there and the jobs that hold
 * space in it. It reads the shares and the job records it is given, and
 * keeps nothing of its own, so it needs no job manager to exist first.
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

/** The pools of an array. */
export class Pools {
  private readonly config: SimulatorConfig;
  private readonly shares: ReadonlyMap<string, ShareRecord>;
  /** Targets not promoted yet, set by the array once its target manager exists. */
  reservations: () => Iterable<Reservation> = () => [];

  constructor(config: SimulatorConfig, shares: ReadonlyMap<string, ShareRecord>) {
    this.config = config;
    this.shares = shares;
  }

  /**
   * Used bytes per "backend/pool": shares where they live, destinations
   * reserved by active jobs, sources not yet deleted after a switch or a
   * promote, targets not promoted yet.
   */
  usage(jobs: Iterable<JobRecord>): Map<string, number> {
    const used = new Map<string, number>();
    const add = (backend: string, pool: string, bytes: number) => {
      const key = `${backend}/${pool}`;
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

  /** Free bytes in a pool, counting shares and the reservations of `jobs`. */
  free(backend: string, pool: string, jobs: Iterable<JobRecord>): number {
    return this.capacity(backend, pool) - (this.usage(jobs).get(`${backend}/${pool}`) ?? 0);
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
