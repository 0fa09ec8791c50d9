/**
 * The driver guard: every call the daemon makes into a plugin goes through
 * here. It gives each call a deadline and an AbortSignal, turns anything the
 * driver throws into a FerryError with a stable code, and checks the shape of
 * what the driver returns, so a plugin that throws, hangs or returns garbage
 * fails one call cleanly instead of taking the daemon with it. What a driver
 * throws or returns is read as untrusted (untrusted.ts); a call that blocks
 * the event loop is noticed (loop-watch.ts).
 */
import { performance } from 'node:perf_hooks';
import {
  FerryError,
  type Capabilities,
  type CancelResult,
  type CompatibilityResult,
  type CompleteResult,
  type ContinueResult,
  type DataDestination,
  type DataSource,
  type Driver,
  type DriverProgress,
  type MigrationCall,
  type MigrationSpec,
  type PoolInfo,
  type StartResult,
} from '../plugins/api/index.ts';
import type { Log } from '../lib/log.ts';
import { followAbort } from './abort-fanout.ts';
import { CAPABILITY_FLAGS } from './capabilities.ts';
import type { Deadlines } from './deadlines.ts';
import { GuardedDataDestination, GuardedDataSource } from './guard-data.ts';
import { LoopWatch } from './loop-watch.ts';
import { isCount, isObject, need, ShapeError } from './shape.ts';
import { bounded, plainCopy, readFerryError, summarizeThrown, UnreadableResult } from './untrusted.ts';

type CallName = keyof Deadlines;


function checkCheckpoint(v: unknown): void {
  need(v === null || isObject(v), 'checkpoint must be an object or null');
}

/** Checks a capabilities object. */
export function checkCapabilities(v: unknown): Capabilities {
  need(isObject(v), 'capabilities must be an object');
  const c = v as Record<string, unknown>;
  for (const key of CAPABILITY_FLAGS) need(typeof c[key] === 'boolean', `capabilities.${key} must be a boolean`);
  return v as unknown as Capabilities;
}

function checkProgress(v: unknown): DriverProgress {
  need(isObject(v), 'progress must be an object');
  const p = v as Record<string, unknown>;
  for (const key of ['totalBytes', 'copiedBytes', 'dirtyBytes', 'dirtyRateBytesPerSec', 'throughputBytesPerSec', 'iteration', 'etaSeconds']) {
    need(isCount(p[key]), `progress.${key} must be a non-negative number`);
  }
  need(p.warning === undefined || typeof p.warning === 'string', 'progress.warning must be a string');
  return v as unknown as DriverProgress;
}

/**
 * What is wrong with the cutover figures of a `done` (freezeMs,
 * finalDeltaBytes, verifiedBytes: each a non-negative number), or undefined
 * when nothing is. The guard refuses a `done` with such figures; the
 * conformance kit reports the same rule against what a driver answered.
 */
export function cutoverProblem(cutover: unknown): string | undefined {
  if (!isObject(cutover)) return 'cutover must be an object when status is done';
  if (!(isCount(cutover.freezeMs) && isCount(cutover.finalDeltaBytes) && isCount(cutover.verifiedBytes))) return 'cutover figures must be non-negative numbers';
  return undefined;
}

const checkers = {
  describe(v: unknown): { pools: PoolInfo[] } {
    need(isObject(v) && Array.isArray(v.pools), 'describe must return { pools: [] }');
    for (const [i, pool] of ((v as { pools: unknown[] }).pools).entries()) {
      need(isObject(pool) && typeof pool.name === 'string', `pools[${i}].name must be a string`);
      need(isCount((pool as Record<string, unknown>).capacityBytes) && isCount((pool as Record<string, unknown>).freeBytes), `pools[${i}] bytes must be non-negative numbers`);
    }
    return v as { pools: PoolInfo[] };
  },
  checkCompatibility(v: unknown): CompatibilityResult {
    need(isObject(v), 'result must be an object');
    const r = v as Record<string, unknown>;
    checkCapabilities(r.capabilities);
    need(Array.isArray(r.reasons) && r.reasons.every((x) => typeof x === 'string'), 'reasons must be an array of strings');
    need(isCount(r.shareSizeBytes) && isCount(r.destinationFreeBytes), 'shareSizeBytes and destinationFreeBytes must be non-negative numbers');
    return v as unknown as CompatibilityResult;
  },
  start(v: unknown): StartResult {
    need(isObject(v), 'result must be an object');
    checkCheckpoint((v as Record<string, unknown>).checkpoint);
    return v as unknown as StartResult;
  },
  continue(v: unknown): ContinueResult {
    need(isObject(v), 'result must be an object');
    const r = v as Record<string, unknown>;
    checkProgress(r.progress);
    need(typeof r.phase1Done === 'boolean', 'phase1Done must be a boolean');
    need(r.nextPollMs === undefined || isCount(r.nextPollMs), 'nextPollMs must be a non-negative number');
    checkCheckpoint(r.checkpoint);
    return v as unknown as ContinueResult;
  },
  complete(v: unknown): CompleteResult {
    need(isObject(v), 'result must be an object');
    const r = v as Record<string, unknown>;
    checkCheckpoint(r.checkpoint);
    if (r.status === 'done') {
      const problem = cutoverProblem(r.cutover);
      if (problem) throw new ShapeError(problem);
    } else if (r.status === 'aborted') {
      need(typeof r.reason === 'string', 'reason must be a string when status is aborted');
    } else {
      need(r.status === 'in_progress', "status must be 'done', 'in_progress' or 'aborted'");
      need(r.nextPollMs === undefined || isCount(r.nextPollMs), 'nextPollMs must be a non-negative number');
    }
    return v as unknown as CompleteResult;
  },
  cancel(v: unknown): CancelResult {
    need(isObject(v), 'result must be an object');
    const r = v as Record<string, unknown>;
    need(typeof r.done === 'boolean', 'done must be a boolean');
    need(r.nextPollMs === undefined || isCount(r.nextPollMs), 'nextPollMs must be a non-negative number');
    checkCheckpoint(r.checkpoint);
    return v as unknown as CancelResult;
  },
  progress: checkProgress,
};

/** The event-loop heartbeat shared by every guarded driver in the process. */
const loopWatch = new LoopWatch();

/**
 * A call during which the event loop went this long without running a
 * timer is logged (and, past its deadline, failed). Shorter pauses are the
 * daemon's own work and garbage collection.
 */
export const BLOCKED_LOOP_LOG_MS = 100;

/** What a blocked loop is said to be: a module's doing, or ferryd's own when the driver runs in a process of its own. */
const BLOCKED_LOOP = {
  module: { log: 'driver call blocked the event loop; a module plugin must never block it', why: 'a module plugin must never block it' },
  remote: {
    log: "ferryd's event loop was blocked during a driver call (not by the driver: it runs in its own process)",
    why: "not by the driver, which runs in its own process: ferryd's own work held the loop",
  },
} as const;

/**
 * Told of every call the guard made, once it has ended: the call's name,
 * how long it took and how it ended ('ok', or the code of the FerryError it
 * failed with). For ferryd's metrics; it must not throw.
 */
export type CallObserver = (call: { backend: string; method: string; outcome: 'ok' | FerryError['code']; seconds: number }) => void;

/** How a call's driver code ended, before the guard judged it. */
type Settled = { ok: true; value: unknown } | { ok: false; err: unknown };

/**
 * A driver wrapped so that each call is bounded, translated and checked.
 * Whatever the driver throws or returns, a call resolves with a checked
 * plain copy of its answer or rejects with a FerryError whose message names
 * the driver, the backend and the call; the guard itself never throws
 * anything else.
 */
export class GuardedDriver {
  /** The driver's last good capabilities answer, and the checked copy of it. */
  private caps: { raw: unknown; checked: Capabilities } | undefined;
  private source: { raw: object; guarded: GuardedDataSource } | undefined;
  private destination: { raw: object; guarded: GuardedDataDestination } | undefined;

  constructor(
    readonly backend: string,
    /** `remote`: the driver runs in a process of its own (kind process or endpoint), so a blocked loop is ferryd's own doing. */
    readonly plugin: { name: string; version: string; remote?: boolean },
    private readonly driver: Driver,
    private readonly deadlines: Deadlines,
    private readonly log: Log,
    private readonly observe?: CallObserver,
  ) {
    this.askCapabilities();
  }

  /**
   * What the driver can ever honour. Asked again each time, because a
   * driver in its own process may have been restarted as another version
   * since (its new OpenBackend answer); a later answer that throws or does
   * not check keeps the last good one (creation already refused a driver
   * with none), and is logged.
   */
  get capabilities(): Capabilities {
    try {
      return this.askCapabilities();
    } catch (err) {
      this.log.warn({ err: (err as FerryError).message }, 'capabilities() failed or answered badly; the last good answer stands');
      return this.caps!.checked;
    }
  }

  /** Asks the driver for its capabilities: the checked copy (the same answer is checked once), or a FerryError. */
  private askCapabilities(): Capabilities {
    let value: unknown;
    try {
      value = this.driver.capabilities();
    } catch (err) {
      throw this.translate(err, 'capabilities');
    }
    if (!this.caps || this.caps.raw !== value) this.caps = { raw: value, checked: this.accept('capabilities', undefined, value, checkCapabilities) };
    return this.caps.checked;
  }

  /**
   * The source half of the host data path, guarded, or undefined when the
   * driver offers none. Asked again each time, like capabilities: a driver
   * process restarted as another version may have gained or lost it.
   */
  get dataSource(): GuardedDataSource | undefined {
    const raw = this.member('dataSource');
    if (!raw) return undefined;
    if (this.source?.raw !== raw) this.source = { raw, guarded: new GuardedDataSource(this, raw as DataSource, this.deadlines.dataPath) };
    return this.source.guarded;
  }

  /** The destination half of the host data path, guarded, or undefined (see dataSource). */
  get dataDestination(): GuardedDataDestination | undefined {
    const raw = this.member('dataDestination');
    if (!raw) return undefined;
    if (this.destination?.raw !== raw) this.destination = { raw, guarded: new GuardedDataDestination(this, raw as DataDestination, this.deadlines.dataPath) };
    return this.destination.guarded;
  }

  /**
   * The driver's change stream, guarded, or undefined when it offers none
   * (asked again each time, like dataSource). What the stream yields is
   * passed on unchecked (its one reader, changes.ts, checks it); what it
   * throws becomes a FerryError; a stream that ignores its signal is left
   * behind when the signal aborts.
   */
  get watchChanges(): ((options: { signal: AbortSignal }) => AsyncIterable<unknown>) | undefined {
    let raw: unknown;
    try {
      raw = this.driver.watchChanges;
    } catch (err) {
      this.log.warn({ err: summarizeThrown(err) }, "reading the driver's watchChanges threw; the backend offers no change feed");
      return undefined;
    }
    if (typeof raw !== 'function') return undefined;
    return ({ signal }) => this.changes(raw as NonNullable<Driver['watchChanges']>, signal);
  }

  private async *changes(raw: NonNullable<Driver['watchChanges']>, signal: AbortSignal): AsyncGenerator<unknown> {
    const name = 'watchChanges';
    let iterator: AsyncIterator<unknown> | undefined;
    const aborted = new Promise<never>((_, reject) => {
      if (signal.aborted) reject(signal.reason);
      else signal.addEventListener('abort', () => reject(signal.reason), { once: true });
    });
    aborted.catch(() => undefined);
    try {
      try {
        iterator = raw.call(this.driver, { signal })[Symbol.asyncIterator]();
      } catch (err) {
        throw this.translate(err, name);
      }
      for (;;) {
        let step: IteratorResult<unknown>;
        try {
          step = await Promise.race([iterator.next(), aborted]);
        } catch (err) {
          if (signal.aborted) return;
          throw this.translate(err, name);
        }
        if (step.done) return;
        yield step.value;
      }
    } finally {
      // Stops the driver's stream however we ended; it must not throw at us.
      void Promise.resolve()
        .then(() => iterator?.return?.())
        .catch(() => undefined);
    }
  }

  /** An optional member of the driver: the object, or undefined when it is absent, not an object, or reading it threw (logged). */
  private member(key: 'dataSource' | 'dataDestination'): object | undefined {
    try {
      const value: unknown = this.driver[key];
      return typeof value === 'object' && value !== null ? value : undefined;
    } catch (err) {
      this.log.warn({ err: summarizeThrown(err) }, `reading the driver's ${key} threw; the backend offers no host data path`);
      return undefined;
    }
  }

  /** The backend's pools; also the health probe. */
  describe(): Promise<{ pools: PoolInfo[] }> {
    return this.invoke('describe', undefined, (signal) => this.driver.describe({ signal }), checkers.describe);
  }

  /** Whether a migration can be done (no state is changed). */
  checkCompatibility(migration: MigrationSpec, log: Log): Promise<CompatibilityResult> {
    return this.invoke('checkCompatibility', migration.id, (signal) => this.driver.checkCompatibility({ migration, signal, log }), checkers.checkCompatibility);
  }

  /** Submits the job. */
  start(call: Omit<MigrationCall, 'signal'>, outer?: AbortSignal): Promise<StartResult> {
    return this.invoke('start', call.migration.id, (signal) => this.driver.start({ ...call, signal }), checkers.start, outer);
  }

  /** Polls phase 1. */
  continue(call: Omit<MigrationCall, 'signal'>, outer?: AbortSignal): Promise<ContinueResult> {
    return this.invoke('continue', call.migration.id, (signal) => this.driver.continue({ ...call, signal }), checkers.continue, outer);
  }

  /** Runs (or resumes) the cutover. */
  complete(call: Omit<MigrationCall, 'signal'>, outer?: AbortSignal): Promise<CompleteResult> {
    return this.invoke('complete', call.migration.id, (signal) => this.driver.complete({ ...call, signal }), checkers.complete, outer);
  }

  /** Stops the job and removes the destination. */
  cancel(call: Omit<MigrationCall, 'signal'>, outer?: AbortSignal): Promise<CancelResult> {
    return this.invoke('cancel', call.migration.id, (signal) => this.driver.cancel({ ...call, signal }), checkers.cancel, outer);
  }

  /** Progress, read-only (used while a cutover reports in_progress, when continue is not called). */
  progress(call: Omit<MigrationCall, 'signal'>, outer?: AbortSignal): Promise<DriverProgress> {
    return this.invoke('progress', call.migration.id, (signal) => this.driver.progress({ ...call, signal }), checkers.progress, outer);
  }

  /** Releases the driver's resources; errors are logged, never thrown. */
  async close(): Promise<void> {
    try {
      await this.driver.close?.();
    } catch (err) {
      this.log.warn({ err: summarizeThrown(err) }, 'driver close failed');
    }
  }

  /** "driver NAME (backend NAME)": how every message of the guard begins. */
  get who(): string {
    return `driver ${this.plugin.name} (backend ${this.backend})`;
  }

  private invoke<T>(name: CallName, migrationId: string | undefined, fn: (signal: AbortSignal) => unknown, check: (v: unknown) => T, outer?: AbortSignal): Promise<T> {
    return this.call(name, this.deadlines[name], migrationId, fn, check, outer);
  }

  /**
   * One bounded, translated, checked call of the driver's code, named
   * `name` in messages, within `timeoutMs`. For the data-path guards
   * (guard-data.ts) as for the calls above. Told to the observer, if any.
   */
  call<T>(name: string, timeoutMs: number, migrationId: string | undefined, fn: (signal: AbortSignal) => unknown, check: (v: unknown) => T, outer?: AbortSignal): Promise<T> {
    // Without an observer, the call itself: nothing wraps it.
    if (!this.observe) return this.guarded(name, timeoutMs, migrationId, fn, check, outer);
    return this.observed(this.observe, name, timeoutMs, migrationId, fn, check, outer);
  }

  /** One call as `call` describes it, timed and told to `observe` once it ends. */
  private async observed<T>(observe: CallObserver, name: string, timeoutMs: number, migrationId: string | undefined, fn: (signal: AbortSignal) => unknown, check: (v: unknown) => T, outer?: AbortSignal): Promise<T> {
    const startedAt = performance.now();
    let outcome: 'ok' | FerryError['code'] = 'ok';
    try {
      return await this.guarded(name, timeoutMs, migrationId, fn, check, outer);
    } catch (err) {
      outcome = err instanceof FerryError ? err.code : 'INTERNAL';
      throw err;
    } finally {
      observe({ backend: this.backend, method: name, outcome, seconds: (performance.now() - startedAt) / 1000 });
    }
  }

  /** One call as `call` describes it, unobserved. */
  private async guarded<T>(name: string, timeoutMs: number, migrationId: string | undefined, fn: (signal: AbortSignal) => unknown, check: (v: unknown) => T, outer?: AbortSignal): Promise<T> {
    const controller = new AbortController();
    const startedAt = performance.now();
    const stopWatching = loopWatch.watch();
    // The call ends at its deadline or at shutdown, whether or not the driver heeds the signal.
    let pastDeadline = false;
    const timer = setTimeout(() => {
      pastDeadline = true;
      controller.abort(new FerryError('DEADLINE_EXCEEDED', `${this.who} did not answer ${name} within ${timeoutMs} ms`));
    }, timeoutMs);
    const unfollow = outer ? followAbort(outer, controller) : () => {};
    let settled: Settled;
    try {
      settled = await settle(fn, controller.signal);
    } finally {
      clearTimeout(timer);
      unfollow();
    }
    const elapsedMs = performance.now() - startedAt;
    const blockedMs = loopWatch.blockedSince(startedAt);
    stopWatching();

    const abandoned = controller.signal.aborted && !pastDeadline;
    // With the loop blocked the deadline timer cannot fire: an answer that comes too late is failed as if it had.
    const late = !abandoned && (pastDeadline || elapsedMs > timeoutMs);
    const blocked = blockedMs >= BLOCKED_LOOP_LOG_MS;
    const said = BLOCKED_LOOP[this.plugin.remote ? 'remote' : 'module'];
    if (blocked) {
      const fields = { migration: migrationId, call: name, blockedMs: Math.round(blockedMs), elapsedMs: Math.round(elapsedMs), deadlineMs: timeoutMs, failed: late };
      this.log[late ? 'error' : 'warn'](fields, said.log);
    }
    if (late) {
      const why = blocked ? `: the event loop was blocked for ${Math.round(blockedMs)} ms during the call (${said.why})` : '';
      const error = new FerryError('DEADLINE_EXCEEDED', `${this.who} did not answer ${name} within ${timeoutMs} ms${why}`);
      controller.abort(error);
      throw error;
    }
    if (!settled.ok) {
      if (abandoned && settled.err === controller.signal.reason) throw this.abandoned(name, settled.err);
      throw this.translate(settled.err, name, migrationId);
    }
    return this.accept(name, migrationId, settled.value, check);
  }

  /** A plain, checked copy of a driver's answer, or DRIVER_ERROR saying what was wrong with it. */
  accept<T>(name: string, migrationId: string | undefined, value: unknown, check: (v: unknown) => T): T {
    try {
      return check(plainCopy(value));
    } catch (err) {
      const problem = err instanceof ShapeError ? err.message : err instanceof UnreadableResult ? `reading it threw (${err.message})` : `checking it failed (${summarizeThrown(err).message})`;
      this.log.error({ migration: migrationId, call: name, problem }, 'driver returned an invalid result');
      throw new FerryError('DRIVER_ERROR', `${this.who} returned an invalid ${name} result: ${bounded(problem)}`);
    }
  }

  /** The call was given up at shutdown (or by whoever owns `outer`): the reason's code, the call named. */
  abandoned(name: string, reason: unknown): FerryError {
    const failure = readFerryError(reason);
    return new FerryError(failure?.code ?? 'UNAVAILABLE', `${this.who} ${name} was abandoned: ${failure?.message ?? 'the call was cancelled'}`);
  }

  /** What the driver threw, as a FerryError naming the driver, the backend and the call. */
  translate(err: unknown, name: string, migrationId?: string): FerryError {
    const failure = readFerryError(err);
    if (failure) return new FerryError(failure.code, `${this.who} failed in ${name}: ${failure.message}`, { details: failure.details });
    // Its text goes to the log only: what a driver threw may say anything, at any length.
    this.log.error({ migration: migrationId, call: name, err: summarizeThrown(err) }, 'driver threw an unexpected error');
    return new FerryError('DRIVER_ERROR', `${this.who} failed in ${name} with an unexpected error (see the daemon log)`);
  }
}

/** Runs the driver's code for one call until it answers, throws or the signal aborts. Never rejects. */
function settle(fn: (signal: AbortSignal) => unknown, signal: AbortSignal): Promise<Settled> {
  const ended = new Promise<never>((_, reject) => {
    if (signal.aborted) reject(signal.reason);
    else signal.addEventListener('abort', () => reject(signal.reason), { once: true });
  });
  // A driver that throws synchronously, or whose answer's `then` throws, rejects here like any other failure.
  const answered = Promise.resolve().then(() => (signal.aborted ? ended : fn(signal)));
  return Promise.race([answered, ended]).then(
    (value): Settled => ({ ok: true, value }),
    (err: unknown): Settled => ({ ok: false, err }),
  );
}
