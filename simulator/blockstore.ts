/**
 * Share data on disk: one sparse file per share, <dataDir>/shares/<id>.img,
 * addressed in bytes (the job engine addresses it in fixed-size blocks).
 *
 * Writes are acknowledged only once durable: pwrite, then fdatasync. Writes
 * to one file share fdatasyncs (group commit): a write that finishes its
 * pwrite while a sync is running waits for the next sync, which then covers
 * every write that queued behind it. Under a concurrent workload that turns
 * N syncs into about two, which is most of a write's latency.
 *
 * A file is pinned while anything reads or writes it, so that deleting a
 * share's old location after a cutover waits for reads still in flight.
 */
import { mkdir, open, readdir, unlink } from 'node:fs/promises';
import type { FileHandle } from 'node:fs/promises';
import path from 'node:path';

interface SyncWaiter {
  resolve: () => void;
  reject: (err: unknown) => void;
}

class ShareFile {
  readonly handle: Promise<FileHandle>;
  pins = 0;
  private pinWaiters: Array<() => void> = [];
  private syncWaiters: SyncWaiter[] = [];
  private syncing = false;

  constructor(file: string) {
    this.handle = open(file, 'r+');
    // An open that fails (the file is gone) is reported by whoever awaits it.
    this.handle.catch(() => undefined);
  }

  /** Resolves when every write that completed its pwrite before this call is durable. */
  sync(): Promise<void> {
    return new Promise((resolve, reject) => {
      this.syncWaiters.push({ resolve, reject });
      if (!this.syncing) void this.runSyncs();
    });
  }

  unpin(): void {
    this.pins--;
    if (this.pins === 0) for (const w of this.pinWaiters.splice(0)) w();
  }

  idle(): Promise<void> {
    if (this.pins === 0) return Promise.resolve();
    return new Promise((resolve) => this.pinWaiters.push(resolve));
  }

  private async runSyncs(): Promise<void> {
    this.syncing = true;
    while (this.syncWaiters.length > 0) {
      const batch = this.syncWaiters.splice(0);
      try {
        await (await this.handle).datasync();
        for (const w of batch) w.resolve();
      } catch (err) {
        for (const w of batch) w.reject(err);
      }
    }
    this.syncing = false;
  }
}

async function pwrite(fh: FileHandle, offset: number, data: Uint8Array): Promise<void> {
  let done = 0;
  while (done < data.length) {
    const { bytesWritten } = await fh.write(data, done, data.length - done, offset + done);
    done += bytesWritten;
  }
}

/** The share files of one array. */
export class BlockStore {
  /** The folder holding the .img files. */
  readonly dir: string;
  private files = new Map<string, ShareFile>();

  private constructor(dir: string) {
    this.dir = dir;
  }

  /** Opens the store under `dataDir`, creating <dataDir>/shares. */
  static async open(dataDir: string): Promise<BlockStore> {
    const dir = path.join(dataDir, 'shares');
    await mkdir(dir, { recursive: true });
    return new BlockStore(dir);
  }

  /** The path of a data file (worker threads open it themselves). */
  path(fileId: string): string {
    return path.join(this.dir, `${fileId}.img`);
  }

  /** Creates (or empties) a sparse, all-zero file of `size` bytes, durably. */
  async create(fileId: string, size: number): Promise<void> {
    const fh = await open(this.path(fileId), 'w');
    try {
      await fh.truncate(size);
      await fh.sync();
    } finally {
      await fh.close();
    }
    await this.syncDir();
  }

  /**
   * Writes `data` at `offset` and resolves once it is durable. `afterWrite`
   * runs after the pwrite completes and before the sync: the job engine
   * marks blocks dirty there, which is what makes dirty tracking race-free
   * against a worker copying the same blocks.
   */
  async write(fileId: string, offset: number, data: Uint8Array, afterWrite?: () => void): Promise<void> {
    const file = this.pin(fileId);
    try {
      await pwrite(await file.handle, offset, data);
      afterWrite?.();
      await file.sync();
    } finally {
      file.unpin();
    }
  }

  /** Writes `data` at `offset` without waiting for it to be durable: a stream of writes calls `sync` once at its end. */
  async writeUnsynced(fileId: string, offset: number, data: Uint8Array): Promise<void> {
    const file = this.pin(fileId);
    try {
      await pwrite(await file.handle, offset, data);
    } finally {
      file.unpin();
    }
  }

  /** Reads `length` bytes at `offset` (zeros past the written data: the files are sparse, never short). */
  async read(fileId: string, offset: number, length: number): Promise<Buffer> {
    const file = this.pin(fileId);
    try {
      const fh = await file.handle;
      const buf = Buffer.alloc(length);
      let done = 0;
      while (done < length) {
        const { bytesRead } = await fh.read(buf, done, length - done, offset + done);
        if (bytesRead === 0) break;
        done += bytesRead;
      }
      return buf;
    } finally {
      file.unpin();
    }
  }

  /** Makes everything written to the file so far durable (workers write through their own descriptors; fdatasync covers the inode). */
  async sync(fileId: string): Promise<void> {
    const file = this.pin(fileId);
    try {
      await file.sync();
    } finally {
      file.unpin();
    }
  }

  /** Keeps the file from being deleted until the returned function is called (for work done in a worker). */
  hold(fileId: string): () => void {
    const file = this.pin(fileId);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      file.unpin();
    };
  }

  /** Deletes a data file once nothing uses it. A missing file is not an error. */
  async remove(fileId: string): Promise<void> {
    const file = this.files.get(fileId);
    if (file) {
      await file.idle();
      this.files.delete(fileId);
      try {
        await (await file.handle).close();
      } catch {
        // Never opened (missing file): nothing to close.
      }
    }
    try {
      await unlink(this.path(fileId));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
    await this.syncDir();
  }

  /** The ids of every data file on disk. */
  async list(): Promise<string[]> {
    return (await readdir(this.dir)).filter((f) => f.endsWith('.img')).map((f) => f.slice(0, -'.img'.length));
  }

  /** Closes every open file, after the reads and writes in flight. */
  async close(): Promise<void> {
    const files = [...this.files.values()];
    this.files.clear();
    for (const file of files) {
      await file.idle();
      try {
        await (await file.handle).close();
      } catch {
        // Never opened.
      }
    }
  }

  private pin(fileId: string): ShareFile {
    let file = this.files.get(fileId);
    if (!file) {
      file = new ShareFile(this.path(fileId));
      this.files.set(fileId, file);
    }
    file.pins++;
    return file;
  }

  private async syncDir(): Promise<void> {
    // The directory entry of a created or deleted file is durable only after the directory is synced.
    const fh = await open(this.dir, 'r');
    try {
      await fh.sync();
    } finally {
      await fh.close();
    }
  }
}
