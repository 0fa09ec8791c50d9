/**
 * The poll policy: how long the engine waits before it calls a driver again
 * (continue, a cutover that is in progress, a cancel not yet done). The
 * driver suggests a delay (`nextPollMs`); the engine keeps it within its
 * bounds, and uses its default when the driver suggests none. The
 * conformance kit waits by the same rule when it drives a driver directly.
 */

/** The bounds and the default of the delay between two calls, in ms. */
export interface PollPolicy {
  /** Bounds on the delay, whatever the driver suggests. */
  minPollMs: number;
  maxPollMs: number;
  /** The delay when the driver suggests none. */
  defaultPollMs: number;
}

/** Defaults: notice phase 1 within tens of ms, and never wait more than 2 s. */
export const DEFAULT_POLL_POLICY: PollPolicy = { minPollMs: 5, maxPollMs: 2_000, defaultPollMs: 250 };

/** The delay before the next call, for a driver's suggestion (`nextPollMs`, possibly none). */
export function pollDelay(nextPollMs: number | undefined, policy: PollPolicy = DEFAULT_POLL_POLICY): number {
  return Math.min(policy.maxPollMs, Math.max(policy.minPollMs, nextPollMs ?? policy.defaultPollMs));
}

/** The delay before retry number `failures` (1-based): doubling from `initialMs`, capped at `maxMs`. */
export function backoffDelay(failures: number, initialMs: number, maxMs: number): number {
  return Math.min(maxMs, initialMs * 2 ** Math.min(failures - 1, 20));
}

/** `ms` spread by ±25 %, so that many retries begun together do not stay in step. */
export function jittered(ms: number): number {
  return Math.round(ms * (0.75 + Math.random() * 0.5));
}
