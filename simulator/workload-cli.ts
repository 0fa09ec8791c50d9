/**
 * `ferry-sim workload`: drives StartWorkload / StopWorkload / VerifyWorkload
 * of a running array from the command line, the way any client would.
 */
import * as grpc from '@grpc/grpc-js';
import { SIMULATOR_PROTO, clientConstructor, loadProtos } from '../daemon/rpc.ts';
import { SIMULATOR_SERVICE } from './service.ts';

/** The flags of `ferry-sim workload`, as commander gives them. */
export interface WorkloadFlags {
  target: string;
  share: string;
  rate: string;
  blockSize: string;
  pattern: string;
  concurrency: string;
  seconds?: string;
}

type Call = (req: unknown, cb: (err: grpc.ServiceError | null, res: Record<string, unknown>) => void) => void;

/** Runs a workload until Ctrl-C or --seconds, then stops and verifies it, printing JSON lines. */
export async function runWorkloadCommand(flags: WorkloadFlags): Promise<void> {
  const Client = clientConstructor(loadProtos([SIMULATOR_PROTO]), SIMULATOR_SERVICE);
  const client = new Client(flags.target, grpc.credentials.createInsecure()) as unknown as Record<string, Call>;
  const call = (method: string, req: unknown) =>
    new Promise<Record<string, unknown>>((resolve, reject) =>
      client[method]!.call(client, req, (err, res) => (err ? reject(new Error(`${method}: ${err.details || err.message}`)) : resolve(res))),
    );
  const print = (what: string, value: unknown) => process.stdout.write(`${JSON.stringify({ [what]: value })}\n`);

  const wl = await call('StartWorkload', {
    shareId: flags.share,
    rateBytesPerSec: Number(flags.rate),
    blockSize: Number(flags.blockSize),
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
  (client as unknown as grpc.Client).close();
  process.exitCode = Number(verify.lost) === 0 ? 0 : 1;
}
