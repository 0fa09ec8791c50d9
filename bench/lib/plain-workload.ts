/**
 * The write workload for the baselines that do not use the array (rsync,
 * stop-and-copy): random 64 KiB writes to a plain file at a set rate, four
 * in flight, each acknowledged after its fdatasync, as the array's workload
 * generator writes to a share.
 */
import { open, type FileHandle } from 'node:fs/promises';
import { TokenBucket } from '../../simulator/rates.ts';
import { content } from './content.ts';

const BLOCK = 64 * 1024;

/** A running workload on a plain file. */
export class PlainWorkload {
  private readonly abort = new AbortController();
  private lanes: Promise<void>[] = [];
  private fh: FileHandle | null = null;
  /** Writes acknowledged so far. */
  acked = 0;
  /** Slowest write so far, ms. */
  maxLatencyMs = 0;

  /** Starts writing to `file` (which holds `sizeBytes`) at `rateBytesPerSec`; 0 writes nothing. */
  static async start(file: string, sizeBytes: number, rateBytesPerSec: number, seed = 1): Promise<PlainWorkload> {
    const w = new PlainWorkload();
    if (rateBytesPerSec <= 0) return w;
    w.fh = await open(file, 'r+');
    const bucket = new TokenBucket(rateBytesPerSec);
    const blocks = Math.floor(sizeBytes / BLOCK);
    let state = seed >>> 0;
    const next = () => {
      state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
      return state;
    };
    for (let lane = 0; lane < 4; lane++) {
      const data = content(lane * BLOCK, BLOCK, 3);
      w.lanes.push(
        (async () => {
          const { signal } = w.abort;
          while (!signal.aborted) {
            await bucket.take(BLOCK, signal);
            if (signal.aborted) break;
            const block = next() % blocks;
            data.writeUInt32LE(next(), 0); // Every write changes the block's bytes.
            const t0 = performance.now();
            await w.fh!.write(data, 0, BLOCK, block * BLOCK);
            await w.fh!.datasync();
            w.maxLatencyMs = Math.max(w.maxLatencyMs, performance.now() - t0);
            w.acked++;
          }
        })(),
      );
    }
    return w;
  }

  /** Stops: no new writes; resolves once the writes in flight are acknowledged. */
  async stop(): Promise<void> {
    this.abort.abort();
    await Promise.all(this.lanes);
    await this.fh?.close();
    this.fh = null;
  }
}
