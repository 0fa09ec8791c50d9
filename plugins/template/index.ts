/**
 * A Ferry driver for YOUR ARRAY, from the template. Every call throws
 * UNIMPLEMENTED ("template: implement start") until you fill it in.
 *
 * Read docs/writing-a-driver.md first; each call below names the section
 * of the guide that specifies it. plugins/simulator/index.ts is a complete
 * driver of the same shape, for an array with a job API.
 *
 *   npx ferry-conformance init ./my-driver       this folder, with your name
 *   ...fill in the calls below and conformance-adapter.ts...
 *   npx ferry-conformance --plugin ./my-driver   run the suite
 *
 * The rules that matter most (guide, "Checkpoints and repeats"):
 * - every call returns fast: submit work to the array, never wait for it;
 * - any call may be a repeat of one whose result was lost, on a new driver
 *   instance: use the migration id as the array job's idempotency key;
 * - what you need on the next call goes in the checkpoint, not in memory;
 * - throw FerryError with the documented code for expected failures.
 */
import { FerryError } from '@ferry/driver-api';
import type {
  CancelResult,
  Capabilities,
  Checkpoint,
  CompatibilityResult,
  CompleteResult,
  ContinueResult,
  Driver,
  DriverFactory,
  DriverFactoryContext,
  DriverProgress,
  MigrationCall,
  PoolInfo,
  StartResult,
} from '@ferry/driver-api';

/** The backend's `options` from the daemon config, checked. Add what your array needs (credentials, TLS, timeouts). */
interface Options {
  /** Where the array's API is. */
  endpoint: string;
}

function parseOptions(ctx: DriverFactoryContext): Options {
  const { endpoint } = ctx.options;
  // A programmer's or operator's mistake in the config is a plain TypeError: the daemon reports it as DRIVER_CREATE_FAILED.
  if (typeof endpoint !== 'string' || endpoint === '') throw new TypeError(`backend ${ctx.backend}: options.endpoint must be the array's address`);
  return { endpoint };
}

/** What this driver asks the daemon to keep between calls. Keep it small and JSON. */
interface JobCheckpoint {
  /** The array's job for this migration. */
  jobId: string;
}

/** The job id from the checkpoint; before `start` ever returned, the migration id (which is what `start` uses). */
function jobIdOf(call: Pick<MigrationCall, 'checkpoint' | 'migration'>): string {
  const cp = call.checkpoint as Partial<JobCheckpoint> | null;
  return typeof cp?.jobId === 'string' ? cp.jobId : call.migration.id;
}

/** The checkpoint for a job. */
function checkpoint(jobId: string): Checkpoint {
  return { jobId } satisfies JobCheckpoint;
}

function unimplemented(call: string): FerryError {
  return new FerryError('UNIMPLEMENTED', `template: implement ${call}`);
}

/** The driver. One instance per configured backend; the daemon may make a new one at any restart. */
class TemplateDriver implements Driver {
  constructor(
    private readonly ctx: DriverFactoryContext,
    private readonly options: Options,
  ) {}

  /** Guide: "capabilities". Claim only what you have implemented and the suite passes: it checks every claim. */
  capabilities(): Capabilities {
    return { writable: false, nondisruptive: false, preserveMetadata: false, preserveSnapshots: false };
  }

  /** Guide: "describe". The pools of backend `this.ctx.backend`; throw UNAVAILABLE when the array cannot be reached. */
  async describe(_options: { signal: AbortSignal }): Promise<{ pools: PoolInfo[] }> {
    throw unimplemented('describe');
  }

  /**
   * Guide: "checkCompatibility". Read-only. NOT_FOUND for an unknown share or
   * destination pool; reasons[] for anything else that makes the migration
   * impossible; the share's size and the pool's free bytes.
   */
  async checkCompatibility(_call: Omit<MigrationCall, 'checkpoint'>): Promise<CompatibilityResult> {
    throw unimplemented('checkCompatibility');
  }

  /**
   * Guide: "start". Submit the copy job with job id = migration.id and
   * return at once with checkpoint(jobId). A second call for the same
   * migration must find the same job, not make another.
   */
  async start(_call: MigrationCall): Promise<StartResult> {
    throw unimplemented('start');
  }

  /**
   * Guide: "continue". Read the job (jobIdOf(call)) and report its progress;
   * phase1Done once the remaining delta fits migration.maxDowntimeMs.
   * Copied bytes never go back. Return fast: this call's deadline is 5 s.
   */
  async continue(_call: MigrationCall): Promise<ContinueResult> {
    throw unimplemented('continue');
  }

  /**
   * Guide: "complete". Start the cutover, or join the one under way, or
   * report the finished one: idempotent and resumable from the checkpoint,
   * on a new driver instance. FAILED_PRECONDITION before phase 1 is done.
   */
  async complete(_call: MigrationCall): Promise<CompleteResult> {
    throw unimplemented('complete');
  }

  /**
   * Guide: "cancel". Stop the job and delete everything on the destination;
   * done only once it is gone. Idempotent, also for a job the array never
   * saw and with a null checkpoint.
   */
  async cancel(_call: MigrationCall): Promise<CancelResult> {
    throw unimplemented('cancel');
  }

  /** Guide: "progress". Like continue's progress, read-only and cheap; zeros before the job exists. */
  async progress(_call: MigrationCall): Promise<DriverProgress> {
    throw unimplemented('progress');
  }

  /** Release connections to the array. */
  async close(): Promise<void> {}
}

/** Creates the driver for one backend. */
export const createDriver: DriverFactory = (ctx) => new TemplateDriver(ctx, parseOptions(ctx));
