/**
 * Health as grpc.health.v1 reports it: "" and "ferry.v1.MigrationService" for
 * the daemon, and "backend:<name>" for each backend, NOT_SERVING when its
 * plugin failed to load, its driver's `describe` probe fails, or one of its
 * migrations is stuck because the driver does not answer complete or cancel.
 */
import type { HealthImplementation } from 'grpc-health-check';
import type { PoolInfo } from '../plugins/api/index.ts';
import type { BackendEntry } from '../host/plugins.ts';
import type { Log } from '../lib/log.ts';

/** The health service name of a backend. */
export const backendHealthName = (name: string) => `backend:${name}`;

/** The daemon's own health service names. */
export const DAEMON_HEALTH_NAMES = ['', 'ferry.v1.MigrationService'] as const;

/** One probe's outcome. */
export interface ProbeResult {
  serving: boolean;
  reason: string;
  pools: PoolInfo[];
}

/** Probes each backend's driver and keeps the health service in step. */
export class BackendHealthMonitor {
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;
  /** The last reason logged per backend ('' = serving), so that only changes are logged. */
  private readonly logged = new Map<string, string>();
  /** Each backend's status as last set on the health service (true: SERVING). */
  private readonly status = new Map<string, boolean>();

  constructor(
    private readonly health: HealthImplementation,
    private readonly backends: ReadonlyMap<string, BackendEntry>,
    private readonly log: Log,
    /** Why a backend's driver is not answering its migrations, if it is not (the engine knows). */
    private readonly stuckReason: (backend: string) => string | undefined = () => undefined,
  ) {}

  /** Probes one backend now. Never throws. */
  async probe(name: string): Promise<ProbeResult> {
    const entry = this.backends.get(name);
    let result: ProbeResult;
    if (!entry?.driver) {
      result = { serving: false, reason: entry?.failure ?? 'not configured', pools: [] };
    } else {
      try {
        const { pools } = await entry.driver.describe();
        const stuck = this.stuckReason(name);
        result = stuck ? { serving: false, reason: stuck, pools } : { serving: true, reason: '', pools };
      } catch (err) {
        result = { serving: false, reason: (err as Error).message, pools: [] };
      }
    }
    if (!this.stopped) this.setStatus(name, result.serving);
    this.logChange(name, result);
    return result;
  }

  /** Logs a backend's health when it changes, not on every probe. */
  private logChange(name: string, result: ProbeResult): void {
    const reason = result.serving ? '' : result.reason;
    const before = this.logged.get(name);
    if (before === reason || this.stopped) return;
    this.logged.set(name, reason);
    if (!result.serving) this.log.warn({ backend: name, reason }, 'backend not serving');
    else if (before !== undefined) this.log.info({ backend: name }, 'backend serving again');
  }

  /** Probes every backend now and then every `intervalMs`. */
  async start(intervalMs: number): Promise<void> {
    await this.probeAll();
    this.timer = setInterval(() => void this.probeAll(), intervalMs);
    this.timer.unref();
  }

  /** Stops probing and reports every service NOT_SERVING (the first step of shutdown). */
  stop(): void {
    clearInterval(this.timer);
    this.stopped = true;
    for (const name of DAEMON_HEALTH_NAMES) this.health.setStatus(name, 'NOT_SERVING');
    for (const name of this.backends.keys()) this.setStatus(name, false);
  }

  /** Whether the health service says the backend is SERVING (false before its first probe). */
  isServing(name: string): boolean {
    return this.status.get(name) ?? false;
  }

  private setStatus(name: string, serving: boolean): void {
    this.status.set(name, serving);
    this.health.setStatus(backendHealthName(name), serving ? 'SERVING' : 'NOT_SERVING');
  }

  private async probeAll(): Promise<void> {
    await Promise.all([...this.backends.keys()].map((name) => this.probe(name)));
  }
}
