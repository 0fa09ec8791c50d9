/**
 * The optional change feed (Driver.watchChanges, the driver guide's
 * watchChanges section), gated on the source backend's driver offering it.
 * While a backend's feed is open ferryd polls its parked migrations only
 * rarely, so a feed that promises and does not tell leaves them waiting:
 * the check reads the stream of a driver instance of its own, as ferryd
 * reads its own, and holds it to `''` first and to announcing phase 1 done.
 */
import type { GuardedDriver } from '../../../host/guard.ts';
import type { Harness } from '../harness.ts';
import { describeError, expect } from '../failure.ts';
import { PAST_STARTING, type Check } from './check.ts';

/** How long an opened stream may take to yield its first change, `''`. */
export const CHANGES_CONNECT_MS = 10_000;
/** How long after ferryd shows PHASE1_DONE the stream may take to announce it (ferryd polls parked migrations every 10 s while it is open). */
export const CHANGES_ANNOUNCE_MS = 5_000;

/** A gate: skip unless the source backend's driver offers watchChanges. */
export function offersChanges(h: Harness): string | null {
  return h.offersChanges ? null : `the source backend's driver (${h.source.name}) offers no watchChanges: the change feed is optional (the driver guide's watchChanges section)`;
}

/** A driver's change stream, read in the background: every migration id it yielded, in order, and how it ended. */
class ChangeLog {
  readonly ids: string[] = [];
  private ending: string | null = null;
  private readonly waiters = new Set<() => void>();

  constructor(driver: GuardedDriver, signal: AbortSignal) {
    void (async () => {
      try {
        for await (const change of driver.watchChanges!({ signal })) {
          this.ids.push(String((change as { migrationId?: unknown } | null)?.migrationId));
          this.wake();
        }
        this.ending = 'the stream ended';
      } catch (err) {
        this.ending = `the stream threw ${describeError(err)}`;
      }
      this.wake();
    })();
  }

  /** What ended the stream, for a message ('' while it is open). */
  get ended(): string {
    return this.ending === null || this.ending === '' ? '' : `; then ${this.ending}`;
  }

  /** The index of the first id at or after `from` that `match` accepts, waiting up to `ms`; -1 if none came. */
  async find(from: number, match: (id: string) => boolean, ms: number): Promise<number> {
    const until = Date.now() + ms;
    for (;;) {
      const at = this.ids.findIndex((id, i) => i >= from && match(id));
      if (at >= 0 || this.ending !== null) return at;
      const left = until - Date.now();
      if (left <= 0) return -1;
      await new Promise<void>((resolve) => {
        const timer = setTimeout(done, left);
        this.waiters.add(done);
        function done() {
          clearTimeout(timer);
          resolve();
        }
      });
    }
  }

  /** The ids yielded from `from` on, for a message. */
  shown(from = 0): string {
    const ids = this.ids.slice(from);
    if (ids.length === 0) return 'nothing';
    return ids.slice(0, 10).map((id) => JSON.stringify(id)).join(', ') + (ids.length > 10 ? `, … (${ids.length} in all)` : '');
  }

  private wake(): void {
    for (const w of [...this.waiters]) w();
    this.waiters.clear();
  }
}

export const changesPhase1Done: Check = {
  id: 'changes-phase1-done',
  title: `watchChanges yields '' first once open, then announces a started migration's phase 1 done: a change naming it, by ${CHANGES_ANNOUNCE_MS / 1000} s after ferryd shows PHASE1_DONE`,
  gate: offersChanges,
  async run(c) {
    const driver = await c.driver();
    const stop = new AbortController();
    try {
      const log = new ChangeLog(driver, stop.signal);
      const first = await log.find(0, () => true, CHANGES_CONNECT_MS);
      expect(first === 0, `watchChanges yielded nothing within ${CHANGES_CONNECT_MS} ms of being opened${log.ended}; the contract has it yield { migrationId: '' } first, once it is connected`, 'watchChanges');
      expect(log.ids[0] === '', `watchChanges yielded ${JSON.stringify(log.ids[0])} first; the contract has it yield { migrationId: '' } first whenever it (re)connects, since anything may have changed`, 'watchChanges');

      const share = await c.share();
      const m = await c.start(share, { maxBandwidthBytesPerSec: c.slowBandwidth });
      // From the first sight of phase 1 under way: a change before it says nothing of phase 1 being done.
      let from = -1;
      await c.waitState(m.id, 'PHASE1_DONE', 'phase 1 to be done', (x) => {
        if (from < 0 && PAST_STARTING.has(x.state)) from = log.ids.length;
      });
      const shownAt = Date.now();
      const at = await log.find(from, (id) => id === m.id || id === '', CHANGES_ANNOUNCE_MS);
      expect(
        at >= 0,
        `watchChanges did not announce phase 1 done of migration ${m.id}: from when ferryd showed it past STARTING until ${CHANGES_ANNOUNCE_MS} ms after it showed PHASE1_DONE, the stream yielded ${log.shown(from)} (no change naming ${m.id}, nor '')${log.ended}. While the stream is open ferryd polls a parked migration only every engine.parkedPollMs`,
        'watchChanges',
      );
      const lag = Date.now() - shownAt;
      c.note(`phase 1 done announced as ${JSON.stringify(log.ids[at])}${lag > 50 ? `, ${lag} ms after ferryd showed PHASE1_DONE` : ', by the time ferryd showed PHASE1_DONE'}`);
    } finally {
      stop.abort();
    }
  },
};
