/**
 * Notices when the event loop is blocked, so that the guard can name the
 * driver call during which it happened.
 *
 * A module plugin runs on the daemon's own thread: a driver that computes,
 * or waits synchronously, for seconds freezes every migration and the health
 * service with it, and its own deadline timer cannot fire, so without this
 * the call would even count as answered in time. The cure is to run drivers
 * as their own process; for module plugins, the guard at least notices.
 *
 * A heartbeat timer runs while at least one driver call is in flight. When a
 * call ends, the guard asks how long the loop went without a beat since the
 * call began, counting a block that is still going on: a driver that
 * busy-loops and then answers ends its call inside the very turn it blocked,
 * before any timer (or `perf_hooks.monitorEventLoopDelay`, which records a
 * delay only once the loop runs again) could have seen it.
 */
import { performance } from 'node:perf_hooks';

/** A stretch of time in which no beat came. */
interface Stall {
  endedAt: number;
  ms: number;
}

/** How often the heartbeat beats while driver calls are in flight. */
const BEAT_MS = 20;
/** Shorter gaps between beats are ordinary timer jitter, not worth remembering. */
const STALL_MIN_MS = 50;
/** How many past stalls are remembered (the longest deadline, 300 s, would need more only if the loop stalled every 3 s). */
const STALLS_KEPT = 100;

/** A heartbeat on the event loop, shared by every guarded driver. */
export class LoopWatch {
  private timer: NodeJS.Timeout | undefined;
  private lastBeat = 0;
  private watchers = 0;
  private readonly stalls: Stall[] = [];

  constructor(private readonly beatMs = BEAT_MS) {}

  /** Starts beating for one more watcher (a driver call); returns the function that stops watching. */
  watch(): () => void {
    if (this.watchers++ === 0) {
      this.lastBeat = performance.now();
      this.timer = setInterval(() => this.beat(), this.beatMs);
      this.timer.unref();
    }
    let stopped = false;
    return () => {
      if (stopped) return;
      stopped = true;
      if (--this.watchers === 0) {
        clearInterval(this.timer);
        this.timer = undefined;
      }
    };
  }

  /**
   * The longest time, within [since, now], in which the loop ran no timer
   * (`since` from `performance.now()`), including a block still going on.
   * Meaningful only while watching.
   */
  blockedSince(since: number): number {
    const now = performance.now();
    // The next beat was due at lastBeat + beatMs; the loop has not run timers since then.
    let longest = Math.max(0, now - Math.max(this.lastBeat + this.beatMs, since));
    for (const stall of this.stalls) {
      if (stall.endedAt > since) longest = Math.max(longest, stall.endedAt - Math.max(stall.endedAt - stall.ms, since));
    }
    return longest;
  }

  private beat(): void {
    const now = performance.now();
    const late = now - this.lastBeat - this.beatMs;
    if (late >= STALL_MIN_MS) {
      this.stalls.push({ endedAt: now, ms: late });
      if (this.stalls.length > STALLS_KEPT) this.stalls.shift();
    }
    this.lastBeat = now;
  }
}
