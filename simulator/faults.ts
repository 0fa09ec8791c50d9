/**
 * Injected faults, for tests and for vendors who want to see their driver
 * cope: latency and the Nth-call failure in the service layer; a stalled
 * copy, a slow disk, a cutover delay and crash points in the job engine.
 *
 * The fault set is persisted with the array, so it survives a restart. A
 * crash point is cleared durably before the process kills itself, or the
 * restarted array would crash again at the same point.
 */
import { EventEmitter } from 'node:events';
import * as grpc from '@grpc/grpc-js';
import type { Log } from '../lib/log.ts';
import { ArrayError, arrayCodeForStatus } from './errors.ts';
import { keys } from './model.ts';
import type { MetaStore } from './metadata.ts';
import { sleep } from './rates.ts';

/** Where the hosting process kills itself. */
export type CrashPoint = 'NONE' | 'DURING_COPY' | 'CUTOVER_BEFORE_SWITCH' | 'CUTOVER_AFTER_SWITCH' | 'START_BEFORE_RECORD';

/** The Nth call of `method` fails with the gRPC status named `code`, once. */
export interface FailNth {
  method: string;
  n: number;
  code: InjectableCode;
}

/** The whole fault set. */
export interface FaultSet {
  latencyMs: Record<string, number>;
  failNth: FailNth[];
  stallCopy: boolean;
  crashAt: CrashPoint;
  copyBandwidthBytesPerSec: number;
  cutoverDelayMs: number;
}

/** No faults. */
export const NO_FAULTS: Readonly<FaultSet> = Object.freeze({
  latencyMs: {},
  failNth: [],
  stallCopy: false,
  crashAt: 'NONE',
  copyBandwidthBytesPerSec: 0,
  cutoverDelayMs: 0,
});

/**
 * The gRPC statuses a fail_nth fault may inject, by name (the ones a real
 * array could answer). The array answers each with its own code for that
 * status (errors.ts), as it would a real failure.
 */
export const INJECTABLE_CODES = [
  'INVALID_ARGUMENT',
  'NOT_FOUND',
  'ALREADY_EXISTS',
  'FAILED_PRECONDITION',
  'UNIMPLEMENTED',
  'RESOURCE_EXHAUSTED',
  'UNAVAILABLE',
  'DEADLINE_EXCEEDED',
  'INTERNAL',
] as const;

/** A status a fail_nth fault may inject. */
export type InjectableCode = (typeof INJECTABLE_CODES)[number];

/** RPCs that are never faulted, so that a test can always clear what it set. */
export const UNFAULTED_METHODS: ReadonlySet<string> = new Set(['SetFaults', 'GetFaults', 'ClearFaults']);

/**
 * The array's faults. Emits 'change' when the set changes (a stalled copy
 * waits for it).
 */
export class Faults extends EventEmitter {
  private current: FaultSet = { ...NO_FAULTS };
  private calls = new Map<string, number>();
  private readonly store: MetaStore;
  private readonly log: Log;
  /** Aborted when the array closes, so injected latency does not hold a closing process. */
  private readonly closing = new AbortController();

  private constructor(store: MetaStore, log: Log) {
    super();
    this.store = store;
    this.log = log;
  }

  /** Loads the persisted fault set. */
  static async open(store: MetaStore, log: Log): Promise<Faults> {
    const faults = new Faults(store, log);
    const saved = await store.get<FaultSet>(keys.faults);
    if (saved) faults.current = { ...NO_FAULTS, ...saved };
    return faults;
  }

  /** The fault set now. */
  get value(): FaultSet {
    return this.current;
  }

  /** Replaces the fault set (checked by the service layer) and persists it. */
  async set(faults: FaultSet): Promise<FaultSet> {
    this.current = { ...faults, latencyMs: { ...faults.latencyMs }, failNth: faults.failNth.map((f) => ({ ...f })) };
    this.calls.clear();
    await this.store.put(keys.faults, this.current, { sync: true });
    this.log.info({ faults: this.current }, 'faults set');
    this.emit('change');
    return this.current;
  }

  /** Removes every fault. */
  clear(): Promise<FaultSet> {
    return this.set({ ...NO_FAULTS });
  }

  /** Applies the latency and fail_nth faults of `method`; called by the service layer before each call. */
  async beforeCall(method: string): Promise<void> {
    if (UNFAULTED_METHODS.has(method)) return;
    const latency = this.current.latencyMs[method] ?? 0;
    if (latency > 0) await sleep(latency, this.closing.signal);
    if (this.closing.signal.aborted) throw new ArrayError('BUSY', 'the array is shutting down; retry');
    const count = (this.calls.get(method) ?? 0) + 1;
    this.calls.set(method, count);
    const hit = this.current.failNth.find((f) => f.method === method && f.n === count);
    if (hit) throw new ArrayError(injectedCode(hit.code), `injected fault: call ${count} of ${method} fails with ${hit.code}`);
  }

  /** Cuts injected latencies short; called when the array closes. */
  close(): void {
    this.closing.abort();
  }

  /** Resolves once the copy is not stalled (at once when it is not), or when `signal` aborts. */
  async whileStalled(signal: AbortSignal): Promise<void> {
    while (this.current.stallCopy && !signal.aborted) {
      await new Promise<void>((resolve) => {
        const done = () => {
          this.off('change', done);
          signal.removeEventListener('abort', done);
          resolve();
        };
        this.once('change', done);
        signal.addEventListener('abort', done, { once: true });
      });
    }
  }

  /**
   * Kills the hosting process with SIGKILL if the crash point is `point`.
   * Clears it durably first, so the restarted array does not crash again.
   */
  async crashIfAt(point: Exclude<CrashPoint, 'NONE'>): Promise<void> {
    if (this.current.crashAt !== point) return;
    this.current = { ...this.current, crashAt: 'NONE' };
    await this.store.put(keys.faults, this.current, { sync: true });
    this.log.warn({ point }, 'injected crash: killing the hosting process');
    process.kill(process.pid, 'SIGKILL');
    // SIGKILL is not delivered synchronously everywhere; never go on past a crash point.
    await new Promise(() => undefined);
  }
}

/** True if `code` may be injected. */
export function isInjectableCode(code: string): code is InjectableCode {
  return (INJECTABLE_CODES as readonly string[]).includes(code);
}

/** The array's code for an injectable status. */
function injectedCode(code: InjectableCode) {
  const found = arrayCodeForStatus(grpc.status[code]);
  if (!found) throw new Error(`no array error code answers with ${code}`);
  return found;
}
