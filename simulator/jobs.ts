/**
 * Migration jobs: start (reserve, create the destination, start the copy),
 * get, list, cutover, cancel, and their recovery when the array reopens.
 * The copy engine of an active job is its JobRunner; the cutover is in
 * cutover.ts. Job records are persisted before anything acts on them.
 */
import { randomUUID } from 'node:crypto';
import { ArrayError } from './errors.ts';
import type { Log } from '../lib/log.ts';
import type { BlockStore } from './blockstore.ts';
import { arrayOf } from './config.ts';
import type { SimulatorConfig } from './config.ts';
import type { CopyPool } from './copy-pool.ts';
import { runCutover } from './cutover.ts';
import type { ShareGates, WriteObserver } from './datapath.ts';
import type { Faults } from './faults.ts';
import { JobEvents } from './job-events.ts';
import type { JobWatch } from './job-events.ts';
import { JobRunner, finishedProgress } from './job-runner.ts';
import type { ProgressView } from './job-runner.ts';
import type { MetaStore } from './metadata.ts';
import { ACTIVE_JOB_STATES, newJobRecord, tombstoneRecord, transition } from './job-record.ts';
import type { JobRecord, JobState } from './job-record.ts';
import { keys, shareNotFound, specDiff } from './model.ts';
import type { JobSpec, ShareRecord } from './model.ts';
import type { Mutex } from './mutex.ts';
import type { Pools } from './pools.ts';
import { TokenBucket, sleep } from './rates.ts';

/** A job as the API shows it. */
export interface JobView {
  record: JobRecord;
  progress: ProgressView;
  frozen: boolean;
}

/** What the job manager needs from the array. */
export interface JobManagerDeps {
  config: SimulatorConfig;
  store: MetaStore;
  blocks: BlockStore;
  pool: CopyPool;
  faults: Faults;
  log: Log;
  lock: Mutex;
  /** The shares' write gates (the cutover freezes one). */
  gates: ShareGates;
  shares: Map<string, ShareRecord>;
  /** Capacity accounting. */
  pools: Pools;
  /** Whether a share has snapshots (a job cannot move it from under them). */
  hasSnapshots: (shareId: string) => boolean;
}

/** A StartJob that holds its reservation while it creates the destination. */
interface Starting {
  rec: JobRecord;
  share: ShareRecord;
  /** What the share's jobId was before (restored if the start fails). */
  shareJobIdBefore: string;
  /** Settles the job's entry in `starting`. */
  settle: () => void;
}

/** What StartJob does after its look under the lock. */
type Reserved =
  | { kind: 'answer'; view: JobView }
  | { kind: 'wait'; settled: Promise<void> }
  | { kind: 'create'; start: Starting };

/** A new data file id. */
export function newFileId(): string {
  return `f-${randomUUID()}`;
}

/** Every job of the array. */
export class JobManager implements WriteObserver {
  private readonly deps: JobManagerDeps;
  private readonly jobs = new Map<string, JobRecord>();
  private readonly runners = new Map<string, JobRunner>();
  /** Failed jobs still discarding their destination (close waits for them). */
  private readonly failing = new Set<Promise<void>>();
  /** Jobs reserved by StartJob whose record is not written yet: settles when it is, or when the start is undone. */
  private readonly starting = new Map<string, Promise<void>>();
  /** The change stream (WatchJobs): every transition, and a cutover that failed past its commit point. */
  private readonly events = new JobEvents();
  private readonly arrayBucket: TokenBucket;
  private readonly diskBucket = new TokenBucket(0);
  private closing = false;
  /** Aborted by close: a cutover still catching up stops there. */
  private readonly closed = new AbortController();

  private constructor(deps: JobManagerDeps) {
    this.deps = deps;
    this.arrayBucket = new TokenBucket(deps.config.arrayBandwidthBytesPerSec);
  }

  /**
   * Loads every job and recovers the active ones: a job cut over past its
   * commit point finishes (source deleted, DONE); one caught in a cutover
   * before it goes back to SYNCING (the source is authoritative); copying
   * and syncing jobs resume from their checkpoints, rebuilding their dirty
   * sets first. Files left for deletion are deleted.
   */
  static async open(deps: JobManagerDeps): Promise<JobManager> {
    const manager = new JobManager(deps);
    const records = (await deps.store.entries<JobRecord>('job!')).map(([, rec]) => rec);
    records.sort((a, b) => a.createdAtMs - b.createdAtMs);
    for (const rec of records) {
      manager.jobs.set(rec.jobId, rec);
      deps.pools.noteJob(rec.jobId, rec);
    }
    for (const rec of records) await manager.recover(rec);
    return manager;
  }

  private async recover(rec: JobRecord): Promise<void> {
    const { log } = this.deps;
    if (!ACTIVE_JOB_STATES.has(rec.state)) {
      if (rec.pendingDelete) {
        await this.deps.blocks.remove(rec.pendingDelete);
        rec.pendingDelete = '';
        await this.deps.store.put(keys.job(rec.jobId), rec);
      }
      return;
    }
    const runner = this.runnerFor(rec, true);
    if (rec.state === 'CUTTING_OVER' && rec.switched) {
      log.info({ job: rec.jobId }, 'restart after the cutover commit point: finishing it');
      await this.finish(runner);
      return;
    }
    if (rec.state === 'CUTTING_OVER') {
      log.info({ job: rec.jobId }, 'restart during a cutover, before its commit point: the source stays authoritative; back to SYNCING');
      transition(rec, 'SYNCING', this.events);
      await runner.save(true);
    }
    log.info({ job: rec.jobId, pass: rec.pass, cursor: rec.cursor }, 'resuming job after restart');
    this.runners.set(rec.jobId, runner);
    runner.startLoop();
  }

  private runnerFor(rec: JobRecord, resumed: boolean): JobRunner {
    return new JobRunner(
      rec,
      {
        store: this.deps.store,
        blocks: this.deps.blocks,
        pool: this.deps.pool,
        faults: this.deps.faults,
        log: this.deps.log,
        maxPasses: this.deps.config.maxPasses,
        maxSentFactor: this.deps.config.maxSentFactor,
        blockDigest: this.deps.config.blockDigest,
        arrayBucket: this.arrayBucket,
        diskBucket: this.diskBucket,
        events: this.events,
        failed: (runner, err) => this.fail(runner, err),
      },
      { resumed },
    );
  }

  /** Every job record (for capacity accounting). */
  records(): Iterable<JobRecord> {
    return this.jobs.values();
  }

  /** The active job on a share, if any. */
  activeJob(share: ShareRecord): JobRecord | undefined {
    const rec = share.jobId ? this.jobs.get(share.jobId) : undefined;
    return rec && ACTIVE_JOB_STATES.has(rec.state) ? rec : undefined;
  }

  // ------------------------------------------------------------- the API

  /**
   * StartJob. The checks and the reservation (the destination's space, the
   * share, the job id) are made under the array's lock and take no time;
   * creating the destination's file and writing the job's record are made
   * outside it, so that many starts proceed at once. Until its record is
   * written a job is starting: it holds its space and its share, GetJob and
   * ListJobs do not show it, and a StartJob, CutoverJob or CancelJob of its
   * id waits for it to be written (or undone) and then answers as usual. A
   * failure undoes the reservation and removes the file.
   *
   * A crash after the file is created and before the record is written
   * leaves no job (the share record is written with the job's, in one batch)
   * and a data file nothing refers to, which the next open deletes
   * (SimArray.removeOrphans): the share and its space are as before the
   * call, and the caller's retry starts the job afresh.
   */
  async start(jobId: string, spec: JobSpec): Promise<JobView> {
    for (;;) {
      const next = await this.deps.lock.run(async () => this.reserve(jobId, spec));
      if (next.kind === 'answer') return next.view;
      if (next.kind === 'wait') await next.settled;
      else return this.create(next.start);
    }
  }

  /** Under the lock: answers an existing job, waits for one being started, or reserves a new one. */
  private reserve(jobId: string, spec: JobSpec): Reserved {
    if (this.closing) throw new ArrayError('BUSY', 'the array is shutting down; retry');
    const settled = this.starting.get(jobId);
    if (settled) return { kind: 'wait', settled };
    const existing = this.jobs.get(jobId);
    if (existing) {
      if (existing.tombstone) return { kind: 'answer', view: this.view(existing) };
      const diff = specDiff(existing.spec, spec);
      if (diff.length > 0) {
        throw new ArrayError('OBJECT_EXISTS', `job ${jobId} already exists with different fields: ${diff.join(', ')}`);
      }
      return { kind: 'answer', view: this.view(existing) };
    }
    const share = this.deps.shares.get(spec.shareId);
    if (!share) throw shareNotFound(spec.shareId);
    this.deps.pools.check(spec.destBackend, spec.destPool, { backend: 'dest_backend', pool: 'dest_pool' });
    if (share.backend === spec.destBackend && share.pool === spec.destPool) {
      throw new ArrayError('WRONG_STATE', `share ${share.shareId} already lives in ${share.backend}/${share.pool}; pick another destination`);
    }
    const from = arrayOf(this.deps.config, share.backend);
    const to = arrayOf(this.deps.config, spec.destBackend);
    if (from !== to) {
      throw new ArrayError(
        'OTHER_ARRAY',
        `dest_backend ${spec.destBackend} is on array ${to}, share ${share.shareId} on array ${from}: a job copies only within one array (move it through the host data path)`,
      );
    }
    if (this.deps.hasSnapshots(share.shareId)) throw new ArrayError('WRONG_STATE', `share ${share.shareId} has snapshots; delete them before starting a job`);
    const active = this.activeJob(share);
    if (active) throw new ArrayError('WRONG_STATE', `share ${share.shareId} is already being migrated by job ${active.jobId}`);
    const free = this.deps.pools.free(spec.destBackend, spec.destPool);
    if (share.sizeBytes > free) {
      throw new ArrayError(
        'NO_SPACE',
        `pool ${spec.destBackend}/${spec.destPool} lacks room for share ${share.shareId}: need ${share.sizeBytes} bytes, ${free} free`,
      );
    }
    const rec = newJobRecord({
      jobId,
      spec,
      source: { backend: share.backend, pool: share.pool, fileId: share.fileId },
      dest: { backend: spec.destBackend, pool: spec.destPool, fileId: newFileId() },
      sizeBytes: share.sizeBytes,
      blockSizeBytes: this.deps.config.blockSizeBytes,
      chunkSizeBytes: this.deps.config.chunkSizeBytes,
    });
    // The reservation: from here on the pool counts the job's space (noteJob) and the share is taken (activeJob).
    const start: Starting = { rec, share, shareJobIdBefore: share.jobId, settle: () => undefined };
    this.starting.set(jobId, new Promise<void>((resolve) => (start.settle = resolve)));
    share.jobId = jobId;
    this.jobs.set(jobId, rec);
    this.deps.pools.noteJob(jobId, rec);
    return { kind: 'create', start };
  }

  /** Outside the lock: creates the destination and writes the record, then starts the copy; undoes the reservation on failure. */
  private async create(start: Starting): Promise<JobView> {
    const { rec, share } = start;
    try {
      await this.deps.blocks.create(rec.dest.fileId, rec.sizeBytes);
      await this.deps.faults.crashIfAt('START_BEFORE_RECORD');
      await this.persist(rec, share);
    } catch (err) {
      // Nothing was written (the two records go in one batch): forget the job and free what it held.
      this.jobs.delete(rec.jobId);
      this.deps.pools.noteJob(rec.jobId, undefined);
      if (share.jobId === rec.jobId) share.jobId = start.shareJobIdBefore;
      await this.deps.blocks.remove(rec.dest.fileId).catch((removeErr: unknown) => {
        this.deps.log.warn({ err: removeErr, job: rec.jobId, file: rec.dest.fileId }, 'could not remove the destination of a failed start; the next open deletes it');
      });
      this.starting.delete(rec.jobId);
      start.settle();
      throw err;
    }
    const runner = this.runnerFor(rec, false);
    this.runners.set(rec.jobId, runner);
    runner.startLoop();
    this.starting.delete(rec.jobId);
    start.settle();
    this.deps.log.info({ job: rec.jobId, share: share.shareId, dest: `${rec.dest.backend}/${rec.dest.pool}` }, 'job started');
    return this.view(rec);
  }

  /** WatchJobs: a watch of the changes of jobs whose source is on `backend` ('' for every job); `unwatch` it when done. */
  watch(backend: string): JobWatch {
    return this.events.watch(backend);
  }

  /** Ends a watch. */
  unwatch(watch: JobWatch): void {
    this.events.unwatch(watch);
  }

  /** Ends every watch, so that WatchJobs streams end (OK) before the server drains; close() does it too. */
  closeWatches(): void {
    this.events.close();
  }

  /** GetJob. */
  get(jobId: string): JobView {
    const rec = this.jobs.get(jobId);
    if (!rec || this.starting.has(jobId)) throw new ArrayError('NO_SUCH_OBJECT', `job ${jobId} not found`);
    return this.view(rec);
  }

  /** ListJobs, oldest first (jobs still starting are not shown: nothing of them is written yet). */
  list(): JobView[] {
    return [...this.jobs.values()].filter((rec) => !this.starting.has(rec.jobId)).map((rec) => this.view(rec));
  }

  /** CutoverJob: starts or joins the cutover; returns when it ends or after `waitMs` (0: no limit). */
  async cutover(jobId: string, waitMs: number): Promise<JobView> {
    await this.starting.get(jobId);
    const rec = this.jobs.get(jobId);
    if (!rec) throw new ArrayError('NO_SUCH_OBJECT', `job ${jobId} not found`);
    const runner = this.runners.get(jobId);
    switch (rec.state) {
      case 'DONE':
        return this.view(rec);
      case 'CANCELLED':
      case 'FAILED':
        throw new ArrayError('WRONG_STATE', `job ${jobId} is ${rec.state}; start a new job`);
      case 'COPYING':
        throw new ArrayError('WRONG_STATE', `job ${jobId} is still COPYING (phase 1 not done); wait for phase1_done`);
      case 'SYNCING':
        if (!runner || this.closing) throw new ArrayError('BUSY', 'the array is shutting down; retry');
        runner.cutover(() => this.runCutover(runner));
        break;
      case 'CUTTING_OVER':
        // Past the commit point with no attempt running (it failed there): this call rolls it forward.
        if (runner && rec.switched && !this.closing) runner.cutover(() => this.finish(runner));
        break;
    }
    const running = runner?.runningCutover;
    if (running) await (waitMs > 0 ? Promise.race([running, sleep(waitMs)]) : running);
    return this.view(rec);
  }

  private async runCutover(runner: JobRunner): Promise<void> {
    const share = this.deps.shares.get(runner.rec.spec.shareId);
    try {
      if (!share) throw new Error(`share ${runner.rec.spec.shareId} of job ${runner.rec.jobId} is missing`);
      await runCutover(runner, {
        gate: this.deps.gates.gate(share.shareId),
        share,
        store: this.deps.store,
        blocks: this.deps.blocks,
        faults: this.deps.faults,
        log: this.deps.log,
        pools: this.deps.pools,
        closing: this.closed.signal,
        finish: () => this.finish(runner),
        events: this.events,
      });
    } catch (err) {
      if (runner.rec.switched) {
        // Past the commit point we roll forward: a repeated CutoverJob or a restart finishes it. The state stays
        // CUTTING_OVER, so no transition tells a watcher that this attempt has ended: say so, for its caller to call again.
        this.deps.log.error({ err, job: runner.rec.jobId }, 'cutover could not finish after its commit point; will retry');
        this.events.changed(runner.rec);
        return;
      }
      await this.fail(runner, err);
    }
  }

  /** CancelJob. */
  cancel(jobId: string): Promise<JobView> {
    return this.deps.lock.run(async () => {
      // A job still starting is either written or undone first (that needs no lock); then it is cancelled or remembered as cancelled.
      await this.starting.get(jobId);
      const rec = this.jobs.get(jobId);
      if (!rec) return this.view(await this.tombstone(jobId));
      switch (rec.state) {
        case 'CANCELLED':
        case 'FAILED':
          return this.view(rec);
        case 'DONE':
          throw new ArrayError('WRONG_STATE', `job ${jobId} is DONE: the share lives at its destination; nothing to cancel`);
        case 'CUTTING_OVER':
          throw new ArrayError('WRONG_STATE', `job ${jobId} is CUTTING_OVER; wait for DONE or SYNCING`);
        default:
          break;
      }
      const runner = this.runners.get(jobId);
      if (!runner) throw new ArrayError('BUSY', 'the array is shutting down; retry');
      await runner.stopForCancel();
      if ((rec.state as JobState) === 'FAILED') return this.view(rec); // The copy failed while we stopped it; it cleaned up.
      await this.discard(runner, 'CANCELLED', null);
      this.deps.log.info({ job: jobId }, 'job cancelled');
      return this.view(rec);
    });
  }

  private async tombstone(jobId: string): Promise<JobRecord> {
    const rec = tombstoneRecord(jobId, { blockSizeBytes: this.deps.config.blockSizeBytes, chunkSizeBytes: this.deps.config.chunkSizeBytes });
    this.jobs.set(jobId, rec);
    this.deps.pools.noteJob(jobId, rec);
    await this.deps.store.put(keys.job(jobId), rec, { sync: true });
    this.deps.log.info({ job: jobId }, 'cancel of an unknown job: remembered as cancelled');
    return rec;
  }

  /**
   * Stops every job's loop (their checkpoints stay; they resume on the next
   * open) and waits for running cutovers: one still catching up stops there
   * (the next open rolls it back to SYNCING), a freeze runs to its end.
   */
  async close(): Promise<void> {
    this.closing = true;
    this.closed.abort();
    this.events.close();
    // Starts under way end first, so that their runners are among those stopped below.
    await Promise.all(this.starting.values());
    for (const runner of this.runners.values()) await runner.runningCutover?.catch(() => undefined);
    await Promise.all([...this.runners.values()].map((r) => r.stopLoop()));
    await Promise.all([...this.failing].map((p) => p.catch(() => undefined)));
  }

  // ---------------------------------------------------- the write hooks

  /** WriteObserver: a writable=false job makes its share read-only until the switch. */
  checkWritable(share: ShareRecord): void {
    const rec = this.activeJob(share);
    if (rec && !rec.spec.writable && !rec.switched) {
      throw new ArrayError(
        'WRONG_STATE',
        `share ${share.shareId} is read-only while migration job ${rec.jobId} moves it (writable=false); wait for the job to finish or cancel it`,
      );
    }
  }

  /** WriteObserver: a write landed; the job copying this share marks the blocks dirty. */
  written(share: ShareRecord, offset: number, length: number): void {
    const runner = share.jobId ? this.runners.get(share.jobId) : undefined;
    if (runner && !runner.rec.switched && runner.rec.source.fileId === share.fileId) runner.noteWrite(offset, length);
  }

  // ------------------------------------------------------------ endings

  /** After the commit point: delete the source, release its space, DONE. */
  private async finish(runner: JobRunner): Promise<void> {
    const { rec } = runner;
    await this.deps.blocks.remove(rec.source.fileId);
    transition(rec, 'DONE', this.events);
    this.deps.pools.noteJob(rec.jobId, rec);
    rec.pendingDelete = '';
    this.runners.delete(rec.jobId);
    const share = this.deps.shares.get(rec.spec.shareId);
    if (share && share.jobId === rec.jobId) share.jobId = '';
    await this.persist(rec, share);
    this.deps.log.info({ job: rec.jobId }, 'job done: source deleted');
  }

  /** A failure before the commit point: discard the destination; the source stays as it was. */
  private fail(runner: JobRunner, err: unknown): Promise<void> {
    const { rec } = runner;
    if (!ACTIVE_JOB_STATES.has(rec.state) || rec.switched) return Promise.resolve();
    this.deps.log.error({ err, job: rec.jobId }, 'job failed; discarding the destination');
    // The runner leaves `runners` at once; close() waits for the discard here instead.
    const discarding: Promise<void> = this.discard(runner, 'FAILED', { code: 'INTERNAL', message: `copy failed: ${(err as Error)?.message ?? String(err)}` }).finally(() =>
      this.failing.delete(discarding),
    );
    this.failing.add(discarding);
    return discarding;
  }

  private async discard(runner: JobRunner, state: 'CANCELLED' | 'FAILED', error: JobRecord['error']): Promise<void> {
    const { rec } = runner;
    transition(rec, state, this.events);
    this.deps.pools.noteJob(rec.jobId, rec);
    rec.error = error;
    rec.pendingDelete = rec.dest.fileId;
    this.runners.delete(rec.jobId);
    const share = this.deps.shares.get(rec.spec.shareId);
    if (share && share.jobId === rec.jobId) share.jobId = '';
    await this.persist(rec, share);
    await this.deps.blocks.remove(rec.dest.fileId);
    rec.pendingDelete = '';
    await this.deps.store.put(keys.job(rec.jobId), rec);
  }

  private persist(rec: JobRecord, share: ShareRecord | undefined): Promise<void> {
    const ops = [{ key: keys.job(rec.jobId), value: rec as unknown }];
    if (share) ops.push({ key: keys.share(share.shareId), value: share });
    return this.deps.store.write(ops, { sync: true });
  }

  private view(rec: JobRecord): JobView {
    const runner = this.runners.get(rec.jobId);
    const frozen = runner ? this.deps.gates.gate(rec.spec.shareId).frozen : false;
    return { record: rec, progress: runner ? runner.progress() : finishedProgress(rec), frozen };
  }
}
