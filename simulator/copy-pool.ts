/**
 * A small pool of copy worker threads shared by every job of the array.
 * Tasks queue in order; each worker runs one at a time. A task is never
 * aborted mid-way: jobs stop cooperatively by no longer submitting tasks
 * and awaiting the ones in flight, so a stopped job always leaves a
 * consistent checkpoint (piscina's abort kills the thread, which is exactly
 * what this avoids).
 */
import { Worker } from 'node:worker_threads';
import type { Log } from '../lib/log.ts';
import type {
  ChecksumRequest,
  ChecksumResult,
  CopyRequest,
  CopyResult,
  HashRequest,
  HashResult,
  WorkerMessage,
  WorkerRequest,
  WorkerResult,
} from './copy-protocol.ts';

const WORKER_URL = new URL('./copy-worker.mjs', import.meta.url);

/** A failure reported by a worker (an I/O error, or the worker died). */
export class CopyTaskError extends Error {
  override name = 'CopyTaskError';
  /** The errno code, when there is one (e.g. ENOENT). */
  readonly code: string | undefined;

  constructor(message: string, code?: string) {
    super(message);
    this.code = code;
  }
}

interface Task {
  req: WorkerRequest;
  resolve: (result: WorkerResult) => void;
  reject: (err: Error) => void;
  /** Told the bytes of each progress message of a copy. */
  onProgress?: (bytes: number) => void;
}

interface Slot {
  worker: Worker;
  task: Task | null;
}

type Without<T> = T extends unknown ? Omit<T, 'id' | 'type'> : never;

/** The array's copy workers. */
export class CopyPool {
  private readonly log: Log;
  private readonly slots: Slot[] = [];
  private readonly queue: Task[] = [];
  private nextId = 1;
  private closed = false;

  private readonly workerUrl: URL;

  /** `workerUrl` is the worker's entry (tests pass a stand-in that breaks the protocol). */
  constructor(size: number, log: Log, workerUrl: URL = WORKER_URL) {
    this.log = log;
    this.workerUrl = workerUrl;
    for (let i = 0; i < size; i++) this.slots.push(this.spawn());
  }

  /** How many workers there are. */
  get size(): number {
    return this.slots.length;
  }

  /**
   * Copies runs of blocks from one file to another. With `req.progressMs`,
   * `onProgress` is told the bytes that landed as the copy goes, before the
   * promise resolves.
   */
  copy(req: Without<CopyRequest>, onProgress?: (bytes: number) => void): Promise<CopyResult> {
    return this.submit({ ...req, type: 'copy' }, onProgress) as Promise<CopyResult>;
  }

  /** Hashes runs of blocks in one or more files. */
  hash(req: Without<HashRequest>): Promise<HashResult> {
    return this.submit({ ...req, type: 'hash' }) as Promise<HashResult>;
  }

  /** Checksums a whole file. */
  checksum(req: Without<ChecksumRequest>): Promise<ChecksumResult> {
    return this.submit({ ...req, type: 'checksum' }) as Promise<ChecksumResult>;
  }

  /** Terminates the workers. Call after every job has stopped submitting. */
  async close(): Promise<void> {
    this.closed = true;
    for (const task of this.queue.splice(0)) task.reject(new CopyTaskError('copy pool closed'));
    await Promise.all(this.slots.map((slot) => slot.worker.terminate()));
  }

  private submit(req: Omit<WorkerRequest, 'id'>, onProgress?: (bytes: number) => void): Promise<WorkerResult> {
    if (this.closed) return Promise.reject(new CopyTaskError('copy pool closed'));
    return new Promise((resolve, reject) => {
      this.queue.push({ req: { ...req, id: this.nextId++ } as WorkerRequest, resolve, reject, ...(onProgress ? { onProgress } : {}) });
      this.pump();
    });
  }

  private pump(): void {
    for (const slot of this.slots) {
      if (slot.task) continue;
      const task = this.queue.shift();
      if (!task) return;
      slot.task = task;
      slot.worker.ref(); // A busy worker keeps the process alive; an idle one does not.
      slot.worker.postMessage(task.req);
    }
  }

  private spawn(): Slot {
    const slot = { task: null } as unknown as Slot;
    this.start(slot);
    return slot;
  }

  /** Starts a worker in `slot`; if it dies, fails its task and starts another in its place. */
  private start(slot: Slot): void {
    const worker = new Worker(this.workerUrl);
    slot.worker = worker;
    worker.unref();
    let dead = false;
    worker.on('message', (result: WorkerMessage) => {
      if (dead) return;
      const task = slot.task;
      // copy-protocol.ts: every message answers the task the worker is running. Anything else means the worker
      // and the pool disagree about what it is doing: its results cannot be trusted, so it is replaced.
      if (!task || result.id !== task.req.id) {
        died(`answered request ${result.id} while ${task ? `running request ${task.req.id}` : 'idle'}`);
        void worker.terminate();
        return;
      }
      // A progress message: the task is still running, the slot stays busy.
      if (result.type === 'progress') return task.onProgress?.(result.bytes);
      slot.task = null;
      worker.unref();
      if (result.type === 'error') task.reject(new CopyTaskError(result.message, result.code));
      else task.resolve(result);
      this.pump();
    });
    const died = (why: string) => {
      if (dead || this.closed) return;
      dead = true;
      const task = slot.task;
      slot.task = null;
      task?.reject(new CopyTaskError(`copy worker ${why}`));
      this.log.error({ why }, 'copy worker died; starting another');
      this.start(slot);
      this.pump();
    };
    worker.on('error', (err) => died(`failed: ${err.message}`));
    worker.on('exit', (code) => died(`exited with code ${code}`));
  }
}
