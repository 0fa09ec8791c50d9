/**
 * The array's client commands (`ferry-sim workload`, `ferry-sim create-share`,
 * `ferry-sim shares`): they drive a running array through its public gRPC
 * API, the way any client would, and print one JSON object per line.
 */
import * as grpc from '@grpc/grpc-js';
import { clientConstructor } from '../daemon/rpc.ts';
import { SIMULATOR_SERVICE } from './service.ts';

/** The flags of `ferry-sim workload`, as commander gives them. */
export interface WorkloadFlags {
  target: string;
  share: string;
  rate: number;
  blockSize: number;
  pattern: string;
  concurrency: string;
  seconds?: string;
}

/** The flags of `ferry-sim create-share`. */
export interface CreateShareFlags {
  target: string;
  backend: string;
  pool: string;
  size: number;
  id?: string;
}

type Call = (req: unknown, cb: (err: grpc.ServiceError | null, res: Record<string, unknown>) => void) => void;
type ArrayCall = (method: string, req: unknown) => Promise<Record<string, unknown>>;

/** A promise-returning caller of SimulatorService at `target`, and its close. */
function connect(target: string): { call: ArrayCall; close: () => void } {
  const Client = clientConstructor(SIMULATOR_SERVICE);
  const client = new Client(target, grpc.credentials.createInsecure()) as unknown as Record<string, Call> & grpc.Client;
  const call: ArrayCall = (method, req) =>
    new Promise((resolve, reject) => client[method]!.call(client, req, (err, res) => (err ? reject(new Error(`${method}: ${err.details || err.message}`)) : resolve(res))));
  return { call, close: () => client.close() };
}

const print = (what: string, value: unknown) => process.stdout.write(`${JSON.stringify({ [what]: value })}\n`);

/** Runs a workload until Ctrl-C or --seconds, then stops and verifies it. Exit code 1 if any acknowledged write was lost. */
export async function runWorkloadCommand(flags: WorkloadFlags): Promise<void> {
  const { call, close } = connect(flags.target);
  try {
    const wl = await call('StartWorkload', {
      shareId: flags.share,
      rateBytesPerSec: flags.rate,
      blockSize: flags.blockSize,
      pattern: `WRITE_PATTERN_${flags.pattern.toUpperCase()}`,
      concurrency: Number(flags.concurrency),
    });
    print('started', wl);
    await new Promise<void>((resolve) => {
      process.once('SIGINT', resolve);
      process.once('SIGTERM', resolve);
      if (flags.seconds) setTimeout(resolve, Number(flags.seconds) * 1000);
    });
    const workloadId = wl.workloadId as string;
    print('stopped', await call('StopWorkload', { workloadId }));
    const verify = await call('VerifyWorkload', { workloadId });
    print('verified', verify);
    process.exitCode = Number(verify.lost) === 0 ? 0 : 1;
  } finally {
    close();
  }
}

/** Creates a share (sparse: it reads as zeros until written). */
export async function runCreateShareCommand(flags: CreateShareFlags): Promise<void> {
  const { call, close } = connect(flags.target);
  try {
    print('share', await call('CreateShare', { shareId: flags.id ?? '', backend: flags.backend, pool: flags.pool, sizeBytes: flags.size }));
  } finally {
    close();
  }
}

/** Lists the array's shares, one JSON line each. */
export async function runListSharesCommand(flags: { target: string }): Promise<void> {
  const { call, close } = connect(flags.target);
  try {
    for (const share of (await call('ListShares', {})).shares as unknown[]) print('share', share);
  } finally {
    close();
  }
}
