/**
 * The daemon's durable state in LevelDB: every migration with its driver
 * checkpoint.
 *
 * Keys:
 *   m!<id>  -> MigrationRecord (state, progress, driver checkpoint: one put, so they change together);
 *              the engine's
 *   p!<id>  -> MoverPlace (where a host-path copy stands); the mover's (host/mover/place.ts)
 *
 * Everything else the engine needs (which share has an active migration,
 * which request id made which migration) is derived from the records at
 * load, so it can never disagree with them.
 *
 * Writes are not fsynced by default: a write that returned is in the OS, so it
 * survives `kill -9` of the daemon. `sync: true` also survives power loss.
 */
import { performance } from 'node:perf_hooks';
import { Level } from 'level';
import type { MoverPlace, PlaceStore } from '../host/mover/place.ts';
import type { MigrationRecord } from './migration.ts';

/** Thrown by `Store.open` when another process holds the data dir. */
export class StoreLockedError extends Error {
  constructor(readonly dir: string) {
    super(`data dir ${dir} is in use by another ferryd (its LevelDB lock is held); stop that daemon or choose another --data-dir`);
    this.name = 'StoreLockedError';
  }
}

/** What a write was: migration records (a batch, or one), or one of the host path's places (put or delete). */
export type StoreWriteKind = 'migrations' | 'place';

/** Told how long each write took, once it has ended (written or failed). For the daemon's metrics; it must not throw. */
export type StoreWriteObserver = (kind: StoreWriteKind, seconds: number) => void;

/** LevelDB-backed persistence for the engine. One owner per data dir. */
export class Store {
  private constructor(
    private readonly db: Level<string, MigrationRecord | MoverPlace>,
    private readonly sync: boolean,
    private readonly observe: StoreWriteObserver | undefined,
  ) {}

  /** Opens (creating if needed) the store at `dir`. Throws StoreLockedError if another process has it. */
  static async open(dir: string, options: { sync?: boolean; observe?: StoreWriteObserver } = {}): Promise<Store> {
    const db = new Level<string, MigrationRecord | MoverPlace>(dir, { valueEncoding: 'json' });
    try {
      await db.open();
    } catch (err) {
      const cause = (err as { cause?: { code?: string } }).cause;
      if (cause?.code === 'LEVEL_LOCKED') throw new StoreLockedError(dir);
      throw err;
    }
    return new Store(db, options.sync ?? false, options.observe);
  }

  /** Runs a write, timed for the observer when there is one (without one, nothing wraps it). */
  private timed(kind: StoreWriteKind, write: () => Promise<void>): Promise<void> {
    const observe = this.observe;
    if (!observe) return write();
    const startedAt = performance.now();
    return write().finally(() => observe(kind, (performance.now() - startedAt) / 1000));
  }

  /** Every migration, in id (creation) order. */
  async loadMigrations(): Promise<MigrationRecord[]> {
    const out: MigrationRecord[] = [];
    for await (const value of this.db.values({ gt: 'm!', lt: 'm~' })) out.push(value as MigrationRecord);
    return out;
  }

  /** Writes a migration (state, progress and driver checkpoint together). New or not. */
  async save(record: MigrationRecord): Promise<void> {
    await this.timed('migrations', () => this.db.put(`m!${record.id}`, record, { sync: this.sync }));
  }

  /** Writes migrations in one batch: all of them or none. */
  async saveAll(records: readonly MigrationRecord[]): Promise<void> {
    await this.timed('migrations', () =>
      this.db.batch(
        records.map((record) => ({ type: 'put' as const, key: `m!${record.id}`, value: record })),
        { sync: this.sync },
      ),
    );
  }

  /** The host path's places, in the same database under their own keys. */
  readonly places: PlaceStore = {
    load: async (id) => (await this.db.get(`p!${id}`)) as MoverPlace | undefined,
    save: (id, place) => this.timed('place', () => this.db.put(`p!${id}`, place, { sync: this.sync })),
    remove: (id) => this.timed('place', () => this.db.del(`p!${id}`)),
  };

  /** Closes the database. The last thing the daemon does. */
  async close(): Promise<void> {
    await this.db.close();
  }
}
