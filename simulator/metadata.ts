/**
 * The array's metadata in LevelDB (<dataDir>/meta): shares, jobs with their
 * checkpoints, faults and workload records.
 *
 * Writes go through one queue that batches whatever is pending into a single
 * LevelDB batch (group commit). That keeps writes to one key in order (two
 * concurrent `put`s on the thread pool could land in either order, and a
 * stale checkpoint must never overwrite a newer one) and keeps per-chunk
 * checkpoints cheap. A write resolves once its batch is written; `sync`
 * asks for an fsync of the batch (the cutover's commit point uses it).
 *
 * Only the main thread opens the database: LevelDB's LOCK is exclusive per
 * process and per thread.
 */
import { Level } from 'level';

/** A value to write, or null to delete the key. */
export interface MetaOp {
  key: string;
  value: unknown | null;
}

interface Waiter {
  resolve: () => void;
  reject: (err: unknown) => void;
}

/** The array's LevelDB, with group-committed writes. */
export class MetaStore {
  private readonly db: Level<string, string>;
  private pending = new Map<string, string | null>();
  private pendingSync = false;
  private waiters: Waiter[] = [];
  private writing = false;

  private constructor(db: Level<string, string>) {
    this.db = db;
  }

  /** Opens (creating if needed) the database in `dir`. */
  static async open(dir: string): Promise<MetaStore> {
    const db = new Level<string, string>(dir, { valueEncoding: 'utf8' });
    await db.open();
    return new MetaStore(db);
  }

  /** Reads one value (undefined when missing). Sees only written batches: call `flush` first if a write may be pending. */
  async get<T>(key: string): Promise<T | undefined> {
    const raw = await this.db.get(key);
    return raw === undefined ? undefined : (JSON.parse(raw) as T);
  }

  /** Every [key, value] whose key starts with `prefix`, in key order. */
  async entries<T>(prefix: string): Promise<Array<[string, T]>> {
    const out: Array<[string, T]> = [];
    for await (const [key, raw] of this.db.iterator({ gte: prefix, lt: `${prefix}\xff` })) {
      out.push([key, JSON.parse(raw) as T]);
    }
    return out;
  }

  /** Writes `ops` atomically (they go in one batch). The value is serialised now, so later changes to it do not leak in. */
  write(ops: MetaOp[], options: { sync?: boolean } = {}): Promise<void> {
    for (const op of ops) {
      // Re-inserting moves the key to the end, keeping the batch in write order.
      this.pending.delete(op.key);
      this.pending.set(op.key, op.value === null ? null : JSON.stringify(op.value));
    }
    if (options.sync) this.pendingSync = true;
    return new Promise((resolve, reject) => {
      this.waiters.push({ resolve, reject });
      if (!this.writing) void this.drain();
    });
  }

  /** Writes one value. */
  put(key: string, value: unknown, options: { sync?: boolean } = {}): Promise<void> {
    return this.write([{ key, value }], options);
  }

  /** Deletes keys. */
  del(keysToDelete: string[]): Promise<void> {
    return this.write(keysToDelete.map((key) => ({ key, value: null })));
  }

  /** Deletes every key starting with `prefix`. */
  async delPrefix(prefix: string): Promise<void> {
    await this.flush();
    await this.db.clear({ gte: prefix, lt: `${prefix}\xff` });
  }

  /** Resolves once every write issued so far is written. */
  async flush(): Promise<void> {
    if (this.writing || this.pending.size > 0) await this.write([]);
  }

  /** Writes what is pending and closes the database. */
  async close(): Promise<void> {
    await this.flush();
    await this.db.close();
  }

  private async drain(): Promise<void> {
    this.writing = true;
    while (this.waiters.length > 0) {
      const batch = [...this.pending].map(([key, value]) =>
        value === null ? { type: 'del' as const, key } : { type: 'put' as const, key, value },
      );
      const waiters = this.waiters;
      const sync = this.pendingSync;
      this.pending = new Map();
      this.waiters = [];
      this.pendingSync = false;
      try {
        if (batch.length > 0) await this.db.batch(batch, { sync });
        for (const w of waiters) w.resolve();
      } catch (err) {
        for (const w of waiters) w.reject(err);
      }
    }
    this.writing = false;
  }
}
