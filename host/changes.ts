/**
 * Change feeds: ferryd's side of Driver.watchChanges. For each backend whose
 * driver offers it, one stream is kept open; every change it yields tells
 * the engine that a migration (or, with an empty id, any migration of the
 * backend) should be called soon. When the stream ends or fails, the feed
 * says so (an empty id: anything may have been missed, and parked
 * migrations go back to polling as their driver asks), and opens it again
 * after a backoff.
 *
 * A feed counts as live from the first change its stream yields: the
 * contract has a driver yield `{ migrationId: '' }` on every (re)connect, so
 * a stream that yields nothing yet promises nothing yet.
 *
 * What a driver yields is untrusted: a change that is not an object with a
 * string `migrationId` of at most MAX_MIGRATION_ID_CHARS is dropped (logged
 * once per stream). A change only makes a call sooner, so a driver that
 * floods the feed costs wakes, never a wrong state.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type { DriverChange } from '../plugins/api/index.ts';
import type { Log } from '../lib/log.ts';
import type { BackendEntry } from './plugins.ts';
import { backoffDelay, jittered } from './poll.ts';
import { summarizeThrown } from './untrusted.ts';

/** Longer than any migration id ferryd makes; a longer one is not ours. */
const MAX_MIGRATION_ID_CHARS = 256;

/** Called for each change: `migrationId` '' means any migration of `backend`. */
export type ChangeListener = (backend: string, migrationId: string) => void;

/** Reopen delays after a stream failed, and how often a backend without a stream is looked at again. */
export interface FeedTiming {
  backoffInitialMs: number;
  backoffMaxMs: number;
  /** A backend whose driver offers no stream (or has no driver yet) is looked at again this often. */
  recheckMs: number;
}

export const DEFAULT_FEED_TIMING: FeedTiming = { backoffInitialMs: 100, backoffMaxMs: 10_000, recheckMs: 5_000 };

/** The change feeds of every backend. */
export class ChangeFeeds {
  private readonly live = new Set<string>();
  private readonly stop = new AbortController();
  private loops: Promise<void>[] = [];

  constructor(
    private readonly backends: ReadonlyMap<string, BackendEntry>,
    private readonly log: Log,
    private readonly timing: FeedTiming = DEFAULT_FEED_TIMING,
  ) {}

  /** Starts a feed per backend. */
  start(listener: ChangeListener): void {
    this.loops = [...this.backends.keys()].map((name) => this.feed(name, listener));
  }

  /** Whether the backend's stream is open and has answered: then its parked migrations are polled rarely. */
  isLive(backend: string): boolean {
    return this.live.has(backend);
  }

  /** Stops every feed and waits for their loops to end. */
  async close(): Promise<void> {
    this.stop.abort();
    await Promise.all(this.loops);
  }

  private async feed(backend: string, listener: ChangeListener): Promise<void> {
    const { signal } = this.stop;
    const log = this.log.child({ backend });
    let failures = 0;
    while (!signal.aborted) {
      const watch = this.watchOf(backend, log);
      if (!watch) {
        await sleep(this.timing.recheckMs, undefined, { signal }).catch(() => undefined);
        continue;
      }
      let dropped = false;
      try {
        for await (const change of watch({ signal })) {
          if (!this.live.has(backend)) {
            this.live.add(backend);
            failures = 0;
            log.info('change feed open: parked migrations are polled rarely while it is');
          }
          const id = migrationIdOf(change);
          if (id === undefined) {
            if (!dropped) log.warn('the driver yielded a change that is not { migrationId: string }; dropped (and any more like it on this stream)');
            dropped = true;
            continue;
          }
          listener(backend, id);
        }
        if (!signal.aborted) log.warn('change feed ended; parked migrations are polled as their driver asks until it is open again');
      } catch (err) {
        if (!signal.aborted) log.warn({ err: summarizeThrown(err) }, 'change feed failed; parked migrations are polled as their driver asks until it is open again');
      }
      if (signal.aborted) break;
      // Whatever changed while the stream was down was missed.
      if (this.live.delete(backend)) listener(backend, '');
      failures++;
      await sleep(jittered(backoffDelay(failures, this.timing.backoffInitialMs, this.timing.backoffMaxMs)), undefined, { signal }).catch(() => undefined);
    }
    this.live.delete(backend);
  }

  /** The backend's watchChanges, if its driver is up and offers it. */
  private watchOf(backend: string, log: Log): ((options: { signal: AbortSignal }) => AsyncIterable<unknown>) | undefined {
    const driver = this.backends.get(backend)?.driver;
    if (!driver) return undefined;
    try {
      return driver.watchChanges;
    } catch (err) {
      log.warn({ err: summarizeThrown(err) }, "reading the driver's watchChanges threw; its migrations are polled");
      return undefined;
    }
  }
}

/** The migration id of an untrusted change, or undefined if it is not one. */
function migrationIdOf(change: unknown): string | undefined {
  if (typeof change !== 'object' || change === null) return undefined;
  let id: unknown;
  try {
    id = (change as DriverChange).migrationId;
  } catch {
    return undefined;
  }
  return typeof id === 'string' && id.length <= MAX_MIGRATION_ID_CHARS ? id : undefined;
}
