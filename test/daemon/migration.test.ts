/** Pure logic of a migration record: the state machine, and progress that never lies. (Ids: test/host/ids.test.ts.) */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { canTransition, emptyProgress, finalProgress, foldProgress, STATES, TERMINAL_STATES, toProgress } from '../../daemon/migration.ts';

describe('the state machine', () => {
  test('terminal states lead nowhere, and COMPLETING cannot be cancelled', () => {
    for (const from of TERMINAL_STATES) for (const to of STATES) assert.equal(canTransition(from, to), false, `${from} -> ${to}`);
    assert.equal(canTransition('COMPLETING', 'CANCELLING'), false);
    assert.equal(canTransition('COMPLETING', 'PHASE1_DONE'), true);
    assert.equal(canTransition('STARTING', 'PHASE1_DONE'), false);
  });
});

describe('toProgress', () => {
  const p = { totalBytes: 1000, copiedBytes: 1000, dirtyBytes: 50, dirtyRateBytesPerSec: 1, throughputBytesPerSec: 10, iteration: 2, etaSeconds: 3 };
  test('caps percent below 100 until phase 1 is done', () => {
    assert.equal(toProgress(p, false).percent, 99.9);
    assert.equal(toProgress(p, false).remainingBytes, 50);
    assert.equal(toProgress(p, true).percent, 100);
    assert.equal(toProgress(p, true).etaSeconds, 0);
  });
  test('never reports more copied than the total', () => {
    assert.equal(toProgress({ ...p, copiedBytes: 5000 }, false).copiedBytes, 1000);
    assert.equal(toProgress({ ...p, totalBytes: 0, copiedBytes: 0 }, false).percent, 0);
  });
});

describe('foldProgress', () => {
  const driver = (copiedBytes: number, dirtyBytes = 0) => ({ totalBytes: 1000, copiedBytes, dirtyBytes, dirtyRateBytesPerSec: 0, throughputBytesPerSec: 10, iteration: 1, etaSeconds: 1 });
  /** Folds a series of driver reports from an empty record; returns what callers were shown after each. */
  function series(reports: number[], startDriverCopied?: number) {
    let progress = { ...emptyProgress(), totalBytes: 1000, remainingBytes: 1000 };
    let driverCopied = startDriverCopied;
    return reports.map((copied) => {
      const folded = foldProgress(progress, driverCopied, driver(copied), false);
      progress = folded.progress;
      driverCopied = folded.driverCopiedBytes;
      return progress;
    });
  }

  test('copied bytes and percent never go back when the driver reports less, and what it went back by is counted as recopied', () => {
    const shown = series([100, 600, 400, 500, 700]);
    assert.deepEqual(shown.map((p) => p.copiedBytes), [100, 600, 600, 600, 700]);
    assert.deepEqual(shown.map((p) => p.percent), [10, 60, 60, 60, 70]);
    assert.deepEqual(shown.map((p) => p.recopiedBytes), [0, 0, 200, 200, 200]);
    // What is left is what the driver says is left: the 200 bytes to copy again show there.
    assert.equal(shown[2]!.remainingBytes, 600);
  });

  test('two drops add up, and a record from before the field counts from its shown figure', () => {
    assert.deepEqual(series([500, 300, 450, 100]).map((p) => p.recopiedBytes), [0, 200, 200, 550]);
    const old = foldProgress({ ...emptyProgress(), totalBytes: 1000, copiedBytes: 800, percent: 80 }, undefined, driver(700), false);
    assert.equal(old.progress.copiedBytes, 800);
    assert.equal(old.progress.recopiedBytes, 100);
    assert.equal(old.driverCopiedBytes, 700);
  });

  test('phase 1 done is 100 %, and never more copied than the total', () => {
    const done = foldProgress({ ...emptyProgress(), totalBytes: 1000 }, 0, { ...driver(5000), dirtyBytes: 3 }, true);
    assert.equal(done.progress.percent, 100);
    assert.equal(done.progress.copiedBytes, 1000);
    assert.equal(done.progress.remainingBytes, 3);
  });
});

describe('finalProgress', () => {
  const MiB = 1024 * 1024;
  // The last poll before the cutover: a moment's rate, writes still landing.
  const lastPoll = { percent: 100, totalBytes: 64 * MiB, copiedBytes: 64 * MiB, remainingBytes: 6 * MiB, dirtyBytes: 6 * MiB, dirtyRateBytesPerSec: 3 * MiB, throughputBytesPerSec: 21 * MiB, iteration: 4, etaSeconds: 0, warning: 'not converging' };

  test('a SUCCESS shows everything copied, nothing dirty, no rates of the moment, and the average throughput of phase 1', () => {
    const p = finalProgress({ state: 'SUCCESS', progress: lastPoll, startedAt: 1_000, phase1DoneAt: 9_000, finishedAt: 60_000 });
    assert.deepEqual(p, { percent: 100, totalBytes: 64 * MiB, copiedBytes: 64 * MiB, remainingBytes: 0, dirtyBytes: 0, dirtyRateBytesPerSec: 0, throughputBytesPerSec: 8 * MiB, iteration: 4, etaSeconds: 0 });
  });

  test('a CANCELLED or ERROR keeps what it had copied, averaged up to its end, and its warning', () => {
    const half = { ...lastPoll, percent: 50, copiedBytes: 32 * MiB, remainingBytes: 32 * MiB, dirtyBytes: 0, etaSeconds: 30 };
    const p = finalProgress({ state: 'ERROR', progress: half, startedAt: 1_000, finishedAt: 5_000 });
    assert.equal(p.throughputBytesPerSec, 8 * MiB);
    assert.equal(p.copiedBytes, 32 * MiB);
    assert.equal(p.percent, 50);
    assert.equal(p.dirtyRateBytesPerSec, 0);
    assert.equal(p.etaSeconds, 0);
    assert.equal(p.warning, 'not converging');
    assert.equal(finalProgress({ state: 'CANCELLED', progress: half, finishedAt: 5_000 }).throughputBytesPerSec, 0, 'never started: no average');
  });
});
