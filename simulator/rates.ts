/**
 * Time-based helpers of the copy engine: a moving rate (throughput, dirty
 * rate), a token bucket (bandwidth caps), and a sleep that a stop cuts short.
 */

/** A moving byte rate over the last `windowMs`, from samples bucketed per 100 ms. */
export class RateMeter {
  private readonly windowMs: number;
  private readonly buckets = new Map<number, number>();
  private readonly since = Date.now();

  constructor(windowMs = 3000) {
    this.windowMs = windowMs;
  }

  /** Counts `bytes` now. */
  add(bytes: number, now = Date.now()): void {
    const key = Math.floor(now / 100);
    this.buckets.set(key, (this.buckets.get(key) ?? 0) + bytes);
    this.prune(now);
  }

  /** Bytes per second over the window (0 when nothing happened in it). */
  rate(now = Date.now()): number {
    this.prune(now);
    let sum = 0;
    for (const v of this.buckets.values()) sum += v;
    // A meter younger than its window averages over its age (at least one bucket), not the whole window.
    const span = Math.min(this.windowMs, Math.max(100, now - this.since));
    return Math.round((sum * 1000) / span);
  }

  private prune(now: number): void {
    const oldest = Math.floor((now - this.windowMs) / 100);
    for (const k of this.buckets.keys()) if (k <= oldest) this.buckets.delete(k);
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
