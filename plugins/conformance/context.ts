/**
 * What one check works with: test shares filled with known bytes,
 * migrations through ferryd (the engine's calling pattern), migrations
 * driven by direct calls to the driver (the engine's calling pattern after
 * a crash, made on purpose), the checks every migration ends with, and the
 * clean-up of everything the check created.
 */
import { setTimeout as delay } from 'node:timers/promises';
import { TERMINAL, type Migration, type StartMigrationRequest } from '../../client/client.ts';
import type { Deadlines } from '../../host/deadlines.ts';
import type { GuardedDriver } from '../../host/guard.ts';
import { newMigrationId } from '../../host/ids.ts';
import { pollDelay } from '../../host/poll.ts';
import { silentLog } from '../../lib/log.ts';
import type { Checkpoint, CompleteResult, ContinueResult, MigrationSpec } from '../api/index.ts';
import type { Hold, HookedCall, HookPhase } from './control.ts';
import { MAX_WRITE_BYTES, pattern, randomSuffix, sha256 } from './data.ts';
import { describeError, expect, fail } from './failure.ts';
import type { Harness, Timeouts } from './harness.ts';
import { HostMigration } from './host-path.ts';

/** The run's settings, as checks see them. */
export interface KitSettings {
  /** How many times each idempotent call is repeated. */
  repeat: number;
  /** The size of each test share. */
  shareSizeBytes: number;
  /** How long a bandwidth-capped copy should take, to hold a migration in IN_PROGRESS. */
  slowCopySeconds: number;
  timeouts: Timeouts;
}

/** A share the check created, with the content it should have. */
export interface TestShare {
  id: string;
  sizeBytes: number;
  /** What the share holds, as far as the kit wrote it. */
  content: Buffer;
}

const short = (m: Migration) => `${m.state.replace('MIGRATION_STATE_', '')} at ${m.progress?.percent ?? 0} %`;

/** A check's tools. One per check; `cleanup` runs after the check, whatever happened. */
export class CheckContext {
  /** Lines for the report (passed checks too). */
  readonly notes: string[] = [];
  private readonly shares: TestShare[] = [];
  private readonly migrations = new Set<string>();
  private readonly directs = new Set<DirectMigration>();
  private readonly hostMigrations = new Set<HostMigration>();
  private readonly drivers = new Set<GuardedDriver>();
  private readonly holds = new Set<Hold>();

  constructor(
    readonly h: Harness,
    readonly settings: KitSettings,
  ) {}

  /** Adds a line to the check's report. */
  note(line: string): void {
    this.notes.push(line);
  }

  /** The bandwidth cap that makes a share copy in about `slowCopySeconds`. */
  get slowBandwidth(): number {
    return Math.max(1, Math.floor(this.settings.shareSizeBytes / this.settings.slowCopySeconds));
  }

  // ------------------------------------------------------------ shares

  /** Creates a share in the source pool and fills it with known bytes. */
  async share(sizeBytes = this.settings.shareSizeBytes): Promise<TestShare> {
    const { adapter, source, setup } = this.h;
    let id: string;
    try {
      id = await adapter.createShare(source.name, setup.sourcePool, sizeBytes);
    } catch (err) {
      return fail(`adapter.createShare(${source.name}, ${setup.sourcePool}, ${sizeBytes}) failed: ${describeError(err)}`, 'adapter.createShare');
    }
    const share: TestShare = { id, sizeBytes, content: pattern(`${id}:${randomSuffix()}`, sizeBytes) };
    this.shares.push(share);
    for (let at = 0; at < sizeBytes; at += MAX_WRITE_BYTES) await this.write(share, at, share.content.subarray(at, Math.min(sizeBytes, at + MAX_WRITE_BYTES)), 'filling the share');
    return share;
  }

  /** Writes through the adapter and records what the share should now hold. */
  async write(share: TestShare, offset: number, data: Buffer, when: string): Promise<void> {
    try {
      await this.h.adapter.writeShare(share.id, offset, data);
    } catch (err) {
      fail(`a write of ${data.length} bytes at offset ${offset} of share ${share.id} (${when}) was refused: ${describeError(err)}`, 'adapter.writeShare');
    }
    data.copy(share.content, offset);
  }

  /** The adapter's checksum of a share. */
  async checksum(share: TestShare): Promise<string> {
    try {
      return await this.h.adapter.checksum(share.id);
    } catch (err) {
      return fail(`adapter.checksum(${share.id}) failed: ${describeError(err)}`, 'adapter.checksum');
    }
  }

  /** What the destination backend holds now. */
  async destinationListing(): Promise<Set<string>> {
    try {
      return new Set(await this.h.adapter.listShares(this.h.destination.name));
    } catch (err) {
      return fail(`adapter.listShares(${this.h.destination.name}) failed: ${describeError(err)}`, 'adapter.listShares');
    }
  }

  /** What appeared on the destination backend since `before`, besides `except`. */
  async newOnDestination(before: Set<string>, except?: string): Promise<string[]> {
    return [...(await this.destinationListing())].filter((name) => !before.has(name) && name !== except);
  }

  /**
   * The share lives at the destination pool with exactly its content, the
   * source holds nothing of it, and no other destination was left. `call` is
   * the driver call to blame if not (default: complete, which moves it).
   */
  async expectMoved(share: TestShare, before: Set<string>, what: string, call = 'complete'): Promise<void> {
    const { adapter, destination, source, setup } = this.h;
    const where = await adapter.locate(share.id);
    expect(where, `${what}: the array has no share ${share.id} any more`, call);
    expect(
      where.backend === destination.name && where.pool === setup.destinationPool,
      `${what}: share ${share.id} lives in ${where.backend}/${where.pool}, not at the destination ${destination.name}/${setup.destinationPool}`,
      call,
    );
    const sum = await this.checksum(share);
    expect(sum === sha256(share.content), `${what}: the share's content at the destination differs from what was written (checksum ${sum}, expected ${sha256(share.content)})`, call);
    const onSource = await adapter.listShares(source.name);
    expect(!onSource.includes(share.id), `${what}: the source backend ${source.name} still lists share ${share.id}`, call);
    const extra = await this.newOnDestination(before, share.id);
    expect(extra.length === 0, `${what}: besides the share, the destination backend now holds ${extra.join(', ')}`, call);
  }

  /**
   * The share is where it was, with its content, and nothing new is on the
   * destination backend. `call` is the driver call to blame if not.
   */
  async expectUntouched(share: TestShare, before: Set<string>, what: string, call: string): Promise<void> {
    const { adapter, source, setup } = this.h;
    const where = await adapter.locate(share.id);
    expect(where, `${what}: the source share ${share.id} is gone`, call);
    expect(where.backend === source.name && where.pool === setup.sourcePool, `${what}: share ${share.id} moved to ${where.backend}/${where.pool}`, call);
    const sum = await this.checksum(share);
    expect(sum === sha256(share.content), `${what}: the source share's content changed (checksum ${sum}, expected ${sha256(share.content)})`, call);
    const left = await this.newOnDestination(before);
    expect(left.length === 0, `${what}: the destination backend ${this.h.destination.name} still holds ${left.join(', ')}`, call);
  }

  // ------------------------------------------------- through the engine

  /** A StartMigration request for `share` to the destination pool. */
  request(share: TestShare, extra: Partial<StartMigrationRequest> = {}): StartMigrationRequest {
    return {
      share: { backend: this.h.source.name, shareId: share.id },
      destination: this.h.destinationRef,
      maxDowntimeMs: 5_000,
      cutoverAction: 'CUTOVER_ACTION_ABORT',
      ...extra,
    };
  }

  /** StartMigration through ferryd. */
  async start(share: TestShare, extra: Partial<StartMigrationRequest> = {}): Promise<Migration> {
    let m: Migration;
    try {
      m = await this.h.client.startMigration(this.request(share, extra));
    } catch (err) {
      return fail(`StartMigration for share ${share.id} was refused: ${describeError(err)}`, 'StartMigration');
    }
    this.migrations.add(m.id);
    return m;
  }

  /** Remembers a migration started some other way, for clean-up. */
  track(id: string): void {
    this.migrations.add(id);
  }

  /**
   * Watches a migration until `until` holds or it ends; fails on timeout
   * with what it waited for. `seen` gets every value.
   */
  async waitFor(id: string, until: (m: Migration) => boolean, what: string, seen?: (m: Migration) => void): Promise<Migration> {
    const ms = this.settings.timeouts.migrationMs;
    const signal = AbortSignal.timeout(ms);
    let last: Migration | undefined;
    try {
      for await (const m of this.h.client.watch(id, { signal })) {
        last = m;
        seen?.(m);
        if (until(m) || TERMINAL.has(m.state)) return m;
      }
    } catch (err) {
      fail(`watching migration ${id} failed: ${describeError(err)}`, 'WatchMigration');
    }
    if (signal.aborted) fail(`timed out after ${ms} ms waiting for ${what}; migration ${id} is ${last ? short(last) : 'unknown'}`, await this.h.driverFailure(id));
    return fail(`the watch of migration ${id} ended before ${what}${last ? `; it was ${short(last)}` : ''}`, 'WatchMigration');
  }

  /** Waits for a state; fails (naming the driver call that broke, from ferryd's log) if the migration ends elsewhere. */
  async waitState(id: string, state: string, what = state, seen?: (m: Migration) => void): Promise<Migration> {
    const full = `MIGRATION_STATE_${state}`;
    const m = await this.waitFor(id, (x) => x.state === full, what, seen);
    if (m.state !== full) await this.failEnded(m, `waiting for ${what}`);
    return m;
  }

  /** Fails with how a migration ended when it should not have. */
  async failEnded(m: Migration, when: string): Promise<never> {
    const error = m.error ? ` (${m.error.code}: ${m.error.message})` : '';
    return fail(`migration ${m.id} ended ${m.state.replace('MIGRATION_STATE_', '')}${error} while ${when}`, await this.h.driverFailure(m.id));
  }

  /** CompleteMigration; fails if refused. */
  async complete(id: string): Promise<Migration> {
    try {
      return await this.h.client.completeMigration(id);
    } catch (err) {
      return fail(`CompleteMigration of ${id} was refused: ${describeError(err)}`, 'CompleteMigration');
    }
  }

  /** CancelMigration; fails if refused. */
  async cancel(id: string): Promise<Migration> {
    try {
      return await this.h.client.cancelMigration(id);
    } catch (err) {
      return fail(`CancelMigration of ${id} was refused: ${describeError(err)}`, 'CancelMigration');
    }
  }

  /** Holds the next `call` for `share` in ferryd at `phase`; released at clean-up if the check does not. */
  hold(call: HookedCall, phase: HookPhase, share: TestShare): Hold {
    const hold = this.h.control.hold(call, phase, share.id);
    this.holds.add(hold);
    return hold;
  }

  /**
   * What the driver answered to `call` for migration `id` through ferryd,
   * oldest first, as the kit's wrapper saw it: before ferryd's guard judged
   * it, so a check can hold the driver to a rule that the guard would
   * otherwise turn into an ERROR of its own.
   */
  answers(id: string, call: HookedCall): unknown[] {
    return this.h.control.events.filter((e) => e.migration === id && e.call === call && e.phase === 'after' && e.ok).map((e) => e.result);
  }

  /** Waits for a hold to be reached, failing after the migration timeout. */
  async reached(hold: Hold, what: string): Promise<void> {
    const ms = this.settings.timeouts.migrationMs;
    const stop = new AbortController();
    const timeout = delay(ms, 'timeout' as const, { signal: stop.signal }).catch(() => 'stopped' as const);
    try {
      if ((await Promise.race([hold.reached.then(() => 'reached' as const), timeout])) === 'timeout') fail(`timed out after ${ms} ms waiting for ${what}`);
    } finally {
      stop.abort();
    }
  }

  /**
   * SIGKILLs ferryd and starts it again on the same data dir: the engine
   * restarts with new driver instances. Holds stay as they are (a call held
   * in the dead daemon is gone with it; one not reached yet applies to the
   * new daemon).
   */
  async restartEngine(): Promise<void> {
    await this.h.killDaemon();
    await this.h.startDaemon();
  }

  // ------------------------------------------------- direct driver calls

  /**
   * A new driver instance from the plugin's factory (as after an engine
   * restart), closed at clean-up. Its guard has the daemon's deadlines,
   * unless `deadlines` changes some (for a check that measures a call's
   * time itself, and must not have the guard cut it at the deadline first).
   */
  async driver(deadlines: Partial<Deadlines> = {}, backend = this.h.source): Promise<GuardedDriver> {
    const d = await this.h.openDriver(backend, deadlines);
    this.drivers.add(d);
    return d;
  }

  /** The spec of a migration of `share` to the destination pool, as the engine would give the driver. */
  spec(share: TestShare, extra: Partial<MigrationSpec> = {}): MigrationSpec {
    return {
      id: newMigrationId(),
      source: { backend: this.h.source.name, shareId: share.id },
      destination: { backend: this.h.destination.name, pool: this.h.setup.destinationPool },
      writable: false,
      nondisruptive: false,
      preserveMetadata: false,
      preserveSnapshots: false,
      newShareType: '',
      maxBandwidthBytesPerSec: 0,
      maxDowntimeMs: 5_000,
      cutoverAction: 'abort',
      dataPath: 'driver',
      ...extra,
    };
  }

  /**
   * A host-path migration of `share` the check drives through the data-path
   * halves of new source and destination driver instances (writable unless
   * `extra` says otherwise); what it made is removed at clean-up.
   */
  async hostMigration(share: TestShare, extra: Partial<MigrationSpec> = {}): Promise<HostMigration> {
    const source = await this.driver();
    const destination = await this.driver({}, this.h.destination);
    const m = new HostMigration(this.spec(share, { writable: true, ...extra, dataPath: 'host' }), source, destination);
    this.hostMigrations.add(m);
    return m;
  }

  /** A migration the check drives by calling the driver itself, as the engine would. */
  direct(share: TestShare, extra: Partial<MigrationSpec> = {}): DirectMigration {
    const m = new DirectMigration(this, this.spec(share, extra));
    this.directs.add(m);
    return m;
  }

  // ----------------------------------------------------------- clean-up

  /** Removes everything the check created. Never throws; problems become notes. */
  async cleanup(): Promise<void> {
    for (const hold of this.holds) hold.release();
    const problems: string[] = [];
    const attempt = async (what: string, fn: () => Promise<unknown>) => {
      try {
        await fn();
      } catch (err) {
        problems.push(`${what}: ${describeError(err)}`);
      }
    };
    await attempt('restarting ferryd', async () => {
      if (!this.h.daemonRunning) await this.h.startDaemon();
    });
    for (const id of this.migrations) {
      await attempt(`ending migration ${id}`, async () => {
        const m = await this.h.client.getMigration(id);
        if (TERMINAL.has(m.state)) return;
        if (['MIGRATION_STATE_STARTING', 'MIGRATION_STATE_IN_PROGRESS', 'MIGRATION_STATE_PHASE1_DONE'].includes(m.state)) await this.h.client.cancelMigration(id);
        await this.waitFor(id, (x) => TERMINAL.has(x.state), 'the end of the migration (clean-up)');
      });
    }
    for (const m of this.directs) if (m.needsCancel) await attempt(`cancelling direct migration ${m.spec.id}`, () => m.cancelUntilDone());
    for (const m of this.hostMigrations) await attempt(`removing what host-path migration ${m.spec.id} made`, () => m.cleanup());
    for (const d of this.drivers) await this.h.closeDriver(d);
    for (const share of this.shares) await attempt(`adapter.deleteShare(${share.id})`, () => this.h.adapter.deleteShare(share.id));
    if (problems.length > 0) this.note(`clean-up: ${problems.join('; ')}`);
  }

}

/** One continue call as a direct migration made it. */
export interface ContinueSample {
  ms: number;
  result: ContinueResult;
}

/**
 * A migration driven by calling the driver directly, in the engine's order
 * (checkCompatibility, start, continue until phase 1 is done, complete or
 * cancel until done), carrying each call's checkpoint to the next.
 */
export class DirectMigration {
  /** The checkpoint the last successful call returned. */
  checkpoint: Checkpoint = null;
  /** Whether `start` ever succeeded (or was tried), so clean-up must cancel. */
  needsCancel = false;
  private readonly log = silentLog();

  constructor(
    private readonly c: CheckContext,
    readonly spec: MigrationSpec,
  ) {}

  /** Calls the driver, failing the check with `label` as the call that broke. */
  async call<T>(label: string, fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      return fail(`${label} threw ${describeError(err)}`, label);
    }
  }

  /** The arguments of a per-migration call. */
  args(checkpoint: Checkpoint = this.checkpoint) {
    return { migration: this.spec, checkpoint, log: this.log };
  }

  /** checkCompatibility then start, as the engine does in STARTING. */
  async start(driver: GuardedDriver): Promise<Checkpoint> {
    await this.call('checkCompatibility', () => driver.checkCompatibility(this.spec, this.log));
    this.needsCancel = true;
    const r = await this.call('start', () => driver.start(this.args(null)));
    this.checkpoint = r.checkpoint;
    return r.checkpoint;
  }

  /** One continue with the current checkpoint; returns the result and how long it took. */
  async continueOnce(driver: GuardedDriver, label = 'continue'): Promise<ContinueSample> {
    const t0 = performance.now();
    const result = await this.call(label, () => driver.continue(this.args()));
    const ms = performance.now() - t0;
    this.checkpoint = result.checkpoint;
    return { ms, result };
  }

  /** Calls continue, waiting as the engine would between calls, until phase 1 is done; returns every call. */
  async continueUntilPhase1(driver: GuardedDriver): Promise<ContinueSample[]> {
    const samples: ContinueSample[] = [];
    const until = Date.now() + this.c.settings.timeouts.migrationMs;
    for (;;) {
      const sample = await this.continueOnce(driver);
      samples.push(sample);
      if (sample.result.phase1Done) return samples;
      if (Date.now() > until) fail(`continue did not report phase 1 done within ${this.c.settings.timeouts.migrationMs} ms (${samples.length} calls; last copied ${sample.result.progress.copiedBytes} of ${sample.result.progress.totalBytes} bytes)`, 'continue');
      await delay(pollDelay(sample.result.nextPollMs));
    }
  }

  /** Calls complete with the current checkpoint until done (an aborted cutover is asked again, up to 3 times). */
  async completeUntilDone(driver: GuardedDriver, label = 'complete'): Promise<CompleteResult> {
    const until = Date.now() + this.c.settings.timeouts.migrationMs;
    let aborts = 0;
    for (;;) {
      const r = await this.call(label, () => driver.complete(this.args()));
      this.checkpoint = r.checkpoint;
      if (r.status === 'done') {
        this.needsCancel = false;
        return r;
      }
      if (r.status === 'aborted' && ++aborts >= 3) fail(`the cutover aborted ${aborts} times in a row: ${r.reason}`, label);
      if (Date.now() > until) fail(`complete did not report done within ${this.c.settings.timeouts.migrationMs} ms`, label);
      if (r.status === 'in_progress') await delay(pollDelay(r.nextPollMs));
    }
  }

  /** Calls cancel with the current checkpoint until done. */
  async cancelUntilDone(driver?: GuardedDriver, label = 'cancel'): Promise<void> {
    const d = driver ?? (await this.c.driver());
    const until = Date.now() + this.c.settings.timeouts.migrationMs;
    for (;;) {
      const r = await this.call(label, () => d.cancel(this.args()));
      this.checkpoint = r.checkpoint;
      if (r.done) {
        this.needsCancel = false;
        return;
      }
      if (Date.now() > until) fail(`cancel did not report done within ${this.c.settings.timeouts.migrationMs} ms`, label);
      await delay(pollDelay(r.nextPollMs));
    }
  }
}
