/**
 * The jobs' change stream (WatchJobs): `transition` (job-record.ts), the one
 * writer of a job's state, tells JobEvents of every move, and each open
 * watch queues the job for its reader.
 *
 * A reader that is slow costs memory per job, not per change: a watch keeps
 * at most one entry per job id, the job's record itself, so a job that
 * changes again before it is sent is sent once, with its state at the time
 * of sending (latest wins). The array keeps every job's record anyway; a
 * watch adds one map entry per job with an unsent change.
 */
import type { JobRecord, TransitionObserver } from './job-record.ts';

/** One reader's queue of changed jobs. */
export class JobWatch {
  private readonly backend: string;
  /** Jobs changed and not yet taken, in the order they first changed since. */
  private readonly pending = new Map<string, JobRecord>();
  private wake: (() => void) | null = null;
  private closed = false;

  /** `backend`: only jobs whose source is on it; '' for every job. */
  constructor(backend: string, closed = false) {
    this.backend = backend;
    this.closed = closed;
  }

  /** Jobs with a change not taken yet (at most one entry per job). */
  get backlog(): number {
    return this.pending.size;
  }

  /** Queues a changed job, unless it is queued already (then its record, read when it is taken, has the latest state). */
  offer(rec: JobRecord): void {
    if (this.closed || (this.backend !== '' && rec.source.backend !== this.backend)) return;
    if (!this.pending.has(rec.jobId)) this.pending.set(rec.jobId, rec);
    this.wake?.();
  }

  /** The next changed job, waiting for one; null once the watch is closed. */
  async next(): Promise<JobRecord | null> {
    while (!this.closed) {
      const first = this.pending.entries().next();
      if (!first.done) {
        const [jobId, rec] = first.value;
        this.pending.delete(jobId);
        return rec;
      }
      await new Promise<void>((resolve) => (this.wake = resolve));
      this.wake = null;
    }
    return null;
  }

  /** Ends the watch: `next` answers null, and what was queued is dropped. Idempotent. */
  close(): void {
    this.closed = true;
    this.pending.clear();
    this.wake?.();
  }
}

/** Every open watch of the array. */
export class JobEvents implements TransitionObserver {
  private readonly watches = new Set<JobWatch>();
  private closed = false;

  /** Opens a watch of the jobs whose source is on `backend` ('' for all); one opened after close is closed already. */
  watch(backend: string): JobWatch {
    const watch = new JobWatch(backend, this.closed);
    if (!this.closed) this.watches.add(watch);
    return watch;
  }

  /** Stops telling `watch` (and closes it). */
  unwatch(watch: JobWatch): void {
    watch.close();
    this.watches.delete(watch);
  }

  /** TransitionObserver: a job's state changed (called by `transition`). */
  transitioned(rec: JobRecord): void {
    for (const watch of this.watches) watch.offer(rec);
  }

  /** A job changed in a way its state does not show (a cutover that failed past its commit point, to be asked again). */
  changed(rec: JobRecord): void {
    this.transitioned(rec);
  }

  /** Ends every watch (the array is closing); later watches are closed at once. */
  close(): void {
    this.closed = true;
    for (const watch of this.watches) watch.close();
    this.watches.clear();
  }
}
