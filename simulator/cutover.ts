/**
 * The cutover (phase 2) of one job:
 *
 *   stop the copy loop -> freeze writes -> wait for writes in flight ->
 *   copy the final dirty blocks -> fdatasync the destination -> verify the
 *   blocks the background sweep has not verified -> COMMIT POINT (one synced
 *   metadata batch moves the share to its destination) -> release the
 *   waiting writes onto the destination -> delete the source.
 *
 * Before the commit point the source is authoritative, so anything that
 * goes wrong rolls back: the window (max_downtime_ms) running out under
 * CUTOVER_ACTION_ABORT, a verification that fails twice, an I/O error.
 * After the commit point everything rolls forward, also across a restart.
 */
import { performance } from 'node:perf_hooks';
import type { Log } from '../daemon/log.ts';
import type { BlockStore } from './blockstore.ts';
import type { ShareGate } from './datapath.ts';
import type { Faults } from './faults.ts';
import type { JobRunner } from './job-runner.ts';
import type { MetaStore } from './metadata.ts';
import { keys } from './model.ts';
import type { ShareRecord } from './model.ts';
import { sleep } from './rates.ts';

/** Thrown inside the cutover to roll it back to SYNCING. */
class CutoverAbort extends Error {
  override name = 'CutoverAbort';
}

/** What the cutover needs from the array. */
export interface CutoverDeps {
  gate: ShareGate;
  share: ShareRecord;
  store: MetaStore;
  blocks: BlockStore;
  faults: Faults;
  log: Log;
  /** Deletes the source and marks the job DONE (also used when a restart finds a switched job). */
  finish(runner: JobRunner): Promise<void>;
}

/**
 * Runs one cutover attempt. Resolves when the job is DONE or back in
 * SYNCING after an abort; rejects (with the gate released and the source
 * authoritative) on an unexpected failure before the commit point, which
 * the caller turns into a failed job.
 */
export async function runCutover(runner: JobRunner, deps: CutoverDeps): Promise<void> {
  const { rec } = runner;
  const { gate, share, log } = deps;
  const attempt = rec.cutoverAttempts + 1;
  rec.cutoverAttempts = attempt;
  rec.state = 'CUTTING_OVER';
  await runner.save(true);

  // After a restart the loop first rebuilds the dirty set; until then we do not know what the destination lacks.
  while (runner.needsRebuild && rec.state === 'CUTTING_OVER') await runner.rebuilt.wait(1000);
  await runner.stopLoop();
  if (rec.state !== 'CUTTING_OVER') throw new Error(`job ${rec.jobId} failed before its cutover could freeze the share`);

  const window = rec.spec.maxDowntimeMs;
  let t0 = 0;
  const elapsed = () => performance.now() - t0;
  const check = (step: string) => {
    if (rec.spec.cutoverAction === 'ABORT' && elapsed() > window) {
      throw new CutoverAbort(`cutover exceeded its ${window} ms window (${elapsed().toFixed(1)} ms frozen, while ${step}); writes resumed on the source`);
    }
  };

  let finalDeltaBytes = 0;
  let verifiedBytes = 0;
  t0 = performance.now();
  gate.freeze(rec.spec.nondisruptive ? 'wait' : 'reject');
  try {
    await gate.drained();
    check('waiting for writes in flight');
    const delay = deps.faults.value.cutoverDelayMs;
    if (delay > 0) {
      await sleep(delay);
      check('in the injected cutover delay');
    }

    // The final delta: what is dirty, plus anything we hold no hash for (nothing, unless a restart intervened).
    const { state } = runner;
    const final = new Set(state.dirty.drain());
    for (const b of state.hashed.list(0, state.count, Infinity, false)) final.add(b);
    finalDeltaBytes = (await runner.copyBlocks([...final].sort((a, b) => a - b), { throttle: false })).bytes;
    check('copying the final delta');
    await deps.blocks.sync(rec.dest.fileId);
    check('flushing the destination');

    // Verify only what the background sweep has not: the final delta and anything written lately.
    const first = await state.verify(state.verified.list(0, state.count, Infinity, false));
    verifiedBytes += first.bytes;
    if (first.mismatched.length > 0) {
      log.warn({ job: rec.jobId, blocks: first.mismatched.length }, 'cutover: destination blocks failed verification; copying them again');
      await runner.copyBlocks(first.mismatched, { throttle: false });
      await deps.blocks.sync(rec.dest.fileId);
      const second = await state.verify(first.mismatched);
      verifiedBytes += second.bytes;
      if (second.mismatched.length > 0) {
        for (const b of second.mismatched) state.dirty.set(b);
        throw new CutoverAbort(`verification failed: ${second.mismatched.length} destination blocks differ from what was copied, twice; writes resumed on the source`);
      }
    }
    check('verifying the destination');
    await deps.faults.crashIfAt('CUTOVER_BEFORE_SWITCH');
  } catch (err) {
    gate.release();
    if (!(err instanceof CutoverAbort)) throw err;
    rec.state = 'SYNCING';
    rec.lastAbortReason = err.message;
    rec.lastAbortAttempt = attempt;
    await runner.save(true);
    runner.startLoop();
    log.warn({ job: rec.jobId, attempt, reason: err.message }, 'cutover aborted');
    return;
  }

  // COMMIT POINT: one synced batch moves the share and records the switch.
  share.backend = rec.dest.backend;
  share.pool = rec.dest.pool;
  share.fileId = rec.dest.fileId;
  if (!rec.spec.preserveMetadata) share.metadata = {};
  if (!rec.spec.preserveSnapshots) share.snapshots = 0;
  if (rec.spec.newShareType) share.shareType = rec.spec.newShareType;
  rec.switched = true;
  rec.pendingDelete = rec.source.fileId;
  rec.cutover = { freezeMs: elapsed(), finalDeltaBytes, verifiedBytes };
  await deps.store.write(
    [
      { key: keys.share(share.shareId), value: share },
      { key: keys.job(rec.jobId), value: rec },
    ],
    { sync: true },
  );
  rec.cutover.freezeMs = elapsed();
  gate.release();
  log.info({ job: rec.jobId, attempt, ...rec.cutover }, 'cutover committed');

  await deps.faults.crashIfAt('CUTOVER_AFTER_SWITCH');
  await deps.finish(runner);
}
