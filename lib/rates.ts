/**
 * Time-based helpers of the copy engines (the array's and the host path's):
 * a moving rate (throughput, dirty rate), a token bucket (bandwidth caps),
 * and a sleep that a stop cuts short.
 */

/**
 * A byte rate that stays right when bytes arrive in lumps (a worker task,
 * a chunk, a write): an average over time that weighs the past less and
 * less (time constant `tauMs`), each lump counted as flowing evenly since
 * the one before it. A window that counts lumps by when they land reads
 * 8 MiB per 3 s or nothing when 8 MiB lands every 8 s; this reads 1 MiB/s.
 * After the last lump the rate holds for twice the usual gap between lumps,
 * then falls linearly to 0 over `tauMs`, as a window's average would.
 */
export class RateMeter {
  private readonly tauMs: number;
  /** When the last lump landed (at first: when the meter was made, so the first lump counts from then). */
  private lastAt: number;
  /** The average, biased toward 0 while the meter is young (see `weight`). */
  private value = 0;
  /** 1 - e^(-observed time / tau): dividing by it removes the young meter's bias. */
  private weight = 0;
  /** The usual gap between lumps, ms. */
  private gapMs = 0;
  private lumps = 0;

  constructor(tauMs = 3000, now = Date.now()) {
    this.tauMs = tauMs;
    this.lastAt = now;
  }

  /** Counts `bytes` that landed now. */
  add(bytes: number, now = Date.now()): void {
    if (!(bytes > 0)) return;
    const gap = Math.max(this.weight > 0 ? 0 : 1, now - this.lastAt);
    if (gap === 0) {
      // Lumps of several workers in the same millisecond: the limit of the spread below as the gap shrinks.
      this.value += (bytes * 1000) / this.tauMs;
    } else {
      const a = 1 - Math.exp(-gap / this.tauMs);
      this.value += a * ((bytes * 1000) / gap - this.value);
      this.weight += a * (1 - this.weight);
    }
    this.gapMs = this.lumps === 0 ? gap : this.gapMs + (gap - this.gapMs) / 4;
    this.lumps++;
    this.lastAt = Math.max(this.lastAt, now);
  }

  /** Bytes per second now (0 before the first lump, and once lumps stopped for long enough). */
  rate(now = Date.now()): number {
    if (this.lumps === 0 || this.weight <= 0) return 0;
    const rate = this.value / this.weight;
    const quietMs = now - this.lastAt - 2 * this.gapMs;
    if (quietMs <= 0) return Math.round(rate);
    return Math.round(rate * Math.max(0, 1 - quietMs / this.tauMs));
  }
}

/**
 * Resolves after `ms`, or at once when `signal` aborts. Never rejects: the
 * caller checks the signal, so a stop is a normal path and not an exception.
 */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  if (ms <= 0 || signal?.aborted) return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      signal?.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal?.addEventListener('abort', done, { once: true });
  });
}

/**
 * A token bucket in bytes. `take` lets the balance go negative and then
 * waits it back to zero, so a chunk bigger than the burst still passes, at
 * the right average rate. A rate of 0 means no cap.
 */
export class TokenBucket {
  private rateBps: number;
  private tokens: number;
  private last = Date.now();
  private readonly burstSeconds: number;

  constructor(rateBps: number, burstSeconds = 0.1) {
    this.rateBps = rateBps;
    this.burstSeconds = burstSeconds;
    this.tokens = rateBps * burstSeconds;
  }

  /** The cap in bytes per second; 0 means none. */
  get rate(): number {
    return this.rateBps;
  }

  /** Changes the cap (a fault may slow the disk down mid-copy). */
  setRate(rateBps: number): void {
    if (rateBps === this.rateBps) return;
    this.refill();
    this.rateBps = rateBps;
    this.tokens = Math.min(this.tokens, rateBps * this.burstSeconds);
  }

  /** Waits until `bytes` may be sent. Returns early (without waiting out the debt) if `signal` aborts. */
  async take(bytes: number, signal?: AbortSignal): Promise<void> {
    if (this.rateBps <= 0) return;
    this.refill();
    this.tokens -= bytes;
    if (this.tokens < 0) await sleep((-this.tokens / this.rateBps) * 1000, signal);
  }

  /** Gives back `bytes` that were taken and then not sent (the caller stopped), so that the next take does not pay for them. */
  refund(bytes: number): void {
    if (this.rateBps <= 0) return;
    this.refill();
    this.tokens = Math.min(this.rateBps * this.burstSeconds, this.tokens + bytes);
  }

  private refill(): void {
    const now = Date.now();
    if (this.rateBps > 0) {
      this.tokens = Math.min(this.rateBps * this.burstSeconds, this.tokens + ((now - this.last) / 1000) * this.rateBps);
    }
    this.last = now;
  }
}

/** A one-shot latch many waiters can await; `notify` wakes them all. */
export class Wakeup {
  private waiters: Array<() => void> = [];

  /** Resolves on the next `notify`, after `ms`, or when `signal` aborts. */
  wait(ms: number, signal?: AbortSignal): Promise<void> {
    if (signal?.aborted) return Promise.resolve();
    return new Promise((resolve) => {
      let settled = false;
      const done = () => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        signal?.removeEventListener('abort', done);
        const at = this.waiters.indexOf(done);
        if (at >= 0) this.waiters.splice(at, 1);
        resolve();
      };
      const timer = setTimeout(done, ms);
      signal?.addEventListener('abort', done, { once: true });
      this.waiters.push(done);
    });
  }

  /** Wakes every waiter. */
  notify(): void {
    for (const w of [...this.waiters]) w();
  }
}
