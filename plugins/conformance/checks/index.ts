/**
 * Every check of the suite, in the order it runs: cheap ones first, then
 * whole migrations (the change feed's gated on the driver offering it), then the host data path's (gated on the drivers
 * offering it), then the ones that kill the engine, then the driver process.
 */
import { preserveMetadata, preserveSnapshots, nondisruptiveCutover, writableLosesNothing } from './capabilities.ts';
import { cancelInPhase1Done, cancelInProgress, cancelInStarting } from './cancel.ts';
import { changesPhase1Done } from './changes.ts';
import type { Check } from './check.ts';
import { crashInCompleting, crashInProgress, crashInStarting } from './crash.ts';
import { DATA_PATH_CHECKS, DATA_PATH_CRASH_CHECKS } from './data-path.ts';
import { driverKilledCompleting, driverKilledInProgress } from './driver-crash.ts';
import { poolTooSmall, unknownPool, unknownShare } from './errors.ts';
import { cancelRepeatedDriver, completeRepeatedApi, completeRepeatedDriver, startRepeatedApi, startRepeatedDriver } from './idempotency.ts';
import { backendsServing, completeBeforePhase1, continueDeadline, happyPath, progressHonest } from './lifecycle.ts';

export type { Check } from './check.ts';

/** The checks after `manifest` (which index.ts runs itself, since it needs no harness). */
export const CHECKS: readonly Check[] = [
  backendsServing,
  unknownShare,
  unknownPool,
  poolTooSmall,
  happyPath,
  progressHonest,
  completeBeforePhase1,
  continueDeadline,
  changesPhase1Done,
  startRepeatedApi,
  startRepeatedDriver,
  completeRepeatedApi,
  completeRepeatedDriver,
  cancelRepeatedDriver,
  cancelInStarting,
  cancelInProgress,
  cancelInPhase1Done,
  writableLosesNothing,
  nondisruptiveCutover,
  preserveMetadata,
  preserveSnapshots,
  ...DATA_PATH_CHECKS,
  crashInStarting,
  crashInProgress,
  crashInCompleting,
  ...DATA_PATH_CRASH_CHECKS,
  driverKilledInProgress,
  driverKilledCompleting,
];
