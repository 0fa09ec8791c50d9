/**
 * ferryd's Prometheus metrics: one prom-client Registry per daemon (never
 * the global default one, so several daemons in one process keep apart),
 * with prom-client's process and Node.js metrics on it. Every name is in
 * the README's Metrics table, with its labels.
 *
 * Two kinds of figures. What the daemon already keeps (its migrations, the
 * engine's call slots, each backend's health) is read at scrape time by
 * collect() callbacks, so the engine and the health monitor stay the one
 * owner of that state and nothing is counted twice. What happens and is
 * then gone (a driver call's latency, a LevelDB write, a gRPC request's
 * status, a phase 1 ending, a cutover's freeze) is observed as it happens,
 * through the optional hooks that the engine, the guard, the store and the
 * gRPC server take: none of them imports prom-client, and a daemon with
 * metrics off passes no hooks and pays nothing.
 *
 * The per-migration series (`ferry_migration_*`) are written only for
 * migrations that are not terminal, so their number is bounded by the
 * migrations in flight, not by every migration the daemon ever ran; a
 * migration's series go at the first scrape after it ends.
 */
import * as grpc from '@grpc/grpc-js';
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { CallObserver } from '../host/guard.ts';
import type { Engine } from './engine.ts';
import { STATES, TERMINAL_STATES, type MigrationRecord } from './migration.ts';
import type { EngineHooks } from './options.ts';
import type { StoreWriteObserver } from './store.ts';

/** What the metrics read at scrape time. */
export interface MetricSources {
  /** The engine once it exists (its records stay readable after it stops). */
  engine(): Engine | undefined;
  /** The configured backends, so that each has its series from the start (0 rather than absent). */
  backends: readonly string[];
  /** Whether the health service says the backend is SERVING. */
  serving(backend: string): boolean;
}

/** Bucket bounds (s): phase 1 runs for seconds to a day. */
const PHASE1_BUCKETS = [1, 5, 15, 30, 60, 120, 300, 600, 1_800, 3_600, 7_200, 14_400, 43_200, 86_400];
/** Bucket bounds (s): a freeze is meant to take tens of ms, and is bounded by the cutover window (1 s by default). */
const FREEZE_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30];
/** Bucket bounds (s): a driver call from a local poll of 1 ms to a cutover of minutes (the complete deadline is 300 s). */
const CALL_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300];
/** Bucket bounds (s): a LevelDB batch, from the OS cache to an fsync on a slow disk. */
const STORE_BUCKETS = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1];

/** The figures the engine's collect() callbacks read, taken once per scrape. */
interface EngineView {
  /** Migrations by `${state}\0${backend}`. */
  byState: Map<string, number>;
  /** Bytes copied by source backend, over every migration the daemon keeps. */
  copied: Map<string, number>;
  live: MigrationRecord[];
  slots: { capacity: number; held: number; waiting: number };
}

/** ferryd's metrics: the registry, the hooks that feed it, and the gRPC interceptor that counts requests. */
export class DaemonMetrics {
  /** This daemon's own registry. */
  readonly registry = new Registry();
  /** Counts every gRPC request by method and status code: put it first among the server's interceptors (see countingInterceptor). */
  readonly grpcInterceptor: grpc.ServerInterceptor;
  /** The engine's hooks that observe phase 1 ending and the cutover's freeze. */
  readonly engineHooks: Required<Pick<EngineHooks, 'transitioned'>>;
  /** Observes each driver call's latency (the guard's CallObserver). */
  readonly driverCall: CallObserver;
  /** Observes each LevelDB write's latency (the store's observer). */
  readonly storeWrite: StoreWriteObserver;
  private cached: EngineView | undefined;

  constructor(private readonly sources: MetricSources) {
    const registers = [this.registry];
    collectDefaultMetrics({ register: this.registry });
    const view = () => this.view();

    new Gauge({
      name: 'ferry_migrations',
      help: 'Migrations the daemon keeps, by state and source backend.',
      labelNames: ['state', 'backend'],
      registers,
      collect() {
        this.reset();
        for (const [key, n] of view()?.byState ?? []) {
          const [state, backend] = key.split('\0') as [string, string];
          this.set({ state, backend }, n);
        }
      },
    });
    new Counter({
      name: 'ferry_copied_bytes_total',
      help: "Bytes copied in phase 1, by source backend: every kept migration's copied bytes as last written, so a restart neither resets it nor counts a resumed copy twice.",
      labelNames: ['backend'],
      registers,
      collect() {
        this.reset();
        for (const [backend, bytes] of view()?.copied ?? []) this.inc({ backend }, bytes);
      },
    });
    this.perMigration('ferry_migration_copied_bytes', "A live migration's bytes copied, as last written (what GetMigration shows).", (r) => r.progress.copiedBytes);
    this.perMigration('ferry_migration_progress_ratio', "A live migration's progress, 0 to 1; 1 only once phase 1 is done.", (r) => r.progress.percent / 100);
    this.perMigration('ferry_migration_last_progress_timestamp_seconds', "When a live migration's progress last moved (unix time), as its stall timeout sees it; its runner's start until it first moves.", (r, engine) => {
      const at = engine.lastProgressAt(r.id);
      return at === undefined ? undefined : at / 1000;
    });
    new Gauge({
      name: 'ferry_migration_state',
      help: "A live migration's state: 1 on the series of the state it is in.",
      labelNames: ['migration', 'backend', 'state'],
      registers,
      collect() {
        this.reset();
        for (const r of view()?.live ?? []) this.set({ migration: r.id, backend: r.spec.source.backend, state: r.state }, 1);
      },
    });
    const slotGauge = (name: string, help: string, figure: (slots: EngineView['slots']) => number) =>
      new Gauge({
        name,
        help,
        registers,
        collect() {
          const slots = view()?.slots;
          if (slots) this.set(figure(slots));
        },
      });
    slotGauge('ferry_engine_call_slots', 'Driver calls the engine makes at once at most (engine.maxConcurrentCalls).', (s) => s.capacity);
    slotGauge('ferry_engine_call_slots_in_use', 'Driver calls in flight now.', (s) => s.held);
    slotGauge('ferry_engine_runners_waiting', "Migrations' runners waiting for a call slot (or for a start's share of them).", (s) => s.waiting);
    new Gauge({
      name: 'ferry_backend_up',
      help: 'Whether a backend is SERVING (1) or NOT_SERVING (0), as grpc.health.v1 reports it for backend:<name>.',
      labelNames: ['backend'],
      registers,
      collect() {
        for (const backend of sources.backends) this.set({ backend }, sources.serving(backend) ? 1 : 0);
      },
    });

    const phase1 = new Histogram({ name: 'ferry_phase1_duration_seconds', help: 'How long phase 1 took, from IN_PROGRESS to PHASE1_DONE, by source backend.', labelNames: ['backend'], buckets: PHASE1_BUCKETS, registers });
    const freeze = new Histogram({ name: 'ferry_cutover_freeze_seconds', help: "How long a successful cutover froze writes, as its driver reported it (cutover freeze_ms), by source backend.", labelNames: ['backend'], buckets: FREEZE_BUCKETS, registers });
    this.engineHooks = {
      transitioned: (record, from) => {
        const backend = record.spec.source.backend;
        if (from === 'IN_PROGRESS' && record.state === 'PHASE1_DONE' && record.startedAt !== undefined && record.phase1DoneAt !== undefined) {
          phase1.observe({ backend }, Math.max(0, record.phase1DoneAt - record.startedAt) / 1000);
        }
        const freezeMs = record.cutover?.freezeMs;
        if (record.state === 'SUCCESS' && typeof freezeMs === 'number' && Number.isFinite(freezeMs)) freeze.observe({ backend }, freezeMs / 1000);
      },
    };

    const calls = new Histogram({
      name: 'ferry_driver_call_duration_seconds',
      help: "How long driver calls took, by backend, method (the guard's call name) and outcome (ok, or the error code).",
      labelNames: ['backend', 'method', 'outcome'],
      buckets: CALL_BUCKETS,
      registers,
    });
    this.driverCall = ({ backend, method, outcome, seconds }) => calls.observe({ backend, method, outcome }, seconds);

    const writes = new Histogram({
      name: 'ferry_store_write_duration_seconds',
      help: 'How long LevelDB writes took: kind migrations (a batch of migration records) or place (a host-path copy\'s place).',
      labelNames: ['kind'],
      buckets: STORE_BUCKETS,
      registers,
    });
    this.storeWrite = (kind, seconds) => writes.observe({ kind }, seconds);

    const requests = new Counter({ name: 'ferry_grpc_requests_total', help: 'gRPC requests answered, by method (service/method) and status code; a stream counts when it ends.', labelNames: ['method', 'code'], registers });
    this.grpcInterceptor = countingInterceptor(requests);
  }

  /** The text format's content type, for the HTTP answer. */
  get contentType(): string {
    return this.registry.contentType;
  }

  /** Every metric in the text format. */
  scrape(): Promise<string> {
    return this.registry.metrics();
  }

  /** A gauge with one series per live migration, {migration, backend}, whose value `figure` reads (undefined: no series). */
  private perMigration(name: string, help: string, figure: (record: MigrationRecord, engine: Engine) => number | undefined): void {
    const view = () => this.view();
    const engine = () => this.sources.engine();
    new Gauge({
      name,
      help,
      labelNames: ['migration', 'backend'],
      registers: [this.registry],
      collect() {
        this.reset();
        const e = engine();
        if (!e) return;
        for (const r of view()?.live ?? []) {
          const value = figure(r, e);
          if (value !== undefined) this.set({ migration: r.id, backend: r.spec.source.backend }, value);
        }
      },
    });
  }

  /**
   * The engine's figures, read in one pass over its migrations. prom-client
   * calls every collect() of a scrape in the same turn, so the first reads
   * and the rest reuse it; the next scrape reads afresh.
   */
  private view(): EngineView | undefined {
    if (this.cached) return this.cached;
    const engine = this.sources.engine();
    if (!engine) return undefined;
    const byState = new Map<string, number>();
    const copied = new Map<string, number>();
    for (const backend of this.sources.backends) {
      copied.set(backend, 0);
      for (const state of STATES) byState.set(`${state}\0${backend}`, 0);
    }
    const live: MigrationRecord[] = [];
    for (const record of engine.migrations()) {
      const backend = record.spec.source.backend;
      const key = `${record.state}\0${backend}`;
      byState.set(key, (byState.get(key) ?? 0) + 1);
      copied.set(backend, (copied.get(backend) ?? 0) + record.progress.copiedBytes);
      if (!TERMINAL_STATES.has(record.state)) live.push(record);
    }
    this.cached = { byState, copied, live, slots: engine.callSlots() };
    queueMicrotask(() => (this.cached = undefined));
    return this.cached;
  }
}

/**
 * A grpc-js server interceptor that counts each request once, when it
 * ends, in `requests` {method, code}: by the status the server sends, or
 * CANCELLED when the client goes first. Method names come from the
 * server's own handlers (grpc-js answers an unknown method before any
 * interceptor runs), so the label's values are bounded.
 *
 * Put it first among a server's interceptors (per-port ones, from the
 * credentials, come before the server's own): an interceptor that refuses
 * a call sends its status inward, so a counter listed after it never sees
 * the code and counts the call as CANCELLED (test/daemon/metrics-grpc.test.ts).
 */
export function countingInterceptor(requests: Counter<'method' | 'code'>): grpc.ServerInterceptor {
  return (descriptor, call) => {
    const method = descriptor.path.replace(/^\//, '');
    let counted = false;
    const count = (code: grpc.status) => {
      if (counted) return;
      counted = true;
      requests.inc({ method, code: grpc.status[code] ?? String(code) });
    };
    return new grpc.ServerInterceptingCall(call, {
      start: (next) => next({ onCancel: () => count(grpc.status.CANCELLED) }),
      sendStatus: (status, next) => {
        count(status.code);
        next(status);
      },
    });
  };
}
