/**
 * The engine: the one owner of the migration records (their indexes, state
 * transitions, persistence and watchers) and the scheduler that drives
 * asynchronous drivers (docs/design.md, option C).
 *
 * Each live migration has one runner (runner.ts), a loop that makes one
 * driver call at a time and sleeps between calls for as long as the driver
 * suggests; it changes the record only through the engine's transition and
 * persist. Requests from the API only change the record and wake the
 * runner; they never wait on a driver call.
 *
 * Persist, then act: a runner waits for the record (state and the driver's
 * checkpoint together) to be in LevelDB before it makes the next driver call,
 * and the API answers only once its change is in LevelDB. So a `kill -9` at
 * any instant loses nothing and every migration resumes from the state it
 * was last seen in.
 */
import { FerryError, type DataPath, type MigrationSpec } from '../plugins/api/index.ts';
import { admit, admitted } from '../host/admission.ts';
import { HostPath, DEFAULT_HOST_PATH_OPTIONS, type HostPathOptions } from '../host/mover/host-path.ts';
import { newMigrationId, observeMigrationId } from '../host/ids.ts';
import type { BackendEntry } from '../host/plugins.ts';
import type { Log } from '../lib/log.ts';
import { CANCELLABLE_STATES, TERMINAL_STATES, canTransition, emptyProgress, finalProgress, type MigrationRecord, type State } from './migration.ts';
import { DEFAULT_ENGINE_OPTIONS, type EngineHooks, type EngineOptions } from './options.ts';
import { Runner, stepFor, type MigrationDriver, type RunnerHost } from './runner.ts';
import { Semaphore } from '../lib/semaphore.ts';
import { ChangeFeeds } from '../host/changes.ts';
import { RecordWriter } from './record-writer.ts';
import { canonicalHash, firstAfter, insertSorted } from './keys.ts';
import type { Store } from './store.ts';

/** What StartMigration asks for, validated. */
export type StartInput = Omit<MigrationSpec, 'id' | 'dataPath'> & {
  requestId: string;
  /** The data path asked for; absent lets admission choose. */
  dataPath?: DataPath;
};

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

const shareKey = (backend: string, shareId: string) => `${backend}\u0000${shareId}`;

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
  /** The working records: what runners and requests change, ahead of the disk. */
  private readonly records = new Map<string, MigrationRecord>();
  /**
   * What callers see: each record's copy as last written (RecordWriter), so
   * nothing a caller was shown can be lost in a crash (after a restart they
   * see at least as much), and `order`, every published id sorted, which
   * ListMigrations pages through.
   */
  private readonly published = new Map<string, MigrationRecord>();
  private readonly order: string[] = [];
  private readonly writer: RecordWriter;
  /** The drivers' change feeds (Driver.watchChanges). */
  private readonly feeds: ChangeFeeds;
  /** Active (non-terminal) migration per share. */
  private readonly active = new Map<string, string>();
  /** Migration per request id. */
  private readonly requests = new Map<string, string>();
  private readonly runners = new Map<string, Runner>();
  private readonly writes = new Map<string, Promise<void>>();
  private readonly watchers = new Map<string, Set<WatchListener>>();
  /** Driver calls in flight, across all migrations. */
  private readonly calls: Semaphore;
  /**
   * Starts hold at most a quarter of the driver-call slots. An array may
   * create destinations one at a time, so a burst of starts would otherwise
   * fill every slot and keep the migrations already copying from being
   * polled: with 1,000 starts at once, phase 1 was noticed seconds late.
   */
  private readonly startSlots: Semaphore;
  private readonly shutdown = new AbortController();
  /** What runners may see and do of the engine: the records change only through transition and persist. */
  private readonly runnerHost: RunnerHost;
  /**
   * Starts under way (between their first check and their first write), by
   * share. A second start of the same share waits for the first to be
   * decided, so it is answered from what the first did (ALREADY_EXISTS, or
   * the same migration for the same request id), never from a driver check
   * that raced the first one's job.
   */
  private readonly starting = new Map<string, Promise<unknown>>();
  private stopping = false;
  /** Moves the data of host-path migrations (the source's driver moves the others'). */
  private readonly hostPath: HostPath;

  constructor(
    private readonly store: Store,
    private readonly backends: ReadonlyMap<string, BackendEntry>,
    private readonly log: Log,
    readonly options: EngineOptions = DEFAULT_ENGINE_OPTIONS,
    private readonly hooks: EngineHooks = {},
    hostPathOptions: HostPathOptions = DEFAULT_HOST_PATH_OPTIONS,
  ) {
    this.hostPath = new HostPath(backends, store.places, log.child({ component: 'host-path' }), hostPathOptions, { initial: options.backoffInitialMs, max: options.backoffMaxMs });
    this.writer = new RecordWriter(store, (copy) => this.publish(copy));
    this.feeds = new ChangeFeeds(backends, log.child({ component: 'changes' }), { backoffInitialMs: options.backoffInitialMs, backoffMaxMs: options.backoffMaxMs, recheckMs: 5_000 });
    this.calls = new Semaphore(options.maxConcurrentCalls);
    this.startSlots = new Semaphore(Math.max(1, Math.floor(options.maxConcurrentCalls / 4)));
    const engine = this;
    this.runnerHost = {
      options,
      get stopping() {
        return engine.stopping;
      },
      signal: this.shutdown.signal,
      slots: { calls: this.calls, starts: this.startSlots },
      record: (id) => this.records.get(id),
      written: (id) => this.published.get(id),
      pendingWrite: (id) => this.writes.get(id),
      driverFor: (record) => this.driverFor(record),
      transition: (record, to, patch) => this.transition(record, to, patch),
      persist: (record) => this.persist(record),
      feedLive: (record) => record.spec.dataPath === 'driver' && this.feeds.isLive(record.spec.source.backend),
      stuckChanged: (backend) => this.hooks.stuckChanged?.(backend),
    };
  }

  /** Loads every migration and resumes each one where it stood. */
  async start(): Promise<void> {
    const records = await this.store.loadMigrations();
    for (const record of records) {
      // Records written before data paths existed were all on the driver path.
      record.spec.dataPath ??= 'driver';
      observeMigrationId(record.id);
      this.adopt(record);
      this.publish({ ...record });
    }
    let resumed = 0;
    for (const record of records) {
      if (stepFor(record)) {
        this.runner(record.id).log.info({ state: record.state }, 'resuming migration');
        resumed++;
      }
    }
    this.feeds.start((backend, id) => this.changed(backend, id));
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
    await this.feeds.close();
    await this.hostPath.close();
    await this.writer.idle();
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
    const fp = canonicalHash(withoutRequestId(input));
    const retried = await this.byRequestId(input.requestId, fp);
    if (retried) return retried;

    const { source, destination } = input;
    this.assertShareFree(source.backend, source.shareId);
    const id = newMigrationId();
    const asked = { ...withoutRequestId(input), id };
    const admission = await admit(this.backends, { ...asked, dataPath: 'driver' }, input.dataPath, this.log.child({ migration: id }), 'first');
    const compat = admitted(admission);
    const spec: MigrationSpec = { ...asked, dataPath: admission.dataPath };

    // The checks above awaited the driver: a concurrent start of another share may have taken the request id.
    const raced = await this.byRequestId(input.requestId, fp);
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
    return this.get(id);
  }

  /** Asks for the cutover. Idempotent. */
  async complete(id: string): Promise<MigrationRecord> {
    const record = this.working(id);
    if (record.state === 'COMPLETING' || record.state === 'SUCCESS') return this.settled(id);
    if (record.state !== 'PHASE1_DONE') throw this.wrongState(record, 'CompleteMigration', 'PHASE1_DONE');
    this.assertRunning();
    this.transition(record, 'COMPLETING');
    await this.persistAndWake(record);
    return this.get(id);
  }

  /** Asks for a cancel. Idempotent. */
  async cancel(id: string): Promise<MigrationRecord> {
    const record = this.working(id);
    if (record.state === 'CANCELLING' || record.state === 'CANCELLED') return this.settled(id);
    if (!CANCELLABLE_STATES.has(record.state)) throw this.wrongState(record, 'CancelMigration', 'STARTING, IN_PROGRESS or PHASE1_DONE');
    this.assertRunning();
    this.transition(record, 'CANCELLING');
    await this.persistAndWake(record);
    return this.get(id);
  }

  /** One migration, as last written: a copy that nothing changes (callers must not either). Throws NOT_FOUND. */
  get(id: string): MigrationRecord {
    const record = this.published.get(id);
    if (!record) throw notFound(id);
    return record;
  }

  /** Migrations in id (creation) order, filtered, at most `limit`; `more` if the filter matched more. */
  list(filter: ListFilter): { migrations: MigrationRecord[]; more: boolean } {
    const out: MigrationRecord[] = [];
    const { order } = this;
    for (let i = filter.after === undefined ? 0 : firstAfter(order, filter.after); i < order.length; i++) {
      const record = this.published.get(order[i]!)!;
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

  /** Every migration as last written, in no set order: copies that nothing changes (callers must not either). */
  migrations(): IterableIterator<MigrationRecord> {
    return this.published.values();
  }

  /** When a live migration's progress last moved, as its stall timeout sees it (ms since the epoch); undefined without a runner. */
  lastProgressAt(id: string): number | undefined {
    return this.runners.get(id)?.lastProgressAt;
  }

  /** The driver-call slots: how many there are, how many are held, and how many runners wait for one (or for a start's share of them). */
  callSlots(): { capacity: number; held: number; waiting: number } {
    return { capacity: this.calls.capacity, held: this.calls.held, waiting: this.calls.waiting + this.startSlots.waiting };
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

  /** The migration a request id made, once written; throws ALREADY_EXISTS if it was made with other fields. */
  private async byRequestId(requestId: string, fp: string): Promise<MigrationRecord | undefined> {
    if (!requestId) return undefined;
    const id = this.requests.get(requestId);
    if (!id) return undefined;
    if (this.working(id).fingerprint !== fp) {
      throw new FerryError('ALREADY_EXISTS', `request_id ${requestId} was used for migration ${id} with different fields; use a new request_id`, { details: { migration: id, request_id: requestId } });
    }
    return this.settled(id);
  }

  /** The working record. Throws NOT_FOUND. */
  private working(id: string): MigrationRecord {
    const record = this.records.get(id);
    if (!record) throw notFound(id);
    return record;
  }

  /** The migration as written once its write in flight (if any) has landed. */
  private async settled(id: string): Promise<MigrationRecord> {
    await this.writes.get(id);
    return this.get(id);
  }

  /** A record is on disk: callers see this copy from now on. */
  private publish(copy: MigrationRecord): void {
    if (!this.published.has(copy.id)) insertSorted(this.order, copy.id);
    this.published.set(copy.id, copy);
    this.notify(copy);
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
    this.hooks.transitioned?.(record, from);
  }

  /** Writes the record (its latest value, in the next batch); once written, callers and watchers see it. */
  private persist(record: MigrationRecord): Promise<void> {
    const write = this.writer.write(record);
    const settled = write.catch(() => undefined);
    this.writes.set(record.id, settled);
    void settled.then(() => {
      if (this.writes.get(record.id) === settled) this.writes.delete(record.id);
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
    for (const listener of set) {
      try {
        listener(record);
      } catch (err) {
        this.log.error({ err, migration: record.id }, 'a watcher failed');
      }
    }
  }

  /** A driver's change feed said that a migration of `backend` (any, if `id` is '') changed: its runner calls soon. */
  private changed(backend: string, id: string): void {
    if (id) {
      const record = this.records.get(id);
      if (record && record.spec.dataPath === 'driver' && record.spec.source.backend === backend) this.runners.get(id)?.poke();
      return;
    }
    for (const [runnerId, runner] of this.runners) {
      const record = this.records.get(runnerId);
      if (record && record.spec.dataPath === 'driver' && record.spec.source.backend === backend) runner.poke();
    }
  }

  private driverFor(record: MigrationRecord): MigrationDriver {
    if (record.spec.dataPath === 'host') return this.hostPath;
    const backend = this.backends.get(record.spec.source.backend);
    if (!backend?.driver) throw new FerryError('UNAVAILABLE', `backend ${record.spec.source.backend} is not serving: ${backend?.failure ?? 'it is not configured'}`);
    return backend.driver;
  }

  /** The migration's runner, started if it is not running. */
  private runner(id: string): Runner {
    const existing = this.runners.get(id);
    if (existing) return existing;
    const backend = this.records.get(id)?.spec.source.backend;
    const runner = new Runner(this.runnerHost, id, this.log.child({ migration: id, backend }));
    this.runners.set(id, runner);
    void runner.done.finally(() => {
      if (this.runners.get(id) === runner) this.runners.delete(id);
    });
    return runner;
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

}

const notFound = (id: string) => new FerryError('NOT_FOUND', `no migration has id ${id}`, { details: { migration: id } });

/** The fields of a start that decide what it asks for (a retry with another request id asks for the same). */
function withoutRequestId(input: StartInput): Omit<StartInput, 'requestId'> {
  const { requestId: _requestId, ...spec } = input;
  return spec;
}
