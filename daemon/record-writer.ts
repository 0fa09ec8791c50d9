/**
 * Group commit of migration records: every record written in one turn of
 * the event loop goes to LevelDB in one batch, and each caller's promise
 * settles when that batch is written. With 1,000 migrations moving at once
 * that is one batch a tick rather than 1,000 puts (and their callbacks).
 *
 * One batch is in flight at a time, so a record's writes land in the order
 * they were asked for, and a record asked for twice before its batch goes
 * is written once, with its latest value. What a batch writes is a copy of
 * each record taken as the batch goes (shallow: the engine replaces a
 * record's nested values, never changes them in place), and that copy is
 * what `written` receives: the value now on disk.
 */
import type { MigrationRecord } from './migration.ts';

/** Where the batches go. */
export interface BatchSink {
  saveAll(records: readonly MigrationRecord[]): Promise<void>;
}

interface Pending {
  records: Map<string, MigrationRecord>;
  promise: Promise<void>;
  resolve: () => void;
  reject: (err: unknown) => void;
}

export class RecordWriter {
  private next: Pending | undefined;
  private inFlight: Promise<void> | undefined;
  private scheduled = false;

  constructor(
    private readonly sink: BatchSink,
    /** Called, in batch order, with the copy of each record once it is on disk. */
    private readonly written: (copy: MigrationRecord) => void,
  ) {}

  /** Writes the record's value as it is when its batch goes. Resolves once it is on disk. */
  write(record: MigrationRecord): Promise<void> {
    if (!this.next) {
      let resolve!: () => void;
      let reject!: (err: unknown) => void;
      const promise = new Promise<void>((res, rej) => ((resolve = res), (reject = rej)));
      this.next = { records: new Map(), promise, resolve, reject };
    }
    this.next.records.set(record.id, record);
    this.schedule();
    return this.next.promise;
  }

  /** Resolves once every write asked for so far is settled. */
  async idle(): Promise<void> {
    while (this.inFlight || this.next) await (this.inFlight ?? this.next?.promise)?.catch(() => undefined);
  }

  private schedule(): void {
    if (this.scheduled || this.inFlight) return;
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      this.flush();
    });
  }

  private flush(): void {
    const batch = this.next;
    if (!batch || this.inFlight) return;
    this.next = undefined;
    const copies = [...batch.records.values()].map((record) => ({ ...record }));
    this.inFlight = this.sink.saveAll(copies).then(
      () => {
        try {
          for (const copy of copies) this.written(copy);
        } finally {
          batch.resolve();
        }
      },
      (err: unknown) => batch.reject(err),
    );
    void this.inFlight.finally(() => {
      this.inFlight = undefined;
      if (this.next) this.schedule();
    });
  }
}
