/**
 * Where a host-path copy stands, persisted so that a SIGKILL of ferryd
 * resumes it within one batch: which pass, which snapshots, how far into
 * the pass's changed extents, and whether the cutover reached its commit.
 * The mover owns these records; ferryd keeps them in its store next to the
 * migrations (daemon/store.ts), the conformance kit in memory.
 *
 * Snapshot ids are derived: pass n's snapshot is `<migration>-s<n>`.
 */
import type { CutoverMeasurements } from '../../plugins/api/index.ts';

/** A host-path migration's place. Plain JSON. */
export interface MoverPlace {
  v: 1;
  /** Passes begun: the newest snapshot taken is `<migration>-s<pass>`. 0 before the first. */
  pass: number;
  /** The newest snapshot whose every change is on the target, verified; '' before the first pass ends. */
  base: string;
  /** The snapshot being copied; '' between passes. */
  current: string;
  /** In the current pass's changed extents, everything before this offset is on the target, verified. */
  cursor: number;
  /** Snapshots no longer needed, deleted lazily (a crash between persisting and deleting leaves them here, not on the array for ever). */
  garbage: string[];
  /** The target exists on the destination. */
  targetCreated: boolean;
  /** The share's size, from the first snapshot (0 before it). */
  sizeBytes: number;
  /** Bytes of the first pass on the target: what progress reports as copied, never less than before. */
  firstPassBytes: number;
  /** Every byte written to the target, by every pass (for the bench's overhead figure). */
  sentBytes: number;
  /**
   * `copy`: phase 1 or a cutover before its commit. `promoting`: the last
   * delta is on the target, verified, and promoteTarget may have been
   * called (whether it committed is asked of the destination after a
   * crash). `committed`: the target is the share; only roll-forward is left.
   */
  phase: 'copy' | 'promoting' | 'committed';
  /** What the cutover measured, saved with `committed` for the roll-forward after a crash. */
  cutover?: CutoverMeasurements;
}

/** A new migration's place. */
export function initialPlace(): MoverPlace {
  return { v: 1, pass: 0, base: '', current: '', cursor: 0, garbage: [], targetCreated: false, sizeBytes: 0, firstPassBytes: 0, sentBytes: 0, phase: 'copy' };
}

/** Where the places are kept. */
export interface PlaceStore {
  load(migrationId: string): Promise<MoverPlace | undefined>;
  /** Durable against a crash of the process once it resolves. */
  save(migrationId: string, place: MoverPlace): Promise<void>;
  remove(migrationId: string): Promise<void>;
}

/** Places in memory (the conformance kit, tests): they do not outlive the process. */
export class MemoryPlaceStore implements PlaceStore {
  private readonly places = new Map<string, string>();

  async load(migrationId: string): Promise<MoverPlace | undefined> {
    const text = this.places.get(migrationId);
    return text === undefined ? undefined : (JSON.parse(text) as MoverPlace);
  }

  async save(migrationId: string, place: MoverPlace): Promise<void> {
    this.places.set(migrationId, JSON.stringify(place));
  }

  async remove(migrationId: string): Promise<void> {
    this.places.delete(migrationId);
  }
}

/** Snapshot id of pass `n`. */
export const snapshotId = (migrationId: string, n: number): string => `${migrationId}-s${n}`;

/** The target's id. */
export const targetId = (migrationId: string): string => `${migrationId}-t`;
