/**
 * Many migrations against an array in its own process: the shares made in
 * advance (in this process, written straight to their files, then the
 * array closed and served by `ferry-sim`), StartMigration sent with a bound
 * on calls in flight, and GetMigration latency measured by an open-loop
 * sender at a fixed rate.
 */
import { performance } from 'node:perf_hooks';
import { FerryClient, type Migration } from '../../client/client.ts';
import type { SimulatorConfig } from '../../simulator/index.ts';
import { openArray, shareFile } from './array.ts';
import { fillFile } from './content.ts';

/** Creates `count` shares `<prefix><i>` of `sizeBytes` in alpha/gold, each filled with its own data, then closes the array. */
export async function prepareShares(dataDir: string, config: Partial<SimulatorConfig>, prefix: string, count: number, sizeBytes: number): Promise<string[]> {
  const array = await openArray(dataDir, config);
  const ids: string[] = [];
  try {
    for (let i = 0; i < count; i++) {
      const shareId = `${prefix}${i}`;
      await array.createShare({ shareId, backend: 'alpha', pool: 'gold', sizeBytes, metadata: {}, snapshots: 0, shareType: '' });
      await fillFile(shareFile(array, dataDir, shareId), sizeBytes, i % 251);
      ids.push(shareId);
    }
  } finally {
    await array.close();
  }
  return ids;
}

/** Runs `fn` over `items` with at most `limit` in flight; results in item order. */
export async function bounded<T, R>(items: readonly T[], limit: number, fn: (item: T, i: number) => Promise<R>): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(limit, items.length) }, async () => {
      for (let i = next++; i < items.length; i = next++) out[i] = await fn(items[i]!, i);
    }),
  );
  return out;
}

/** Starts one migration per share (alpha/<share> -> beta#bronze, writable) with at most 32 calls in flight; `started` hears of each as it is accepted. */
export function startMigrations(client: FerryClient, shares: readonly string[], extra: { maxBandwidthBytesPerSec?: number } = {}, started?: (m: Migration) => void): Promise<Migration[]> {
  return bounded(shares, 32, async (shareId) => {
    const m = await client.startMigration({ share: { backend: 'alpha', shareId }, destination: 'beta#bronze', writable: true, ...extra });
    started?.(m);
    return m;
  });
}

/** Every migration the daemon has, all pages. */
export async function listAll(client: FerryClient, state?: Migration['state']): Promise<Migration[]> {
  const out: Migration[] = [];
  let pageToken = '';
  do {
    const page = await client.listMigrations({ pageSize: 1000, pageToken, ...(state ? { state } : {}) });
    out.push(...page.migrations);
    pageToken = page.nextPageToken;
  } while (pageToken);
  return out;
}

/** An open-loop GetMigration sender: calls go out on schedule whether or not earlier ones have answered. */
export class LatencySampler {
  /** Latencies of answered calls, ms. */
  readonly ms: number[] = [];
  errors = 0;
  /** How late the sender fired its worst call: a late sender would hide latency. */
  maxLagMs = 0;
  private stopped = false;
  private readonly done: Promise<void>;

  /** Starts sending `rate` calls per second, round-robin over `ids()` (read at each call, so it may grow). */
  constructor(client: FerryClient, ids: () => readonly string[], rate: number) {
    this.done = (async () => {
      const interval = 1000 / rate;
      const pending: Promise<void>[] = [];
      const t0 = performance.now();
      for (let i = 0; !this.stopped; i++) {
        const due = t0 + i * interval;
        const wait = due - performance.now();
        if (wait > 1) await new Promise((r) => setTimeout(r, wait));
        if (this.stopped) break;
        this.maxLagMs = Math.max(this.maxLagMs, performance.now() - due);
        const list = ids();
        if (list.length === 0) continue;
        const start = performance.now();
        pending.push(
          client.getMigration(list[i % list.length]!).then(
            () => void this.ms.push(performance.now() - start),
            () => void this.errors++,
          ),
        );
      }
      await Promise.all(pending);
    })();
  }

  /** Stops sending; resolves once every call sent has answered. */
  async stop(): Promise<this> {
    this.stopped = true;
    await this.done;
    return this;
  }
}
