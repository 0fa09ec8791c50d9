/**
 * The simulated storage array: backends with pools, shares on disk, the
 * data path, migration jobs, workloads and faults. It lives in a data
 * directory and outlives the process that hosts it: reopening the same
 * directory serves the same shares, bytes and jobs (and resumes the jobs).
 *
 *   <dataDir>/meta/             LevelDB: shares, jobs + checkpoints, faults, workload records,
 *                               snapshots with their bitmaps, targets
 *   <dataDir>/shares/<id>.img   one sparse file per share (and per job destination,
 *                               snapshot side file and target)
 *
 * This class wires the parts together and owns the shares; the gRPC
 * surface is in service.ts.
 */
import { randomUUID } from 'node:crypto';
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { ArrayError } from './errors.ts';
import { silentLog } from '../lib/log.ts';
import type { Log } from '../lib/log.ts';
import { BlockStore } from './blockstore.ts';
import { arrayOf, resolveSimulatorConfig } from './config.ts';
import type { SimulatorConfig } from './config.ts';
import { CopyPool } from './copy-pool.ts';
import { DataPath, ShareGates } from './datapath.ts';
import { Faults } from './faults.ts';
import { FreezeLeases } from './leases.ts';
import { SnapshotManager } from './snapshots.ts';
import { TargetManager } from './targets.ts';
import { JobManager, newFileId } from './jobs.ts';
import { MetaStore } from './metadata.ts';
import { ACTIVE_JOB_STATES } from './job-record.ts';
import { keys, shareNotFound } from './model.ts';
import type { ShareRecord } from './model.ts';
import { Mutex } from './mutex.ts';
import { Pools } from './pools.ts';
import { WorkloadManager } from './workload.ts';

/** What SimArray.open takes. */
export interface SimArrayOptions {
  /** Where the array keeps everything. Created if missing. */
  dataDir: string;
  /** Overrides of DEFAULT_SIMULATOR_CONFIG; the rest keeps the default. */
  config?: Partial<SimulatorConfig>;
  /** Default: silent. */
  log?: Log;
}

/** A pool with its usage. */
export interface PoolView {
  name: string;
  capacityBytes: number;
  usedBytes: number;
  freeBytes: number;
}

/** A backend with its pools. */
export interface BackendView {
  name: string;
  /** The array it lives on. */
  array: string;
  pools: PoolView[];
}

/** A share as the API shows it. */
export interface ShareView extends ShareRecord {
  exportPath: string;
  readOnly: boolean;
  migrating: boolean;
}

/** What CreateShare takes (checked by the service). */
export interface CreateShareInput {
  shareId: string;
  backend: string;
  pool: string;
  sizeBytes: number;
  metadata: Record<string, string>;
  snapshots: number;
  shareType: string;
}

/** The array. */
export class SimArray {
  /** The resolved configuration. */
  readonly config: SimulatorConfig;
  /** Injected faults. */
  readonly faults: Faults;
  /** Migration jobs. */
  readonly jobs: JobManager;
  /** Workload generators. */
  readonly workloads: WorkloadManager;
  /** Reads, writes and checksums. */
  readonly data: DataPath;
  /** Snapshots (host data path, source side). */
  readonly snapshots: SnapshotManager;
  /** Targets (host data path, destination side). */
  readonly targets: TargetManager;
  /** Write freezes with a lease (host data path). */
  readonly leases: FreezeLeases;
  private readonly gates: ShareGates;
  private readonly pools: Pools;
  private readonly shares: Map<string, ShareRecord>;
  private readonly store: MetaStore;
  private readonly blocks: BlockStore;
  private readonly pool: CopyPool;
  private readonly lock: Mutex;
  private readonly log: Log;
  private closed: Promise<void> | null = null;

  private constructor(parts: {
    config: SimulatorConfig;
    faults: Faults;
    jobs: JobManager;
    workloads: WorkloadManager;
    data: DataPath;
    snapshots: SnapshotManager;
    targets: TargetManager;
    leases: FreezeLeases;
    gates: ShareGates;
    pools: Pools;
    shares: Map<string, ShareRecord>;
    store: MetaStore;
    blocks: BlockStore;
    pool: CopyPool;
    lock: Mutex;
    log: Log;
  }) {
    this.config = parts.config;
    this.faults = parts.faults;
    this.jobs = parts.jobs;
    this.workloads = parts.workloads;
    this.data = parts.data;
    this.snapshots = parts.snapshots;
    this.targets = parts.targets;
    this.leases = parts.leases;
    this.gates = parts.gates;
    this.pools = parts.pools;
    this.shares = parts.shares;
    this.store = parts.store;
    this.blocks = parts.blocks;
    this.pool = parts.pool;
    this.lock = parts.lock;
    this.log = parts.log;
  }

  /**
   * Opens the array in `dataDir` (creating it if new), recovers its jobs
   * (see JobManager.open) and deletes data files nothing refers to (left
   * by a crash between creating a file and recording it).
   */
  static async open(options: SimArrayOptions): Promise<SimArray> {
    const config = resolveSimulatorConfig(options.config);
    const log = options.log ?? silentLog();
    await mkdir(options.dataDir, { recursive: true });
    const store = await MetaStore.open(path.join(options.dataDir, 'meta'));
    let pool: CopyPool | undefined;
    try {
      const blocks = await BlockStore.open(options.dataDir);
      pool = new CopyPool(config.workers, log);
      const faults = await Faults.open(store, log);
      const shares = new Map<string, ShareRecord>();
      for (const [, share] of await store.entries<ShareRecord>('share!')) shares.set(share.shareId, share);
      const lookup = (shareId: string) => {
        const share = shares.get(shareId);
        if (!share) throw shareNotFound(shareId);
        return share;
      };
      const lock = new Mutex();
      const gates = new ShareGates();
      const pools = new Pools(config, shares);
      const snapshots = await SnapshotManager.open({ store, blocks, blockSizeBytes: config.blockSizeBytes, shares, log });
      const hasSnapshots = (shareId: string) => snapshots.ofShare(shareId).length > 0;
      const jobs = await JobManager.open({ config, store, blocks, pool, faults, log, lock, gates, shares, pools, hasSnapshots });
      const activeJob = (share: ShareRecord) => jobs.activeJob(share)?.jobId ?? '';
      const data = new DataPath({ lookup, blocks, pool, gates, observer: jobs, beforeWrite: (share, offset, length) => snapshots.beforeWrite(share, offset, length) });
      const workloads = await WorkloadManager.open(store, data, shares, log);
      const leases = new FreezeLeases({ gates, lookup, activeJob, log });
      // The array is made below; removeShare is only called once it is.
      let self: SimArray | undefined;
      const targets = await TargetManager.open({
        store, blocks, pools, shares, gates, snapshots, lock, log, activeJob,
        removeShare: (shareId) => self!.removeShare(shareId),
      });
      pools.reservations = () => targets.reservations();
      const array = new SimArray({ config, faults, jobs, workloads, data, snapshots, targets, leases, gates, pools, shares, store, blocks, pool, lock, log });
      self = array;
      await array.removeOrphans();
      log.info({ dataDir: options.dataDir, shares: shares.size }, 'array open');
      return array;
    } catch (err) {
      await pool?.close().catch(() => undefined);
      await store.close().catch(() => undefined);
      throw err;
    }
  }

  /** Stops workloads and jobs cooperatively (jobs resume on the next open), terminates the workers, closes the files and the database. Idempotent. */
  close(): Promise<void> {
    this.closed ??= (async () => {
      this.faults.close();
      this.leases.close();
      await this.workloads.close();
      await this.jobs.close();
      await this.pool.close();
      await this.blocks.close();
      await this.store.close();
      this.log.info('array closed');
    })();
    return this.closed;
  }

  // ----------------------------------------------------------- backends

  /** ListBackends. */
  listBackends(): BackendView[] {
    const used = this.pools.usage();
    return this.config.backends.map((b) => ({
      name: b.name,
      array: arrayOf(this.config, b.name)!,
      pools: b.pools.map((p) => {
        const usedBytes = used.get(`${b.name}/${p.name}`) ?? 0;
        return { name: p.name, capacityBytes: p.capacityBytes, usedBytes, freeBytes: Math.max(0, p.capacityBytes - usedBytes) };
      }),
    }));
  }

  /** The pools' used bytes as kept, and as a walk of every share, job and target finds them (for tests: they must be equal). */
  poolUsage(): { kept: Map<string, number>; recomputed: Map<string, number> } {
    return { kept: this.pools.usage(), recomputed: this.pools.recompute(this.jobs.records()) };
  }

  // ------------------------------------------------------------- shares

  /** CreateShare. */
  createShare(input: CreateShareInput): Promise<ShareView> {
    return this.lock.run(async () => {
      this.pools.check(input.backend, input.pool, { backend: 'backend', pool: 'pool' });
      const shareId = input.shareId || `share-${randomUUID()}`;
      const existing = this.shares.get(shareId);
      if (existing) {
        const same =
          existing.sizeBytes === input.sizeBytes &&
          existing.shareType === (input.shareType || 'default') &&
          existing.snapshots === input.snapshots &&
          JSON.stringify(sortKeys(existing.metadata)) === JSON.stringify(sortKeys(input.metadata));
        if (!same) throw new ArrayError('OBJECT_EXISTS', `share ${shareId} already exists with different fields`);
        return this.view(existing);
      }
      const free = this.pools.free(input.backend, input.pool);
      if (input.sizeBytes > free) {
        throw new ArrayError('NO_SPACE', `pool ${input.backend}/${input.pool} lacks room: need ${input.sizeBytes} bytes, ${free} free`);
      }
      const share: ShareRecord = {
        shareId,
        backend: input.backend,
        pool: input.pool,
        fileId: newFileId(),
        sizeBytes: input.sizeBytes,
        metadata: { ...input.metadata },
        snapshots: input.snapshots,
        shareType: input.shareType || 'default',
        createdAtMs: Date.now(),
        jobId: '',
      };
      await this.blocks.create(share.fileId, share.sizeBytes);
      await this.store.put(keys.share(shareId), share, { sync: true });
      this.shares.set(shareId, share);
      this.pools.noteShare(shareId);
      this.log.info({ share: shareId, backend: share.backend, pool: share.pool, sizeBytes: share.sizeBytes }, 'share created');
      return this.view(share);
    });
  }

  /** GetShare. */
  getShare(shareId: string): ShareView {
    const share = this.shares.get(shareId);
    if (!share) throw shareNotFound(shareId);
    return this.view(share);
  }

  /** ListShares, by share id. */
  listShares(backend: string): ShareView[] {
    if (backend && !this.config.backends.some((b) => b.name === backend)) {
      throw new ArrayError('NO_SUCH_OBJECT', `backend ${backend} not found on this array (it has ${this.config.backends.map((b) => b.name).join(', ')})`);
    }
    return [...this.shares.values()]
      .filter((s) => !backend || s.backend === backend)
      .sort((a, b) => (a.shareId < b.shareId ? -1 : a.shareId > b.shareId ? 1 : 0))
      .map((s) => this.view(s));
  }

  /** DeleteShare. */
  deleteShare(shareId: string): Promise<void> {
    return this.lock.run(async () => {
      const share = this.shares.get(shareId);
      if (!share) throw shareNotFound(shareId);
      const job = this.jobs.activeJob(share);
      if (job) throw new ArrayError('WRONG_STATE', `share ${shareId} has an active migration job ${job.jobId} (${job.state}); cancel it or wait for it to finish`);
      await this.snapshots.deleteOfShare(shareId);
      await this.removeShare(shareId);
    });
  }

  /** Deletes a share's record, data (a retiring place's too) and workloads; the caller holds the lock. */
  private async removeShare(shareId: string): Promise<void> {
    const share = this.shares.get(shareId);
    if (!share) return;
    await this.workloads.stopForShare(shareId, 'share deleted');
    this.shares.delete(shareId);
    this.pools.noteShare(shareId);
    await this.store.del([keys.share(shareId)]);
    await this.blocks.remove(share.fileId);
    if (share.retiring) await this.blocks.remove(share.retiring.fileId);
    this.gates.forget(shareId);
    this.log.info({ share: shareId }, 'share deleted');
  }

  // ------------------------------------------------------ host data path

  /** CreateSnapshot: a share with an active job is WRONG_STATE (the job would move it from under the snapshot). */
  createSnapshot(shareId: string, snapshotId: string) {
    const share = this.shares.get(shareId);
    const job = share && this.jobs.activeJob(share);
    if (job) throw new ArrayError('WRONG_STATE', `share ${shareId} has an active migration job ${job.jobId}; a snapshot of it must wait for the job to end`);
    return this.snapshots.create(shareId, snapshotId);
  }

  /**
   * ReleaseShare. `committed` for a share no target was promoted to be on
   * this array (it moved to another array): the share is marked moved away,
   * durably, before the gate opens, so the waiting writes fail rather than
   * land on a copy about to be retired.
   */
  async releaseShare(shareId: string, holder: string, committed: boolean): Promise<void> {
    const share = this.shares.get(shareId);
    if (!share) return;
    if (committed && !share.retiring && !share.movedAway) {
      await this.lock.run(async () => {
        share.movedAway = true;
        await this.store.put(keys.share(shareId), share, { sync: true });
      });
    }
    this.leases.release(shareId, holder);
  }

  private view(share: ShareRecord): ShareView {
    const job = this.jobs.activeJob(share);
    return {
      ...share,
      metadata: { ...share.metadata },
      exportPath: `${share.backend}:/${share.pool}/${share.shareId}`,
      readOnly: Boolean(job && !job.spec.writable && !job.switched),
      migrating: Boolean(job),
      jobId: job ? job.jobId : '',
    };
  }

  private async removeOrphans(): Promise<void> {
    const wanted = new Set<string>();
    for (const s of this.shares.values()) {
      wanted.add(s.fileId);
      if (s.retiring) wanted.add(s.retiring.fileId);
    }
    for (const id of this.snapshots.fileIds()) wanted.add(id);
    for (const id of this.targets.fileIds()) wanted.add(id);
    for (const j of this.jobs.records()) {
      if (ACTIVE_JOB_STATES.has(j.state)) {
        wanted.add(j.source.fileId);
        wanted.add(j.dest.fileId);
      }
    }
    for (const id of await this.blocks.list()) {
      if (wanted.has(id)) continue;
      this.log.warn({ file: id }, 'removing a data file nothing refers to');
      await this.blocks.remove(id);
    }
  }
}

function sortKeys(o: Record<string, string>): Array<[string, string]> {
  return Object.entries(o).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
}
