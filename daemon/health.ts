/**
 * Health as grpc.health.v1 reports it: "" and "ferry.v1.MigrationService" for
 * the daemon, and "backend:<name>" for each backend, NOT_SERVING when its
 * plugin failed to load or its driver's `describe` probe fails.
 */
import type { HealthImplementation } from 'grpc-health-check';
import type { PoolInfo } from '../plugins/api/index.ts';
import type { BackendEntry } from './engine.ts';
import type { Log } from './log.ts';

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

  constructor(
    private readonly health: HealthImplementation,
    private readonly backends: ReadonlyMap<string, BackendEntry>,
    private readonly log: Log,
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
        result = { serving: true, reason: '', pools };
      } catch (err) {
        result = { serving: false, reason: (err as Error).message, pools: [] };
      }
    }
    if (!this.stopped) this.health.setStatus(backendHealthName(name), result.serving ? 'SERVING' : 'NOT_SERVING');
    return result;
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
    for (const name of this.backends.keys()) this.health.setStatus(backendHealthName(name), 'NOT_SERVING');
  }

  private async probeAll(): Promise<void> {
    const results = await Promise.all([...this.backends.keys()].map(async (name) => [name, await this.probe(name)] as const));
    for (const [name, r] of results) if (!r.serving) this.log.warn({ backend: name, reason: r.reason }, 'backend not serving');
  }
}
