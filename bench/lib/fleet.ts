/**
 * Fleets of migrations for the scale scenarios: shares made in advance in
 * bulk, StartMigration sent as a timed burst with a bound on calls in
 * flight, waiting until no migration is still copying, listing every page,
 * and an open-loop GetMigration sender.
 */
import { mkdir, open } from 'node:fs/promises';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { FerryClient, type Migration } from '../../client/client.ts';
import type { SimulatorConfig } from '../../simulator/index.ts';
import { newFileId } from '../../simulator/jobs.ts';
import { MetaStore } from '../../simulator/metadata.ts';
import { keys, type ShareRecord } from '../../simulator/model.ts';
import { openArray } from './array.ts';
import { content } from './content.ts';
import { run } from './system.ts';

const MiB = 2 ** 20;
/** Each share's data is a window of one stream this long, at an offset of its own (so no two neighbours hold the same bytes). */
const STREAM_BYTES = 64 * MiB;
/** Window offsets are multiples of this (the stream is made in 16-byte blocks): 4,096 distinct ones. */
const WINDOW_STEP = 16 * 1024;
/** Files written at once. */
const WRITERS = 16;
/** Shares larger than this are written in pieces of it, each made fresh, rather than cut from the shared stream. */
const PIECE_BYTES = 8 * MiB;

/** How prepareShares fills each share. */
export interface FillOptions {
  /**
   * Bytes of data at the start of each share (default: all of it). The
   * rest is a hole: it reads as zeros, and the array's first pass copies
   * it without writing it to the destination.
   */
  dataBytes?: number;
}

/**
 * Creates `count` shares `<prefix><i>` of `sizeBytes` in alpha/gold, each
 * holding data of its own, and leaves the array closed (for `ferry-sim` to
 * serve). Fast at ten thousand: the share records go to the array's
 * database in one batch (the records CreateShare writes, without its three
 * fsyncs per share), the files are written 16 at a time, and one `sync` at
 * the end puts everything on the disk before anything is measured. The
 * array is then opened once to check that it has every share (it would
 * delete a data file no record names) and that the pool has room.
 */
export async function prepareShares(dataDir: string, config: Partial<SimulatorConfig>, prefix: string, count: number, sizeBytes: number, options: FillOptions = {}): Promise<string[]> {
  const dataBytes = Math.min(sizeBytes, options.dataBytes ?? sizeBytes);
  const shareDir = path.join(dataDir, 'shares');
  await mkdir(shareDir, { recursive: true });
  const now = Date.now();
  const records: ShareRecord[] = Array.from({ length: count }, (_, i) => ({
    shareId: `${prefix}${i}`,
    backend: 'alpha',
    pool: 'gold',
    fileId: newFileId(),
    sizeBytes,
    metadata: {},
    snapshots: 0,
    shareType: 'default',
    createdAtMs: now,
    jobId: '',
  }));
  const store = await MetaStore.open(path.join(dataDir, 'meta'));
  try {
    await store.write(records.map((r) => ({ key: keys.share(r.shareId), value: r })), { sync: true });
  } finally {
    await store.close();
  }
  const stream = dataBytes <= PIECE_BYTES ? content(0, STREAM_BYTES + dataBytes) : undefined;
  await bounded(records, WRITERS, async (r, i) => {
    const fh = await open(path.join(shareDir, `${r.fileId}.img`), 'w');
    try {
      if (stream) {
        const at = ((i * 40_009) % (STREAM_BYTES / WINDOW_STEP)) * WINDOW_STEP;
        await fh.write(stream, at, dataBytes, 0);
      } else {
        for (let off = 0; off < dataBytes; off += PIECE_BYTES) {
          const piece = content(off, Math.min(PIECE_BYTES, dataBytes - off), i % 251);
          await fh.write(piece, 0, piece.length, off);
        }
      }
      await fh.truncate(sizeBytes);
    } finally {
      await fh.close();
    }
  });
  await run('sync', []);
  const array = await openArray(dataDir, config);
  try {
    for (const r of records) array.getShare(r.shareId);
    const gold = array.listBackends().find((b) => b.name === 'alpha')?.pools.find((p) => p.name === 'gold');
    if (!gold || gold.usedBytes > gold.capacityBytes) throw new Error(`prepareShares: pool alpha/gold cannot hold ${count} shares of ${sizeBytes} bytes`);
  } finally {
    await array.close();
  }
  return records.map((r) => r.shareId);
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

/** StartMigration calls in flight by default: the bound the scenarios used before the burst was measured. */
export const START_IN_FLIGHT = 32;

/** What a burst of StartMigration calls did. */
export interface Burst {
  migrations: Migration[];
  /** Calls in flight. */
  inFlight: number;
  /** First call sent to last answer, ms. */
  ms: number;
  /** Accepted per second over the burst. */
  perSec: number;
  /** performance.now() when the last was accepted. */
  lastAcceptedAt: number;
  /** This process's CPU (user + system) over the burst, percent of one core: near 100 means the client was the limit. */
  clientCpuPercent: number;
}

/**
 * Starts one migration per share (alpha/<share> -> beta#bronze, writable)
 * with `inFlight` calls in flight; `started` hears of each as it is accepted.
 */
export async function startMigrations(
  client: FerryClient,
  shares: readonly string[],
  extra: { maxBandwidthBytesPerSec?: number } = {},
  started?: (m: Migration) => void,
  inFlight = START_IN_FLIGHT,
): Promise<Burst> {
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  let lastAcceptedAt = t0;
  const migrations = await bounded(shares, inFlight, async (shareId) => {
    const m = await client.startMigration({ share: { backend: 'alpha', shareId }, destination: 'beta#bronze', writable: true, ...extra });
    lastAcceptedAt = performance.now();
    started?.(m);
    return m;
  });
  const ms = lastAcceptedAt - t0;
  const cpu = process.cpuUsage(cpu0);
  return { migrations, inFlight, ms, perSec: (shares.length / ms) * 1000, lastAcceptedAt, clientCpuPercent: ((cpu.user + cpu.system) / 1000 / ms) * 100 };
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

/**
 * Waits until no migration is STARTING or IN_PROGRESS, asking with two
 * one-item pages every `everyMs` (cheap at any count, unlike listing them
 * all). Resolves true, or false after `limitMs`.
 */
export async function untilNoneCopying(client: FerryClient, limitMs: number, everyMs = 250): Promise<boolean> {
  const t0 = performance.now();
  for (;;) {
    const [starting, copying] = await Promise.all(
      (['MIGRATION_STATE_STARTING', 'MIGRATION_STATE_IN_PROGRESS'] as const).map((state) => client.listMigrations({ state, pageSize: 1 })),
    );
    if (starting!.migrations.length === 0 && copying!.migrations.length === 0) return true;
    if (performance.now() - t0 > limitMs) return false;
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

/** Times `pages` ListMigrations pages of `pageSize`, walking the list from the start (and again from the start at its end); ms per page. */
export async function timePages(client: FerryClient, pages: number, pageSize = 1000): Promise<number[]> {
  const ms: number[] = [];
  let pageToken = '';
  for (let i = 0; i < pages; i++) {
    const t0 = performance.now();
    const page = await client.listMigrations({ pageSize, pageToken });
    ms.push(performance.now() - t0);
    pageToken = page.nextPageToken;
  }
  return ms;
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

  /** Starts sending `rate` calls per second, round-robin over `ids()` (read at each call, so it may grow); `seen` hears of every answer. */
  constructor(client: FerryClient, ids: () => readonly string[], rate: number, seen?: (m: Migration) => void) {
    this.done = (async () => {
      const interval = 1000 / rate;
      const pending = new Set<Promise<void>>();
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
        const call: Promise<void> = client.getMigration(list[i % list.length]!).then(
          (m) => {
            this.ms.push(performance.now() - start);
            seen?.(m);
          },
          () => void this.errors++,
        );
        pending.add(call);
        void call.finally(() => pending.delete(call));
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
