/**
 * A migration's runner: the loop that makes one driver call at a time for
 * it (start, then continue until phase 1 is done and on to keep the
 * destination warm, complete or cancel on request, cancel again to clean up
 * after an error) and sleeps between calls for as long as the driver
 * suggests, the poll policy allows, or the backoff after a failure says.
 *
 * The runner decides what each answer means for the migration; the engine
 * owns the records, and the runner changes one only through the engine's
 * `transition` and `persist` (RunnerHost). Persist, then act: the runner
 * waits for the record's pending write before every driver call.
 */
import { FerryError } from '../plugins/api/index.ts';
import type { CancelResult, CompleteResult, ContinueResult, StartResult } from '../plugins/api/index.ts';
import type { GuardedDriver } from '../host/guard.ts';
import { backoffDelay, jittered, pollDelay } from '../host/poll.ts';
import type { Log } from '../lib/log.ts';
import { foldProgress, sameProgress, TERMINAL_STATES, type MigrationOnlyCode, type MigrationRecord, type RecordedError, type State } from './migration.ts';
import type { EngineOptions } from './options.ts';
import type { Semaphore } from '../lib/semaphore.ts';

/** What drives a migration: its source backend's guarded driver (driver path) or ferryd's mover (host path). */
export type MigrationDriver = Pick<GuardedDriver, 'plugin' | 'start' | 'continue' | 'complete' | 'cancel' | 'progress'>;

/** The driver call a migration needs next. `cleanup` is a cancel after an error. */
export type Step = 'start' | 'continue' | 'complete' | 'cancel' | 'cleanup';

/** A driver call and its answer, typed by the call. */
type Outcome =
  | { step: 'start'; result: StartResult }
  | { step: 'continue'; result: ContinueResult }
  | { step: 'complete'; result: CompleteResult }
  | { step: 'cancel' | 'cleanup'; result: CancelResult };

/** The next driver call a migration needs, or null if none. */
export function stepFor(record: MigrationRecord): Step | null {
  switch (record.state) {
    case 'STARTING':
      return 'start';
    case 'IN_PROGRESS':
    case 'PHASE1_DONE':
      return 'continue';
    case 'COMPLETING':
      return 'complete';
    case 'CANCELLING':
      return 'cancel';
    case 'ERROR':
      return record.cleanupPending ? 'cleanup' : null;
    default:
      return null;
  }
}

/** What a runner needs from the engine that owns the records. */
export interface RunnerHost {
  readonly options: EngineOptions;
  /** True once the engine is stopping: the runner makes no further call. */
  readonly stopping: boolean;
  /** Aborts every driver call in flight at the end of the shutdown grace period. */
  readonly signal: AbortSignal;
  /** All driver calls, and the share of them that starts may hold. */
  readonly slots: { calls: Semaphore; starts: Semaphore };
  record(id: string): MigrationRecord | undefined;
  /** The record as last written (what callers see). */
  written(id: string): MigrationRecord | undefined;
  /** The record's write in flight, if any: the runner waits for it before acting. */
  pendingWrite(id: string): Promise<void> | undefined;
  /** What drives the migration; throws UNAVAILABLE when its source backend has no driver. */
  driverFor(record: MigrationRecord): MigrationDriver;
  transition(record: MigrationRecord, to: State, patch?: Partial<MigrationRecord>): void;
  persist(record: MigrationRecord): Promise<void>;
  /** Whether the migration's driver has its change feed open (host/changes.ts). */
  feedLive(record: MigrationRecord): boolean;
  /** A migration of this backend became stuck, or answered again. */
  stuckChanged(backend: string): void;
}

/** One migration's runner. The engine makes one per live migration and drops it when `done` settles. */
export class Runner {
  /** Resolves the current sleep early. */
  wake?: () => void;
  /** A change arrived while a call was out: the next sleep is cut to the shortest. */
  private poked = false;
  private pokeTimer?: NodeJS.Timeout;
  /** Consecutive failed driver calls, for backoff. */
  private failures = 0;
  /** When the current run of failed calls began (undefined after a success). */
  private failingSince?: number;
  /** When progress last moved (for the stall timeout); the runner's start, until it first does. */
  private lastAdvanceAt = Date.now();
  /** When progress alone was last written; 0 at first, so the first poll of a resumed migration shows its progress at once. */
  private lastPersistAt = 0;
  private cleanupAttempts = 0;
  /** Settles when the loop ends (the migration needs no call, or the engine stops). */
  readonly done: Promise<void>;

  constructor(
    private readonly host: RunnerHost,
    readonly id: string,
    readonly log: Log,
  ) {
    this.done = this.run().catch((err: unknown) => this.log.error({ err }, 'runner stopped by an unexpected failure; the migration resumes at the next start'));
  }

  /** When progress last moved, as the stall timeout sees it (ms since the epoch). */
  get lastProgressAt(): number {
    return this.lastAdvanceAt;
  }

  private async run(): Promise<void> {
    // Let the caller finish its own bookkeeping before the first call.
    await Promise.resolve();
    const host = this.host;
    while (!host.stopping) {
      const record = host.record(this.id);
      if (!record) return;
      const step = stepFor(record);
      if (!step) return;
      // Persist, then act: the driver is never called ahead of what is on disk.
      await host.pendingWrite(this.id);
      if (host.stopping) return;
      let delay: number;
      // A change from now on may postdate what this call answers.
      this.poked = false;
      try {
        delay = await this.apply(record, await this.call(record, step));
        this.failures = 0;
        this.failingSince = undefined;
      } catch (err) {
        delay = await this.failed(record, step, err);
      }
      // (Not after a failure: its backoff stands, whatever the feed says.)
      if (this.poked && this.failures === 0) delay = Math.min(delay, host.options.minPollMs);
      if (delay > 0 && !host.stopping && stepFor(record)) await this.sleep(delay);
    }
  }

  /**
   * Something changed for the migration (its driver's change feed said so):
   * call soon. A sleeping runner calls after the shortest poll delay; a
   * runner whose call is out sleeps no longer than that after it, since the
   * answer may predate the change. Never more than one call per
   * `minPollMs`, however often the driver says it.
   */
  poke(): void {
    this.poked = true;
    // Not at once: a feed that repeats itself must not turn the poll into a busy loop.
    this.pokeTimer ??= setTimeout(() => {
      this.pokeTimer = undefined;
      this.wake?.();
    }, this.host.options.minPollMs);
  }

  private sleep(ms: number): Promise<void> {
    return new Promise<void>((resolve) => {
      const done = () => {
        clearTimeout(timer);
        if (this.wake === done) this.wake = undefined;
        resolve();
      };
      const timer = setTimeout(done, ms);
      this.wake = done;
    });
  }

  /** Makes one driver call, within the engine's call slots. */
  private async call(record: MigrationRecord, step: Step): Promise<Outcome> {
    const { host } = this;
    const driver = host.driverFor(record);
    const call = { migration: record.spec, checkpoint: record.checkpoint, log: this.log };
    const starting = step === 'start';
    if (starting) await host.slots.starts.acquire();
    await host.slots.calls.acquire();
    try {
      switch (step) {
        case 'start':
          return { step, result: await driver.start(call, host.signal) };
        case 'continue':
          return { step, result: await driver.continue(call, host.signal) };
        case 'complete': {
          const result = await driver.complete(call, host.signal);
          if (result.status === 'in_progress') {
            // continue is not called during a cutover: ask for progress so watchers see the cutover move.
            const progress = await driver.progress({ ...call, checkpoint: result.checkpoint }, host.signal).catch(() => undefined);
            if (progress) this.fold(record, progress, true);
          }
          return { step, result };
        }
        case 'cancel':
        case 'cleanup':
          return { step, result: await driver.cancel(call, host.signal) };
        default:
          return step satisfies never;
      }
    } finally {
      host.slots.calls.release();
      if (starting) host.slots.starts.release();
    }
  }

  /** Applies a driver's answer to the record. Returns the delay before the next call. */
  private async apply(record: MigrationRecord, outcome: Outcome): Promise<number> {
    const { host } = this;
    if (record.stuck) this.unstick(record);
    const now = Date.now();
    switch (outcome.step) {
      case 'start': {
        record.checkpoint = outcome.result.checkpoint;
        if (record.state === 'STARTING') host.transition(record, 'IN_PROGRESS');
        await host.persist(record);
        this.lastAdvanceAt = now;
        return 0;
      }
      case 'continue': {
        const r = outcome.result;
        const before = record.progress;
        const driverBefore = record.driverCopiedBytes ?? before.copiedBytes;
        const checkpointChanged = JSON.stringify(r.checkpoint) !== JSON.stringify(record.checkpoint);
        const stateBefore = record.state;
        // Once phase 1 was done it stays done for reporting, whatever a later poll says.
        const phase1Done = (r.phase1Done || record.phase1DoneAt !== undefined) && record.state !== 'CANCELLING';
        this.fold(record, r.progress, phase1Done);
        record.checkpoint = r.checkpoint;
        if (r.progress.copiedBytes > driverBefore || r.progress.iteration > before.iteration || r.progress.dirtyBytes < before.dirtyBytes || r.phase1Done) {
          this.lastAdvanceAt = now;
        }
        // A complete or cancel may have arrived while the call was out: then only the checkpoint and progress are kept.
        if (record.state === 'IN_PROGRESS' && r.phase1Done) host.transition(record, 'PHASE1_DONE');
        const { stallTimeoutMs } = host.options;
        if (stallTimeoutMs > 0 && record.state === 'IN_PROGRESS' && now - this.lastAdvanceAt > stallTimeoutMs) {
          this.fail(record, { code: 'STALLED', message: `phase 1 made no progress for ${Math.round((now - this.lastAdvanceAt) / 1000)} s (stall timeout ${stallTimeoutMs} ms); the source is untouched` });
        }
        // Callers see only what is written (so nothing they saw is lost in a crash): progress alone is written, and shown, at most every
        // progressPersistMs, and only when it moved since it was last written (a parked migration's polls mostly report what the last one did).
        const changed = record.state !== stateBefore || checkpointChanged;
        if (changed || (now - this.lastPersistAt >= host.options.progressPersistMs && !sameProgress(host.written(this.id)?.progress, record.progress))) {
          record.updatedAt = now;
          this.lastPersistAt = now;
          await host.persist(record);
        }
        return this.continueDelay(record, pollDelay(r.nextPollMs, host.options));
      }
      case 'complete': {
        const r = outcome.result;
        record.checkpoint = r.checkpoint;
        if (r.status === 'done') {
          host.transition(record, 'SUCCESS', { cutover: r.cutover });
        } else if (r.status === 'aborted') {
          this.log.warn({ reason: r.reason }, 'cutover ran past its window and rolled back');
          host.transition(record, 'PHASE1_DONE', { lastCutoverAbort: { code: 'CUTOVER_WINDOW_EXCEEDED' satisfies MigrationOnlyCode, message: r.reason } });
        }
        await host.persist(record);
        return r.status === 'in_progress' ? pollDelay(r.nextPollMs, host.options) : 0;
      }
      case 'cancel':
      case 'cleanup': {
        const r = outcome.result;
        record.checkpoint = r.checkpoint;
        if (r.done && outcome.step === 'cancel') host.transition(record, 'CANCELLED');
        if (r.done && outcome.step === 'cleanup') {
          record.cleanupPending = false;
          this.log.info('cleanup after error done');
        }
        record.updatedAt = now;
        await host.persist(record);
        return r.done ? 0 : pollDelay(r.nextPollMs, host.options);
      }
    }
  }

  /**
   * The delay before the next continue. With the driver's change feed open,
   * the feed tells of what matters (phase 1 done, a failed job) and the poll
   * is only the fallback: a copy is polled no more often than its progress
   * is shown (progressPersistMs), a parked migration every parkedPollMs.
   * Without the feed, the driver's suggestion stands.
   */
  private continueDelay(record: MigrationRecord, delay: number): number {
    const { options } = this.host;
    if (!this.host.feedLive(record)) return delay;
    if (record.state === 'PHASE1_DONE') return Math.max(delay, options.parkedPollMs);
    if (record.state === 'IN_PROGRESS') return Math.max(delay, options.progressPersistMs);
    return delay;
  }

  /** Folds a driver's progress into the record (copied bytes never go back: foldProgress). */
  private fold(record: MigrationRecord, progress: Parameters<typeof foldProgress>[2], phase1Done: boolean): void {
    const folded = foldProgress(record.progress, record.driverCopiedBytes, progress, phase1Done);
    record.progress = folded.progress;
    record.driverCopiedBytes = folded.driverCopiedBytes;
  }

  /** Handles a failed driver call. Returns the delay before the next try (0 when the migration ended). */
  private async failed(record: MigrationRecord, step: Step, err: unknown): Promise<number> {
    const { host } = this;
    const { options } = host;
    const error = err instanceof FerryError ? err : new FerryError('INTERNAL', `engine failure in ${step}: ${String(err)}`);
    if (!(err instanceof FerryError) || error.code === 'INTERNAL') this.log.error({ err, step }, 'unexpected failure');
    this.failures++;
    const now = Date.now();
    this.failingSince ??= now;
    const delay = jittered(backoffDelay(this.failures, options.backoffInitialMs, options.backoffMaxMs));
    this.log.warn({ step, code: error.code, error: error.message, failures: this.failures, retryInMs: error.retryable ? delay : undefined }, 'driver call failed');

    if (step === 'cleanup') {
      if (!error.retryable) {
        // The driver answered: there is nothing it will roll back (for example, its cutover had committed).
        this.log.warn({ code: error.code, error: error.message }, 'driver refused the clean-up after error; nothing was rolled back');
        record.cleanupPending = false;
        await host.persist(record);
        return 0;
      }
      if (++this.cleanupAttempts >= options.cleanupAttempts) {
        this.log.error({ attempts: this.cleanupAttempts }, 'giving up cleanup after error; the destination may hold a partial copy');
        record.cleanupPending = false;
        await host.persist(record);
        return 0;
      }
      return delay;
    }
    if (error.retryable) {
      if ((step === 'complete' || step === 'cancel') && !record.stuck && now - this.failingSince >= options.unresponsiveAfterMs) {
        await this.markStuck(record, step, error, now - this.failingSince);
      }
      const stalling = record.state === 'STARTING' || record.state === 'IN_PROGRESS';
      if (stalling && options.stallTimeoutMs > 0 && now - this.lastAdvanceAt > options.stallTimeoutMs) {
        this.fail(record, { code: 'STALLED', message: `no progress for ${Math.round((now - this.lastAdvanceAt) / 1000)} s; last error: ${error.message}` });
        await host.persist(record);
        return 0;
      }
      return delay;
    }
    // A complete or cancel arrived while the failed call was out: go on to that instead.
    if (stepFor(record) !== step) return 0;
    // Not retryable: the migration ends in ERROR, and the driver's cancel is asked to clean up. After a
    // failed complete that is safe too: a driver whose cutover had committed refuses that cancel (see
    // cancel in docs/writing-a-driver.md), and the clean-up stops there.
    this.fail(record, { code: error.code, message: error.message });
    await host.persist(record);
    return 0;
  }

  /** Moves a migration to ERROR; its destination is then cleaned up by cancel calls (step `cleanup`). */
  private fail(record: MigrationRecord, error: RecordedError): void {
    if (TERMINAL_STATES.has(record.state)) return;
    this.host.transition(record, 'ERROR', { error, cleanupPending: true });
  }

  /**
   * A cutover or cancel whose driver has stopped answering: say what is
   * unknown and what to check, and tell the backend's health. The retries go on.
   */
  private async markStuck(record: MigrationRecord, step: 'complete' | 'cancel', error: FerryError, silentMs: number): Promise<void> {
    const { source, destination } = record.spec;
    const shareId = source.shareId;
    const driver = (() => {
      try {
        return this.host.driverFor(record).plugin.name;
      } catch {
        return source.backend;
      }
    })();
    const silent = `driver ${driver} (backend ${source.backend}) has not answered ${step} for ${Math.round(silentMs / 1000)} s (last: ${error.message})`;
    const retrying = `ferryd keeps retrying ${step} every ${Math.round(this.host.options.backoffMaxMs / 1000)} s or less; once the driver answers, the migration resumes from its checkpoint`;
    record.stuck =
      step === 'complete'
        ? {
            code: 'CUTOVER_OUTCOME_UNKNOWN' satisfies MigrationOnlyCode,
            message: `${silent}. Whether the cutover committed is unknown: check on the array whether share ${shareId} lives on ${destination.backend}#${destination.pool} or still on ${source.backend}. ${retrying}`,
          }
        : {
            code: 'CANCEL_OUTCOME_UNKNOWN' satisfies MigrationOnlyCode,
            message: `${silent}. The source share ${source.backend}/${shareId} is untouched and stays in use; whether the destination on ${destination.backend}#${destination.pool} was removed is unknown: check the array for leftovers. ${retrying}`,
          };
    record.updatedAt = Date.now();
    this.log.error({ step, code: record.stuck.code, silentMs }, 'driver is not answering; the migration is stuck until it does');
    await this.host.persist(record);
    this.host.stuckChanged(source.backend);
  }

  /** The driver answered a stuck migration again; `apply` persists what it answered. */
  private unstick(record: MigrationRecord): void {
    this.log.info({ code: record.stuck?.code }, 'driver answered again; the migration is no longer stuck');
    delete record.stuck;
    this.host.stuckChanged(record.spec.source.backend);
  }
}
