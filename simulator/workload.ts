/**
 * The workload generator: writes to a share at a set rate through the same
 * data path as WriteShare, and records every write so that a later verify
 * can say whether every acknowledged write is still readable.
 *
 * A write's record goes to the metadata store before the write is issued
 * ("pending seq S") and again once it is acknowledged ("acked S"). After a
 * crash, a block with a pending write may hold either the acknowledged
 * content or the pending one, and both are accepted: the pending write was
 * never acknowledged, so losing it loses nothing. Content is computed from
 * (workload id, seq, block), so nothing but the sequence numbers is stored.
 * No two writes are in flight on the same block, so "the last acknowledged
 * write of a block" is well-defined.
 */
import { createCipheriv, createHash, randomUUID } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { ArrayError } from './errors.ts';
import type { Log } from '../lib/log.ts';
import type { DataPath } from './datapath.ts';
import type { MetaStore } from './metadata.ts';
import { keys, shareNotFound } from './model.ts';
import type { ShareRecord } from './model.ts';
import { TokenBucket, sleep } from './rates.ts';

/** Where a workload writes. */
export type WritePattern = 'SEQUENTIAL' | 'RANDOM' | 'HOTSPOT';

/** What StartWorkload asked for, defaults applied. */
export interface WorkloadSpec {
  shareId: string;
  rateBytesPerSec: number;
  blockSize: number;
  pattern: WritePattern;
  seed: number;
  concurrency: number;
  hotspotPercent: number;
}

/** What a workload measured. */
export interface WorkloadStats {
  writesAcked: number;
  bytesAcked: number;
  writesFailed: number;
  lastError: string;
  latencyMaxMs: number;
  latencyP50Ms: number;
  latencyP99Ms: number;
}

/** A workload, as persisted and shown. */
export interface WorkloadRecord {
  workloadId: string;
  spec: WorkloadSpec;
  state: 'RUNNING' | 'STOPPED';
  stopReason: string;
  stats: WorkloadStats;
  startedAtMs: number;
  stoppedAtMs: number;
}

/** A block's record: [last acknowledged seq (0: none), pending seq (0: none), 1 if its content is unknown]. */
type BlockRecord = [number, number, number?];

/** What VerifyWorkload answers. */
export interface VerifyResult {
  checked: number;
  lost: number;
  lostOffsets: number[];
}

const MAX_LATENCY_SAMPLES = 200_000;

/** The deterministic content of write `seq` of a workload to `block`: AES-CTR keystream, fast and unique per write. */
export function workloadContent(workloadId: string, seq: number, block: number, size: number): Buffer {
  const key = createHash('sha256').update(workloadId).digest().subarray(0, 16);
  const iv = Buffer.alloc(16);
  iv.writeBigUInt64BE(BigInt(seq), 0);
  iv.writeUInt32BE(block, 8);
  return createCipheriv('aes-128-ctr', key, iv).update(Buffer.alloc(size));
}

/** A small seeded PRNG (mulberry32), so runs with the same seed pick the same blocks. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

class Running {
  readonly abort = new AbortController();
  readonly inflight = new Set<number>();
  readonly acked = new Map<number, number>();
  readonly latencies: number[] = [];
  readonly bucket: TokenBucket;
  readonly random: () => number;
  lanes: Promise<void>[] = [];
  seq = 0;
  nextSequential = 0;
  timer: NodeJS.Timeout | null = null;

  constructor(readonly rec: WorkloadRecord, readonly blocks: number) {
    this.bucket = new TokenBucket(rec.spec.rateBytesPerSec);
    this.random = prng(rec.spec.seed);
  }
}

/** Every workload of the array. */
export class WorkloadManager {
  private readonly records = new Map<string, WorkloadRecord>();
  private readonly running = new Map<string, Running>();
  private readonly store: MetaStore;
  private readonly datapath: DataPath;
  private readonly shares: Map<string, ShareRecord>;
  private readonly log: Log;

  private constructor(store: MetaStore, datapath: DataPath, shares: Map<string, ShareRecord>, log: Log) {
    this.store = store;
    this.datapath = datapath;
    this.shares = shares;
    this.log = log;
  }

  /** Loads the workloads; those that were running when the array stopped are STOPPED, their records intact. */
  static async open(store: MetaStore, datapath: DataPath, shares: Map<string, ShareRecord>, log: Log): Promise<WorkloadManager> {
    const manager = new WorkloadManager(store, datapath, shares, log);
    for (const [, rec] of await store.entries<WorkloadRecord>('wl!')) {
      if (rec.state === 'RUNNING') {
        rec.state = 'STOPPED';
        rec.stopReason = 'array restarted';
        rec.stoppedAtMs = Date.now();
        await store.put(keys.workload(rec.workloadId), rec);
      }
      manager.records.set(rec.workloadId, rec);
    }
    return manager;
  }

  /** StartWorkload (fields already checked, except against the share). */
  async start(spec: WorkloadSpec): Promise<WorkloadRecord> {
    const share = this.shares.get(spec.shareId);
    if (!share) throw shareNotFound(spec.shareId);
    if (spec.blockSize > share.sizeBytes) {
      throw new ArrayError('BAD_REQUEST', `block_size ${spec.blockSize} is larger than share ${share.shareId} (${share.sizeBytes} bytes)`);
    }
    const blocks = Math.floor(share.sizeBytes / spec.blockSize);
    const rec: WorkloadRecord = {
      workloadId: `wl-${randomUUID()}`,
      spec: { ...spec, concurrency: Math.min(spec.concurrency, blocks) },
      state: 'RUNNING',
      stopReason: '',
      stats: { writesAcked: 0, bytesAcked: 0, writesFailed: 0, lastError: '', latencyMaxMs: 0, latencyP50Ms: 0, latencyP99Ms: 0 },
      startedAtMs: Date.now(),
      stoppedAtMs: 0,
    };
    this.records.set(rec.workloadId, rec);
    await this.store.put(keys.workload(rec.workloadId), rec, { sync: true });
    const w = new Running(rec, blocks);
    this.running.set(rec.workloadId, w);
    for (let i = 0; i < rec.spec.concurrency; i++) w.lanes.push(this.lane(w));
    // Statistics are saved now and then, so a crash leaves recent ones; the block records are what matters.
    w.timer = setInterval(() => void this.saveStats(w).catch(() => undefined), 1000);
    w.timer.unref();
    this.log.info({ workload: rec.workloadId, spec: rec.spec }, 'workload started');
    return rec;
  }

  /** GetWorkload. */
  get(workloadId: string): WorkloadRecord {
    const rec = this.records.get(workloadId);
    if (!rec) throw new ArrayError('NO_SUCH_OBJECT', `workload ${workloadId} not found`);
    const w = this.running.get(workloadId);
    if (w) this.updateLatency(w);
    return rec;
  }

  /** ListWorkloads: oldest first, optionally only those of one share (which may be gone). */
  list(shareId = ''): WorkloadRecord[] {
    return [...this.records.values()]
      .filter((rec) => !shareId || rec.spec.shareId === shareId)
      .sort((a, b) => a.startedAtMs - b.startedAtMs || (a.workloadId < b.workloadId ? -1 : 1))
      .map((rec) => this.get(rec.workloadId));
  }

  /** StopWorkload: no new writes; waits for those in flight. */
  async stop(workloadId: string, reason = ''): Promise<WorkloadRecord> {
    const rec = this.get(workloadId);
    const w = this.running.get(workloadId);
    if (!w) return rec;
    w.abort.abort();
    await Promise.all(w.lanes);
    if (w.timer) clearInterval(w.timer);
    this.running.delete(workloadId);
    this.updateLatency(w);
    rec.state = 'STOPPED';
    rec.stopReason = reason;
    rec.stoppedAtMs = Date.now();
    await this.store.put(keys.workload(workloadId), rec, { sync: true });
    this.log.info({ workload: workloadId, stats: rec.stats, reason }, 'workload stopped');
    return rec;
  }

  /** Stops every workload writing to a share (before the share is deleted). */
  async stopForShare(shareId: string, reason: string): Promise<void> {
    for (const w of [...this.running.values()]) if (w.rec.spec.shareId === shareId) await this.stop(w.rec.workloadId, reason);
  }

  /** VerifyWorkload: reads back every block with an acknowledged write. */
  async verify(workloadId: string): Promise<VerifyResult> {
    const rec = this.get(workloadId);
    if (rec.state === 'RUNNING') throw new ArrayError('WRONG_STATE', `workload ${workloadId} is running; StopWorkload first`);
    if (!this.shares.has(rec.spec.shareId)) {
      throw new ArrayError('WRONG_STATE', `share ${rec.spec.shareId} of workload ${workloadId} was deleted; nothing to verify`);
    }
    await this.store.flush();
    const result: VerifyResult = { checked: 0, lost: 0, lostOffsets: [] };
    const { blockSize } = rec.spec;
    for (const [key, [acked, pending, unknown]] of await this.store.entries<BlockRecord>(keys.workloadBlocks(workloadId))) {
      if (acked === 0 || unknown === 1) continue;
      const block = Number(key.slice(key.lastIndexOf('!') + 1));
      result.checked++;
      const data = await this.datapath.read(rec.spec.shareId, block * blockSize, blockSize);
      if (data.equals(workloadContent(workloadId, acked, block, blockSize))) continue;
      if (pending > 0 && data.equals(workloadContent(workloadId, pending, block, blockSize))) continue;
      result.lost++;
      if (result.lostOffsets.length < 10) result.lostOffsets.push(block * blockSize);
    }
    this.log.info({ workload: workloadId, ...result }, 'workload verified');
    return result;
  }

  /** Stops every workload. */
  async close(): Promise<void> {
    for (const id of [...this.running.keys()]) await this.stop(id, 'array closed');
  }

  private async lane(w: Running): Promise<void> {
    const { rec } = w;
    const { signal } = w.abort;
    const { blockSize } = rec.spec;
    while (!signal.aborted) {
      await w.bucket.take(blockSize, signal);
      if (signal.aborted) break;
      const block = this.pick(w);
      const seq = ++w.seq;
      const prev = w.acked.get(block) ?? 0;
      const key = keys.workloadBlock(rec.workloadId, block);
      w.inflight.add(block);
      try {
        await this.store.put(key, [prev, seq] satisfies BlockRecord);
        const data = workloadContent(rec.workloadId, seq, block, blockSize);
        const t0 = performance.now();
        await this.datapath.write(rec.spec.shareId, block * blockSize, data);
        const latency = performance.now() - t0;
        w.acked.set(block, seq);
        await this.store.put(key, [seq, 0] satisfies BlockRecord);
        rec.stats.writesAcked++;
        rec.stats.bytesAcked += blockSize;
        if (latency > rec.stats.latencyMaxMs) rec.stats.latencyMaxMs = latency;
        if (w.latencies.length < MAX_LATENCY_SAMPLES) w.latencies.push(latency);
        else w.latencies[Math.floor(w.random() * MAX_LATENCY_SAMPLES)] = latency;
      } catch (err) {
        rec.stats.writesFailed++;
        rec.stats.lastError = (err as Error)?.message ?? String(err);
        // Our own errors are raised before any byte is written; anything else may have left the block torn.
        const known = err instanceof ArrayError;
        await this.store.put(key, (known ? [prev, 0] : [prev, seq, 1]) satisfies BlockRecord).catch(() => undefined);
        if (known && err.code === 'NO_SUCH_OBJECT') {
          void this.stop(rec.workloadId, `share ${rec.spec.shareId} is gone`);
          break;
        }
        await sleep(10, signal); // Do not spin on a read-only or frozen share.
      } finally {
        w.inflight.delete(block);
      }
    }
  }

  private pick(w: Running): number {
    const { spec } = w.rec;
    if (spec.pattern === 'SEQUENTIAL') {
      for (;;) {
        const b = w.nextSequential;
        w.nextSequential = (b + 1) % w.blocks;
        if (!w.inflight.has(b)) return b;
      }
    }
    const hot = Math.max(1, Math.floor((w.blocks * spec.hotspotPercent) / 100));
    for (let tries = 0; ; tries++) {
      const span = spec.pattern === 'HOTSPOT' && w.random() < 0.9 ? hot : w.blocks;
      const b = Math.floor(w.random() * span);
      if (!w.inflight.has(b)) return b;
      if (tries > 16) {
        for (let i = 1; i < w.blocks; i++) if (!w.inflight.has((b + i) % w.blocks)) return (b + i) % w.blocks;
      }
    }
  }

  private updateLatency(w: Running): void {
    if (w.latencies.length === 0) return;
    const sorted = Float64Array.from(w.latencies).sort();
    const at = (p: number) => sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))]!;
    w.rec.stats.latencyP50Ms = at(0.5);
    w.rec.stats.latencyP99Ms = at(0.99);
  }

  private async saveStats(w: Running): Promise<void> {
    if (w.rec.state !== 'RUNNING') return;
    this.updateLatency(w);
    await this.store.put(keys.workload(w.rec.workloadId), w.rec);
  }
}
