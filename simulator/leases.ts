/**
 * Write freezes with a lease, for the host data path's cutover: a holder
 * (ferryd's migration) freezes a share's writes through the same gate the
 * array's own cutover closes, and the share thaws by itself when the lease
 * runs out, so a dead holder never leaves it frozen. A freeze is kept in
 * memory only: a restarted array has none.
 */
import { ArrayError } from './errors.ts';
import type { ShareGates, ShareLookup } from './datapath.ts';
import type { ShareRecord } from './model.ts';
import type { Log } from '../lib/log.ts';

/** The longest lease FreezeShare grants, in ms. */
export const MAX_LEASE_MS = 10 * 60 * 1000;

interface Lease {
  holder: string;
  timer: NodeJS.Timeout;
}

/** What the leases work with. */
export interface LeaseDeps {
  gates: ShareGates;
  lookup: ShareLookup;
  /** The id of the job whose cutover may freeze the share, '' when none. */
  activeJob: (share: ShareRecord) => string;
  log: Log;
}

/** The freezes of every share. */
export class FreezeLeases {
  private readonly deps: LeaseDeps;
  private readonly leases = new Map<string, Lease>();

  constructor(deps: LeaseDeps) {
    this.deps = deps;
  }

  /**
   * FreezeShare: freezes (or renews the freeze of) a share's writes for
   * `leaseMs`, new writes waiting (`wait`) or failing BUSY, and resolves once
   * the writes in flight have finished.
   */
  async freeze(shareId: string, holder: string, leaseMs: number, wait: boolean): Promise<void> {
    const share = this.deps.lookup(shareId);
    const gate = this.deps.gates.gate(shareId);
    const lease = this.leases.get(shareId);
    if (lease && lease.holder !== holder) throw new ArrayError('WRONG_STATE', `share ${shareId} is frozen by ${lease.holder}`);
    if (!lease) {
      const job = this.deps.activeJob(share);
      if (job) throw new ArrayError('WRONG_STATE', `share ${shareId} is being moved by job ${job}; its cutover freezes it`);
      if (gate.frozen) throw new ArrayError('WRONG_STATE', `share ${shareId} is frozen by a cutover`);
      gate.freeze(wait ? 'wait' : 'reject');
    } else {
      clearTimeout(lease.timer);
    }
    const timer = setTimeout(() => this.expire(shareId, holder), leaseMs);
    timer.unref();
    this.leases.set(shareId, { holder, timer });
    await gate.drained();
  }

  /** ReleaseShare: thaws the share. Not frozen: success; frozen by another holder: WRONG_STATE. */
  release(shareId: string, holder: string): void {
    const lease = this.leases.get(shareId);
    if (!lease) return;
    if (lease.holder !== holder) throw new ArrayError('WRONG_STATE', `share ${shareId} is frozen by ${lease.holder}, not ${holder}`);
    clearTimeout(lease.timer);
    this.leases.delete(shareId);
    this.deps.gates.gate(shareId).release();
  }

  /** The holder of a share's freeze, if it is frozen by one. */
  holder(shareId: string): string | undefined {
    return this.leases.get(shareId)?.holder;
  }

  /** Thaws every share (the array is closing). */
  close(): void {
    for (const [shareId, lease] of [...this.leases]) this.release(shareId, lease.holder);
  }

  private expire(shareId: string, holder: string): void {
    if (this.leases.get(shareId)?.holder !== holder) return;
    this.deps.log.warn({ share: shareId, holder }, 'freeze lease ran out: thawing the share');
    this.release(shareId, holder);
  }
}
