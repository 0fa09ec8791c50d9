/**
 * The data path: reads and writes of shares by clients, tests and the
 * workload generator. A share is read and written wherever it lives now
 * (its source until a cutover commits, its destination after).
 *
 * Each share has a gate that the cutover closes: while frozen, new writes
 * either queue in arrival order (nondisruptive) or fail UNAVAILABLE; the
 * cutover waits for the writes already in flight before it copies the final
 * delta, and hands the queued writes over to the new location when it
 * releases the gate.
 */
import { performance } from 'node:perf_hooks';
import { ArrayError } from './errors.ts';
import type { BlockStore } from './blockstore.ts';
import type { CopyPool } from './copy-pool.ts';
import { MAX_IO_BYTES } from './model.ts';
import type { ShareRecord } from './model.ts';

/** How a frozen gate treats new writes. */
export type FreezeMode = 'wait' | 'reject';

/** The write gate of one share. */
export class ShareGate {
  private mode: 'open' | FreezeMode = 'open';
  private inflight = 0;
  private queued: Array<() => void> = [];
  private drainWaiters: Array<() => void> = [];
  private frozenAt = 0;
  /** How long the last freeze held writes, in ms, as the gate itself saw it (0 before the first one ends). */
  lastFreezeMs = 0;
  /** Freezes ended so far. */
  freezes = 0;

  /** True while a cutover holds writes. */
  get frozen(): boolean {
    return this.mode !== 'open';
  }

  /** Admits one write: at once when open, after the release when frozen in 'wait' mode. */
  async enter(shareId: string): Promise<void> {
    if (this.mode === 'reject') throw new ArrayError('BUSY', `share ${shareId} is cutting over; retry`);
    if (this.mode === 'wait') {
      // `release` counts us in flight before waking us, so no new freeze can slip in between.
      await new Promise<void>((resolve) => this.queued.push(resolve));
      return;
    }
    this.inflight++;
  }

  /** Ends one admitted write. */
  leave(): void {
    this.inflight--;
    if (this.inflight === 0) for (const w of this.drainWaiters.splice(0)) w();
  }

  /** Stops admitting writes. */
  freeze(mode: FreezeMode): void {
    this.mode = mode;
    this.frozenAt = performance.now();
  }

  /** Resolves once no admitted write is in flight. */
  drained(): Promise<void> {
    if (this.inflight === 0) return Promise.resolve();
    return new Promise((resolve) => this.drainWaiters.push(resolve));
  }

  /** Opens the gate and lets the queued writes go, in the order they came. */
  release(): void {
    if (this.mode !== 'open') {
      this.lastFreezeMs = performance.now() - this.frozenAt;
      this.freezes++;
    }
    this.mode = 'open';
    const queued = this.queued.splice(0);
    this.inflight += queued.length;
    for (const w of queued) w();
  }
}

/** What the job engine needs to know about each write. */
export interface WriteObserver {
  /** Throws FAILED_PRECONDITION if the share is read-only because of a migration. */
  checkWritable(share: ShareRecord): void;
  /** Called after the pwrite completed and before the write is made durable and acknowledged. */
  written(share: ShareRecord, offset: number, length: number): void;
}

/** Finds a share or throws NOT_FOUND. */
export type ShareLookup = (shareId: string) => ShareRecord;

/** Copy-on-write for snapshots: runs before a write's pwrite, and answers the function to call right after it. */
export type BeforeWrite = (share: ShareRecord, offset: number, length: number) => Promise<() => void>;

/** The write gate of every share, made on first use. */
export class ShareGates {
  private readonly gates = new Map<string, ShareGate>();

  /** The write gate of a share. */
  gate(shareId: string): ShareGate {
    let gate = this.gates.get(shareId);
    if (!gate) {
      gate = new ShareGate();
      this.gates.set(shareId, gate);
    }
    return gate;
  }

  /** Forgets a deleted share's gate. */
  forget(shareId: string): void {
    this.gates.delete(shareId);
  }
}

/** What the data path works with. */
export interface DataPathDeps {
  lookup: ShareLookup;
  blocks: BlockStore;
  pool: CopyPool;
  gates: ShareGates;
  /** The job engine, told about every write. */
  observer: WriteObserver;
  /** The snapshots' copy-on-write. */
  beforeWrite: BeforeWrite;
}

/** Reads, writes and checksums of shares. */
export class DataPath {
  private readonly lookup: ShareLookup;
  private readonly blocks: BlockStore;
  private readonly pool: CopyPool;
  private readonly gates: ShareGates;
  private readonly observer: WriteObserver;
  private readonly beforeWrite: BeforeWrite;

  constructor(deps: DataPathDeps) {
    this.beforeWrite = deps.beforeWrite;
    this.lookup = deps.lookup;
    this.blocks = deps.blocks;
    this.pool = deps.pool;
    this.gates = deps.gates;
    this.observer = deps.observer;
  }

  /** The write gate of a share. */
  gate(shareId: string): ShareGate {
    return this.gates.gate(shareId);
  }

  /** Writes and resolves once the data is durable. */
  async write(shareId: string, offset: number, data: Uint8Array): Promise<number> {
    const before = this.lookup(shareId);
    checkRange(before, offset, data.length, 'data');
    this.observer.checkWritable(before);
    const gate = this.gates.gate(shareId);
    await gate.enter(shareId);
    try {
      // Look the share up again after the gate: a cutover may have moved it while we waited.
      const share = this.lookup(shareId);
      if (share.movedAway) throw new ArrayError('WRONG_STATE', `share ${shareId} was moved to another array; write to it there`);
      this.observer.checkWritable(share);
      const preserved = await this.beforeWrite(share, offset, data.length);
      try {
        await this.blocks.write(share.fileId, offset, data, () => {
          this.observer.written(share, offset, data.length);
          preserved();
        });
      } finally {
        preserved();
      }
      return data.length;
    } finally {
      gate.leave();
    }
  }

  /** Reads `length` bytes at `offset`. Reads are not frozen: until the commit point the source holds everything. */
  async read(shareId: string, offset: number, length: number): Promise<Buffer> {
    const share = this.lookup(shareId);
    checkRange(share, offset, length, 'length');
    return this.blocks.read(share.fileId, offset, length);
  }

  /** sha256 of the whole share, computed in a worker thread. */
  async checksum(shareId: string): Promise<string> {
    const share = this.lookup(shareId);
    const release = this.blocks.hold(share.fileId);
    try {
      return (await this.pool.checksum({ path: this.blocks.path(share.fileId), size: share.sizeBytes })).sha256;
    } finally {
      release();
    }
  }
}

/** Checks an I/O request against the share's size and the per-call limit; `lengthField` names the field that carries the length. */
function checkRange(share: ShareRecord, offset: number, length: number, lengthField: 'data' | 'length'): void {
  if (!Number.isSafeInteger(offset) || offset < 0) {
    throw new ArrayError('BAD_REQUEST', `offset must be 0 or more, got ${offset}`);
  }
  if (!Number.isSafeInteger(length) || length <= 0) {
    throw new ArrayError('BAD_REQUEST', lengthField === 'data' ? 'data must not be empty' : `length must be at least 1, got ${length}`);
  }
  if (length > MAX_IO_BYTES) {
    throw new ArrayError('BAD_REQUEST', `${lengthField} is ${length} bytes; at most ${MAX_IO_BYTES} (1 MiB) per call`);
  }
  if (offset + length > share.sizeBytes) {
    throw new ArrayError(
      'BAD_REQUEST',
      `offset ${offset} + ${lengthField === 'data' ? 'data length' : 'length'} ${length} is past the end of share ${share.shareId} (${share.sizeBytes} bytes)`,
    );
  }
}
