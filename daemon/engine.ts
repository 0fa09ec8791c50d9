/**
 * The engine: the migration state machine and the scheduler that drives
 * asynchronous drivers (DESIGN.md option C).
 *
 * Each live migration has one runner, a loop that makes one driver call at a
 * time (start, then continue until phase 1 is done and on to keep the
 * destination warm, complete or cancel on request) and sleeps between calls
 * for as long as the driver suggests. Requests from the API only change the
 * record and wake the runner; they never wait on a driver call.
 *
 * Persist, then act: a runner waits for the record (state and the driver's
 * checkpoint together) to be in LevelDB before it makes the next driver call,
 * and the API answers only once its change is in LevelDB. So a `kill -9` at
 * any instant loses nothing and every migration resumes from the state it
 * was last seen in.
 */
import { createHash } from 'node:crypto';
import { FerryError, type Checkpoint, type CompleteResult, type MigrationSpec } from '../plugins/api/index.ts';
import { admit, admitted } from '../host/admission.ts';
import type { GuardedDriver } from '../host/guard.ts';
import { newMigrationId, observeMigrationId } from '../host/ids.ts';
import type { BackendEntry } from '../host/plugins.ts';
import { DEFAULT_POLL_POLICY, pollDelay, type PollPolicy } from '../host/poll.ts';
import type { Log } from '../lib/log.ts';
import {
  CANCELLABLE_STATES,
  TERMINAL_STATES,
  canTransition,
  emptyProgress,
  finalProgress,
  toProgress,
  type MigrationOnlyCode,
  type MigrationRecord,
  type RecordedError,
  type State,
} from './migration.ts';
import type { Store } from './store.ts';

/** Engine tuning. Every field has a default (DEFAULT_ENGINE_OPTIONS). The poll policy's fields are the host's (host/poll.ts). */
export interface EngineOptions extends PollPolicy {
  /** Driver calls in flight at once, across all migrations. */
  maxConcurrentCalls: number;
  /** STARTING or IN_PROGRESS with no progress for this long becomes ERROR (STALLED). 0 turns it off. */
  stallTimeoutMs: number;
  /** The cutover window when the request gives none. */
  defaultMaxDowntimeMs: number;
  /** Retry delays after a failed driver call: doubling from initial, capped at max. */
  backoffInitialMs: number;
  backoffMaxMs: number;
  /** Progress-only changes are written to LevelDB at most this often (state and checkpoint changes: always). */
  progressPersistMs: number;
  /** How many times cleanup after an error is tried before it is given up (and logged). */
  cleanupAttempts: number;
  /**
   * A cutover or cancel whose driver has not answered (every call timed out
   * or was UNAVAILABLE) for this long is marked `stuck`, and its backend
   * NOT_SERVING. The retries go on: a driver that answers again resumes it.
   */
  unresponsiveAfterMs: number;
}

/** What the engine tells the rest of the daemon. */
export interface EngineHooks {
  /** A migration of this backend became stuck, or answered again. */
  stuckChanged?(backend: string): void;
}

/** Defaults: notice phase 1 within tens of ms, give up on a silent copy after 5 minutes. */
export const DEFAULT_ENGINE_OPTIONS: EngineOptions = {
  maxConcurrentCalls: 64,
  ...DEFAULT_POLL_POLICY,
  stallTimeoutMs: 300_000,
  defaultMaxDowntimeMs: 1_000,
  backoffInitialMs: 100,
  backoffMaxMs: 10_000,
  progressPersistMs: 1_000,
  cleanupAttempts: 20,
  unresponsiveAfterMs: 600_000,
};

/** What StartMigration asks for, validated. */
export type StartInput = Omit<MigrationSpec, 'id'> & { requestId: string };

/** A change pushed to watchers; `null` means the engine is shutting down. */
export type WatchListener = (record: MigrationRecord | null) => void;

/** Filters for `list`. */
export interface ListFilter {
  state?: State;
  backend?: string;
  /** Return migrations with ids greater than this. */
  after?: string;
  limit: number;
}

type Step = 'start' | 'continue' | 'complete' | 'cancel' | 'cleanup';

interface Runner {
  log: Log;
  /** Resolves the current sleep early. */
  wake?: () => void;
  /** Consecutive failed driver calls, for backoff. */
  failures: number;
  /** When the current run of failed calls began (undefined after a success). */
  failingSince?: number;
  /** When progress last moved (for the stall timeout). */
  lastAdvanceAt: number;
  lastPersistAt: number;
  cleanupAttempts: number;
  done: Promise<void>;
}

/** A counting semaphore for driver calls. */
class Semaphore {
  private waiting: (() => void)[] = [];
  constructor(private free: number) {}
  async acquire(): Promise<void> {
    if (this.free > 0) {
      this.free--;
      return;
    }
    await new Promise<void>((resolve) => this.waiting.push(resolve));
  }
  release(): void {
    const next = this.waiting.shift();
    if (next) next();
    else this.free++;
  }
}

const shareKey = (backend: string, shareId: string) => `${backend}\u0000${shareId}`;

/** A hash of everything the caller asked for, to tell a retry from a conflicting reuse of a request id. */
export function fingerprint(input: StartInput): string {
  return createHash('sha256').update(canonicalJson(withoutRequestId(input))).digest('hex');
}

/** JSON with object keys sorted at every level, so equal values always hash alike. */
function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  if (typeof value === 'object' && value !== null) {
    const entries = Object.entries(value).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(',')}}`;
  }
  return JSON.stringify(value);
}

const STATE_ADVICE: Partial<Record<State, string>> = {
  STARTING: 'phase 1 has not begun; wait for PHASE1_DONE (WatchMigration)',
  IN_PROGRESS: 'phase 1 is still copying; wait for PHASE1_DONE (WatchMigration)',
  CANCELLING: 'it is being cancelled; start a new migration',
  CANCELLED: 'it was cancelled; start a new migration',
  ERROR: 'it failed; see its error and start a new migration',
  // Only a cancel is refused in COMPLETING; the attempt may still abort back to PHASE1_DONE, so the advice must not promise SUCCESS.
  COMPLETING: 'a cutover attempt is running and cannot be cancelled; wait for it to end: in SUCCESS, or, if it aborts, back in PHASE1_DONE, where CancelMigration is accepted',
  SUCCESS: 'it has already succeeded',
};

/** The migration engine. One per daemon; owns the store's records while it runs. */
export class Engine {
  private readonly records = new Map<string, MigrationRecord>();
  /** Active (non-terminal) migration per share. */
  private readonly active = new Map<string, string>();
  /** Migration per request id. */
  private readonly requests = new Map<string, string>();
  private readonly runners = new Map<string, Runner>();
  private readonly writes = new Map<string, Promise<void>>();
  private readonly watchers = new Map<string, Set<WatchListener>>();
  private readonly semaphore: Semaphore;
  /**
   * Starts hold at most a quarter of the driver-call slots. An array may
   * create destinations one at a time, so a burst of starts would otherwise
   * fill every slot and keep the migrations already copying from being
   * polled: with 1,000 starts at once, phase 1 was noticed seconds late.
   */
  private readonly startSlots: Semaphore;
  private readonly shutdown = new AbortController();
  /**
   * Starts under way (between their first check and their first write), by
   * share. A second start of the same share waits for the first to be
   * decided, so it is answered from what the first did (ALREADY_EXISTS, or
   * the same migration for the same request id), never from a driver check
   * that raced the first one's job.
   */
  private readonly starting = new Map<string, Promise<unknown>>();
  private stopping = false;

  constructor(
    private readonly store: Store,
    private readonly backends: ReadonlyMap<string, BackendEntry>,
    private readonly log: Log,
    readonly options: EngineOptions = DEFAULT_ENGINE_OPTIONS,
    private readonly hooks: EngineHooks = {},
  ) {
    this.semaphore = new Semaphore(options.maxConcurrentCalls);
    this.startSlots = new Semaphore(Math.max(1, Math.floor(options.maxConcurrentCalls / 4)));
  }

  /** Loads every migration and resumes each one where it stood. */
  async start(): Promise<void> {
    const records = await this.store.loadMigrations();
    for (const record of records) {
      observeMigrationId(record.id);
      this.adopt(record);
    }
    let resumed = 0;
    for (const record of records) {
      if (this.stepFor(record)) {
        this.runner(record.id).log.info({ state: record.state }, 'resuming migration');
        resumed++;
      }
    }
    this.log.info({ migrations: records.length, resumed }, 'engine started');
  }

  /** Stops every runner, letting driver calls in flight finish within `graceMs`, then aborting them. */
  async stop(graceMs: number): Promise<void> {
    this.stopping = true;
    for (const runner of this.runners.values()) runner.wake?.();
    const all = Promise.all([...this.runners.values()].map((r) => r.done));
    let timer: NodeJS.Timeout | undefined;
    const graceOver = new Promise<'timeout'>((resolve) => (timer = setTimeout(() => resolve('timeout'), graceMs)));
    if ((await Promise.race([all, graceOver])) === 'timeout') {
      this.log.warn({ graceMs }, 'driver calls still running after the grace period; aborting them');
      this.shutdown.abort(new FerryError('UNAVAILABLE', 'the daemon is shutting down'));
    }
    clearTimeout(timer);
    await Promise.all(this.writes.values());
    for (const set of this.watchers.values()) for (const listener of set) listener(null);
    this.watchers.clear();
  }

  /** Validates and persists a new migration, and sets it going. Returns it in STARTING. */
  async startMigration(input: StartInput): Promise<MigrationRecord> {
    const key = shareKey(input.source.backend, input.source.shareId);
    for (let other = this.starting.get(key); other; other = this.starting.get(key)) await other.catch(() => undefined);
    const started = this.admitAndCreate(input);
    this.starting.set(key, started);
    try {
      return await started;
    } finally {
      if (this.starting.get(key) === started) this.starting.delete(key);
    }
  }

  /** Checks a start against the request ids, the share, the driver and the pool, then persists it. */
  private async admitAndCreate(input: StartInput): Promise<MigrationRecord> {
    this.assertRunning();
    const fp = fingerprint(input);
    const retried = this.byRequestId(input.requestId, fp);
    if (retried) return retried;

    const { source, destination } = input;
    this.assertShareFree(source.backend, source.shareId);
    const id = newMigrationId();
    const spec: MigrationSpec = { ...withoutRequestId(input), id };
    const compat = admitted(await admit(this.backends, spec, this.log.child({ migration: id }), 'first'));

    // The checks above awaited the driver: a concurrent start of another share may have taken the request id.
    const raced = this.byRequestId(input.requestId, fp);
    if (raced) return raced;

    const now = Date.now();
    const record: MigrationRecord = {
      v: 1,
      id,
      spec,
      requestId: input.requestId,
      fingerprint: fp,
      state: 'STARTING',
      progress: { ...emptyProgress(), totalBytes: compat.shareSizeBytes, remainingBytes: compat.shareSizeBytes },
      checkpoint: null,
      createdAt: now,
      updatedAt: now,
    };
    this.adopt(record);
    try {
      await this.persist(record);
    } catch (err) {
      this.forget(record);
      throw err;
    }
    const runner = this.runner(id);
    runner.log.info({ source, destination, requestId: input.requestId || undefined }, 'migration started');
    return record;
  }

  /** Asks for the cutover. Idempotent. */
  async complete(id: string): Promise<MigrationRecord> {
    const record = this.get(id);
    if (record.state === 'COMPLETING' || record.state === 'SUCCESS') return record;
    if (record.state !== 'PHASE1_DONE') throw this.wrongState(record, 'CompleteMigration', 'PHASE1_DONE');
    this.assertRunning();
    this.transition(record, 'COMPLETING');
    await this.persistAndWake(record);
    return record;
  }

  /** Asks for a cancel. Idempotent. */
  async cancel(id: string): Promise<MigrationRecord> {
    const record = this.get(id);
    if (record.state === 'CANCELLING' || record.state === 'CANCELLED') return record;
    if (!CANCELLABLE_STATES.has(record.state)) throw this.wrongState(record, 'CancelMigration', 'STARTING, IN_PROGRESS or PHASE1_DONE');
    this.assertRunning();
    this.transition(record, 'CANCELLING');
    await this.persistAndWake(record);
    return record;
  }

  /** One migration, as it stands. Throws NOT_FOUND. */
  get(id: string): MigrationRecord {
    const record = this.records.get(id);
    if (!record) throw new FerryError('NOT_FOUND', `no migration has id ${id}`, { details: { migration: id } });
    return record;
  }

  /** Migrations in id (creation) order, filtered, at most `limit`; `more` if the filter matched more. */
  list(filter: ListFilter): { migrations: MigrationRecord[]; more: boolean } {
    const out: MigrationRecord[] = [];
    for (const record of this.records.values()) {
      if (filter.after !== undefined && record.id <= filter.after) continue;
      if (filter.state && record.state !== filter.state) continue;
      if (filter.backend && record.spec.source.backend !== filter.backend && record.spec.destination.backend !== filter.backend) continue;
      if (out.length === filter.limit) return { migrations: out, more: true };
      out.push(record);
    }
    return { migrations: out, more: false };
  }

  /**
   * Calls `listener` on every change of the migration until it is terminal
   * (the terminal value included), or with null at shutdown. Returns the
   * function that stops watching.
   */
  watch(id: string, listener: WatchListener): () => void {
    this.get(id);
    let set = this.watchers.get(id);
    if (!set) this.watchers.set(id, (set = new Set()));
    set.add(listener);
    return () => {
      set.delete(listener);
      if (set.size === 0 && this.watchers.get(id) === set) this.watchers.delete(id);
    };
  }

  /** How many migrations are not terminal. */
  get activeCount(): number {
    return this.active.size;
  }

  // ---- internals -------------------------------------------------------

  private assertRunning(): void {
    if (this.stopping) throw new FerryError('UNAVAILABLE', 'the daemon is shutting down; retry against the restarted daemon');
  }

  private assertShareFree(backend: string, shareId: string): void {
    const other = this.active.get(shareKey(backend, shareId));
    if (other) {
      const state = this.records.get(other)?.state;
      throw new FerryError('ALREADY_EXISTS', `share ${backend}/${shareId} already has an active migration ${other} (${state}); watch it or cancel it`, {
        details: { migration: other, state: state ? `MIGRATION_STATE_${state}` : '', backend, share: shareId },
      });
    }
  }

  private byRequestId(requestId: string, fp: string): MigrationRecord | undefined {
    if (!requestId) return undefined;
    const id = this.requests.get(requestId);
    if (!id) return undefined;
    const record = this.get(id);
    if (record.fingerprint !== fp) {
      throw new FerryError('ALREADY_EXISTS', `request_id ${requestId} was used for migration ${id} with different fields; use a new request_id`, { details: { migration: id, request_id: requestId } });
    }
    return record;
  }

  private wrongState(record: MigrationRecord, call: string, wanted: string): FerryError {
    const advice = STATE_ADVICE[record.state] ?? '';
    return new FerryError('FAILED_PRECONDITION', `migration ${record.id} is ${record.state}, and ${call} is accepted only in ${wanted}: ${advice}`, {
      details: { migration: record.id, state: `MIGRATION_STATE_${record.state}` },
    });
  }

  /** Makes a record known to the indexes (at load and at creation). */
  private adopt(record: MigrationRecord): void {
    this.records.set(record.id, record);
    if (record.requestId) this.requests.set(record.requestId, record.id);
    if (!TERMINAL_STATES.has(record.state)) this.active.set(shareKey(record.spec.source.backend, record.spec.source.shareId), record.id);
  }

  private forget(record: MigrationRecord): void {
    this.records.delete(record.id);
    if (record.requestId) this.requests.delete(record.requestId);
    const key = shareKey(record.spec.source.backend, record.spec.source.shareId);
    if (this.active.get(key) === record.id) this.active.delete(key);
  }

  /** Changes a record's state in memory (persist follows). Illegal transitions are bugs: they throw INTERNAL. */
  private transition(record: MigrationRecord, to: State, patch: Partial<MigrationRecord> = {}): void {
    if (!canTransition(record.state, to)) throw new FerryError('INTERNAL', `illegal transition ${record.state} -> ${to} for ${record.id}`);
    const now = Date.now();
    const from = record.state;
    Object.assign(record, patch);
    record.state = to;
    record.updatedAt = now;
    if (to === 'IN_PROGRESS') record.startedAt = now;
    if (to === 'PHASE1_DONE' && from === 'IN_PROGRESS') record.phase1DoneAt = now;
    if (to === 'COMPLETING') record.completingAt = now;
    if (to === 'CANCELLING') record.cancellingAt = now;
    // 100 % means "ready to complete" or done: a cancelled or failed migration never shows it.
    if ((to === 'CANCELLING' || to === 'ERROR') && record.progress.percent >= 100) record.progress = { ...record.progress, percent: 99.9 };
    if (TERMINAL_STATES.has(to)) {
      record.finishedAt = now;
      record.progress = finalProgress(record);
      const key = shareKey(record.spec.source.backend, record.spec.source.shareId);
      if (this.active.get(key) === record.id) this.active.delete(key);
    }
    this.runners.get(record.id)?.log.info({ from, to }, 'state changed');
  }

  /** Writes the record (its latest value) after any earlier write of it; then tells watchers. */
  private persist(record: MigrationRecord): Promise<void> {
    const previous = this.writes.get(record.id) ?? Promise.resolve();
    const write = previous.then(() => this.store.save(record));
    const tail = write.then(
      () => this.notify(record),
      () => undefined,
    );
    this.writes.set(record.id, tail);
    void tail.then(() => {
      if (this.writes.get(record.id) === tail) this.writes.delete(record.id);
    });
    return write;
  }

  private async persistAndWake(record: MigrationRecord): Promise<void> {
    await this.persist(record);
    this.runners.get(record.id)?.wake?.();
  }

  private notify(record: MigrationRecord): void {
    const set = this.watchers.get(record.id);
    if (!set) return;
    for (const listener of set) listener(record);
  }

  /** The next driver call a migration needs, or null if none. */
  private stepFor(record: MigrationRecord): Step | null {
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

  /** The migration's runner, started if it is not running. */
  private runner(id: string): Runner {
    const existing = this.runners.get(id);
    if (existing) return existing;
    const now = Date.now();
    const backend = this.records.get(id)?.spec.source.backend;
    const runner: Runner = { log: this.log.child({ migration: id, backend }), failures: 0, lastAdvanceAt: now, lastPersistAt: now, cleanupAttempts: 0, done: Promise.resolve() };
    this.runners.set(id, runner);
    runner.done = this.run(id, runner)
      .catch((err: unknown) => runner.log.error({ err }, 'runner stopped by an unexpected failure; the migration resumes at the next start'))
      .finally(() => this.runners.delete(id));
    return runner;
  }

  private async run(id: string, runner: Runner): Promise<void> {
    // Let the caller finish its own bookkeeping before the first call.
    await Promise.resolve();
    while (!this.stopping) {
      const record = this.records.get(id);
      if (!record) return;
      const step = this.stepFor(record);
      if (!step) return;
      // Persist, then act: the driver is never called ahead of what is on disk.
      await this.writes.get(id);
      if (this.stopping) return;
      let delay: number;
      try {
        delay = await this.step(record, step, runner);
        runner.failures = 0;
        runner.failingSince = undefined;
      } catch (err) {
        delay = await this.failed(record, step, runner, err);
      }
      if (delay > 0 && !this.stopping && this.stepFor(record)) await this.sleep(runner, delay);
    }
  }

  private sleep(runner: Runner, ms: number): Promise<void> {
    return new Promise<void>((resolve) => {
      const timer = setTimeout(done, ms);
      function done() {
        clearTimeout(timer);
        runner.wake = undefined;
        resolve();
      }
      runner.wake = done;
    });
  }

  private driverFor(record: MigrationRecord): GuardedDriver {
    const backend = this.backends.get(record.spec.source.backend);
    if (!backend?.driver) throw new FerryError('UNAVAILABLE', `backend ${record.spec.source.backend} is not serving: ${backend?.failure ?? 'it is not configured'}`);
    return backend.driver;
  }

  /** Makes one driver call and applies its result. Returns the delay before the next call. */
  private async step(record: MigrationRecord, step: Step, runner: Runner): Promise<number> {
    const driver = this.driverFor(record);
    const call = { migration: record.spec, checkpoint: record.checkpoint, log: runner.log };
    const starting = step === 'start';
    if (starting) await this.startSlots.acquire();
    await this.semaphore.acquire();
    let result: unknown;
    try {
      switch (step) {
        case 'start':
          result = await driver.start(call, this.shutdown.signal);
          break;
        case 'continue':
          result = await driver.continue(call, this.shutdown.signal);
          break;
        case 'complete':
          result = await driver.complete(call, this.shutdown.signal);
          if ((result as CompleteResult).status === 'in_progress') {
            // continue is not called during a cutover: ask for progress so watchers see the cutover move.
            record.progress = toProgress(await driver.progress({ ...call, checkpoint: (result as CompleteResult).checkpoint }, this.shutdown.signal).catch(() => record.progress), true);
          }
          break;
        case 'cancel':
        case 'cleanup':
          result = await driver.cancel(call, this.shutdown.signal);
          break;
      }
    } finally {
      this.semaphore.release();
      if (starting) this.startSlots.release();
    }
    if (record.stuck) this.unstick(record, runner);
    return this.apply(record, step, runner, result);
  }

  private async apply(record: MigrationRecord, step: Step, runner: Runner, result: unknown): Promise<number> {
    const now = Date.now();
    switch (step) {
      case 'start': {
        const { checkpoint } = result as { checkpoint: Checkpoint };
        record.checkpoint = checkpoint;
        if (record.state === 'STARTING') this.transition(record, 'IN_PROGRESS');
        await this.persist(record);
        runner.lastAdvanceAt = now;
        return 0;
      }
      case 'continue': {
        const r = result as { progress: MigrationRecord['progress']; phase1Done: boolean; nextPollMs?: number; checkpoint: Checkpoint };
        const before = record.progress;
        const checkpointChanged = JSON.stringify(r.checkpoint) !== JSON.stringify(record.checkpoint);
        const stateBefore = record.state;
        // Once phase 1 was done it stays done for reporting, whatever a later poll says.
        const phase1Done = (r.phase1Done || record.phase1DoneAt !== undefined) && record.state !== 'CANCELLING';
        record.progress = toProgress(r.progress, phase1Done);
        record.checkpoint = r.checkpoint;
        if (r.progress.copiedBytes > before.copiedBytes || r.progress.iteration > before.iteration || r.progress.dirtyBytes < before.dirtyBytes || r.phase1Done) {
          runner.lastAdvanceAt = now;
        }
        // A complete or cancel may have arrived while the call was out: then only the checkpoint and progress are kept.
        if (record.state === 'IN_PROGRESS' && r.phase1Done) this.transition(record, 'PHASE1_DONE');
        const stalled = this.options.stallTimeoutMs > 0 && record.state === 'IN_PROGRESS' && now - runner.lastAdvanceAt > this.options.stallTimeoutMs;
        if (stalled) {
          this.fail(record, { code: 'STALLED', message: `phase 1 made no progress for ${Math.round((now - runner.lastAdvanceAt) / 1000)} s (stall timeout ${this.options.stallTimeoutMs} ms); the source is untouched` }, true);
        }
        record.updatedAt = now;
        if (record.state !== stateBefore || checkpointChanged || now - runner.lastPersistAt >= this.options.progressPersistMs) {
          runner.lastPersistAt = now;
          await this.persist(record);
        } else {
          this.notify(record);
        }
        return this.pollDelay(r.nextPollMs);
      }
      case 'complete': {
        const r = result as CompleteResult;
        record.checkpoint = r.checkpoint;
        if (r.status === 'done') {
          this.transition(record, 'SUCCESS', { cutover: r.cutover });
        } else if (r.status === 'aborted') {
          runner.log.warn({ reason: r.reason }, 'cutover ran past its window and rolled back');
          this.transition(record, 'PHASE1_DONE', { lastCutoverAbort: { code: 'CUTOVER_WINDOW_EXCEEDED' satisfies MigrationOnlyCode, message: r.reason } });
        }
        await this.persist(record);
        return r.status === 'in_progress' ? this.pollDelay(r.nextPollMs) : 0;
      }
      case 'cancel':
      case 'cleanup': {
        const r = result as { done: boolean; nextPollMs?: number; checkpoint: Checkpoint };
        record.checkpoint = r.checkpoint;
        if (r.done && step === 'cancel') this.transition(record, 'CANCELLED');
        if (r.done && step === 'cleanup') {
          record.cleanupPending = false;
          runner.log.info('cleanup after error done');
        }
        record.updatedAt = now;
        await this.persist(record);
        return r.done ? 0 : this.pollDelay(r.nextPollMs);
      }
    }
  }

  /** Handles a failed driver call. Returns the delay before the next try (0 when the migration ended). */
  private async failed(record: MigrationRecord, step: Step, runner: Runner, err: unknown): Promise<number> {
    const error = err instanceof FerryError ? err : new FerryError('INTERNAL', `engine failure in ${step}: ${String(err)}`);
    if (!(err instanceof FerryError) || error.code === 'INTERNAL') runner.log.error({ err, step }, 'unexpected failure');
    runner.failures++;
    const now = Date.now();
    runner.failingSince ??= now;
    const backoff = Math.min(this.options.backoffMaxMs, this.options.backoffInitialMs * 2 ** Math.min(runner.failures - 1, 20));
    const delay = Math.round(backoff * (0.75 + Math.random() * 0.5));
    runner.log.warn({ step, code: error.code, error: error.message, failures: runner.failures, retryInMs: error.retryable ? delay : undefined }, 'driver call failed');

    if (step === 'cleanup') {
      if (!error.retryable) {
        // The driver answered: there is nothing it will roll back (for example, its cutover had committed).
        runner.log.warn({ code: error.code, error: error.message }, 'driver refused the clean-up after error; nothing was rolled back');
        record.cleanupPending = false;
        await this.persist(record);
        return 0;
      }
      if (++runner.cleanupAttempts >= this.options.cleanupAttempts) {
        runner.log.error({ attempts: runner.cleanupAttempts }, 'giving up cleanup after error; the destination may hold a partial copy');
        record.cleanupPending = false;
        await this.persist(record);
        return 0;
      }
      return delay;
    }
    if (error.retryable) {
      if ((step === 'complete' || step === 'cancel') && !record.stuck && now - runner.failingSince >= this.options.unresponsiveAfterMs) {
        await this.markStuck(record, step, runner, error, now - runner.failingSince);
      }
      const stalling = record.state === 'STARTING' || record.state === 'IN_PROGRESS';
      if (stalling && this.options.stallTimeoutMs > 0 && now - runner.lastAdvanceAt > this.options.stallTimeoutMs) {
        this.fail(record, { code: 'STALLED', message: `no progress for ${Math.round((now - runner.lastAdvanceAt) / 1000)} s; last error: ${error.message}` }, true);
        await this.persist(record);
        return 0;
      }
      return delay;
    }
    // A complete or cancel arrived while the failed call was out: go on to that instead.
    if (this.stepFor(record) !== step) return 0;
    // Not retryable: the migration ends in ERROR, and the driver's cancel is asked to clean up. After a
    // failed complete that is safe too: a driver whose cutover had committed refuses that cancel (see
    // cancel in docs/writing-a-driver.md), and the clean-up stops there.
    this.fail(record, { code: error.code, message: error.message }, true);
    await this.persist(record);
    return 0;
  }

  /**
   * A cutover or cancel whose driver has stopped answering: say what is
   * unknown and what to check, and tell the backend's health. The retries go on.
   */
  private async markStuck(record: MigrationRecord, step: 'complete' | 'cancel', runner: Runner, error: FerryError, silentMs: number): Promise<void> {
    const { source, destination } = record.spec;
    const shareId = source.shareId;
    const driver = this.backends.get(source.backend)?.driver?.plugin.name ?? source.backend;
    const silent = `driver ${driver} (backend ${source.backend}) has not answered ${step} for ${Math.round(silentMs / 1000)} s (last: ${error.message})`;
    const retrying = `ferryd keeps retrying ${step} every ${Math.round(this.options.backoffMaxMs / 1000)} s or less; once the driver answers, the migration resumes from its checkpoint`;
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
    runner.log.error({ step, code: record.stuck.code, silentMs }, 'driver is not answering; the migration is stuck until it does');
    await this.persist(record);
    this.hooks.stuckChanged?.(source.backend);
  }

  /** The driver answered a stuck migration again; `apply` persists what it answered. */
  private unstick(record: MigrationRecord, runner: Runner): void {
    runner.log.info({ code: record.stuck?.code }, 'driver answered again; the migration is no longer stuck');
    delete record.stuck;
    this.hooks.stuckChanged?.(record.spec.source.backend);
  }

  /** Why a backend's driver is not answering, if a migration of it is stuck. */
  stuckReason(backend: string): string | undefined {
    for (const record of this.records.values()) {
      if (record.stuck && record.spec.source.backend === backend && !TERMINAL_STATES.has(record.state)) {
        return `its driver is not answering: migration ${record.id} is stuck in ${record.state} (${record.stuck.code})`;
      }
    }
    return undefined;
  }

  /** Moves a migration to ERROR; before the commit point its destination is cleaned up by later cancel calls. */
  private fail(record: MigrationRecord, error: RecordedError, cleanup: boolean): void {
    if (TERMINAL_STATES.has(record.state)) return;
    this.transition(record, 'ERROR', { error, cleanupPending: cleanup });
  }

  private pollDelay(hint: number | undefined): number {
    return pollDelay(hint, this.options);
  }
}

function withoutRequestId(input: StartInput): Omit<MigrationSpec, 'id'> {
  const { requestId: _requestId, ...spec } = input;
  return spec;
}
