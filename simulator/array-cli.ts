/**
 * The array's client commands that manage shares (`ferry-sim create-share`,
 * `ferry-sim shares`), and what every client command shares: the
 * connection to a running array through its public gRPC API (the way any
 * client would), the exit codes, and the error lines. The workload commands
 * are in workload-cli.ts.
 *
 * Output is for people by default (a block of fields, a table); `--json`
 * prints one JSON document instead: fields in lowerCamelCase as in
 * simulator.proto, enums by name, timestamps as RFC 3339 strings.
 */
import * as grpc from '@grpc/grpc-js';
import { fields, isoTime, table } from '../lib/text.ts';
import { formatBytes } from '../lib/units.ts';
import { clientConstructor } from '../lib/rpc.ts';
import { decodeStatusDetails, STATUS_DETAILS_METADATA } from '../lib/status.ts';
import { ARRAY_ERROR_DOMAIN } from './errors.ts';
import { SIMULATOR_SERVICE } from './service.ts';

/** Exit codes of ferry-sim. They are part of its contract: scripts test them. */
export const SIM_EXIT = {
  /** Done as asked; for a workload: stopped, verified, and no acknowledged write lost. */
  OK: 0,
  /** The array refused a call (stderr: "ferry-sim: Method: CODE: message"), or the array itself failed (serve). */
  REFUSED: 1,
  /** A bad flag, argument or config file, or (serve) an address it cannot listen on; nothing was sent. */
  USAGE: 2,
  /** serve: the data dir is in use by another process. */
  DATA_DIR_IN_USE: 3,
  /** The array could not be reached, or the connection to it was lost and did not come back. */
  UNREACHABLE: 4,
  /** A workload's verification found acknowledged writes that are not readable. */
  LOST_WRITES: 5,
  /** A workload command was interrupted (again) while it stopped or verified the workload; it may not be verified. */
  INTERRUPTED: 130,
} as const;

/** The exit codes, as the commands' help shows them. */
export const EXIT_HELP = `
Exit codes:
  0    done; for a workload: stopped, verified, and no acknowledged write lost
  1    the array refused a call (stderr: "ferry-sim: Method: CODE: message"); serve: the array failed
  2    a bad flag, argument or config file; nothing was sent
  3    serve: the data dir is in use by another process
  4    the array could not be reached, or the connection to it was lost and did not come back
  5    a workload's verification found acknowledged writes lost
  130  a workload command was interrupted (again) while it stopped or verified the workload
`;

/** Where a command writes: the process's streams. */
export interface Out {
  /** Writes to stdout. */
  out(text: string): void;
  /** Writes one line to stderr, prefixed "ferry-sim: ". */
  say(text: string): void;
}

/** The process's own streams. */
export const STDIO: Out = {
  out: (text) => void process.stdout.write(text),
  say: (text) => void process.stderr.write(`ferry-sim: ${text}\n`),
};

/** A call to the array that failed, with the method it was. */
export class ArrayCallError extends Error {
  /** The gRPC status. */
  readonly status: grpc.status;
  /** True when no array answered: the transport's UNAVAILABLE or DEADLINE_EXCEEDED, without the array's own ErrorInfo. */
  readonly unreachable: boolean;

  constructor(method: string, err: grpc.ServiceError) {
    super(`${method}: ${grpc.status[err.code] ?? err.code}: ${(err.details || err.message).replace(/\s*Resolution note:\s*$/, '')}`);
    this.name = 'ArrayCallError';
    this.status = err.code;
    const transport = err.code === grpc.status.UNAVAILABLE || err.code === grpc.status.DEADLINE_EXCEEDED;
    this.unreachable = transport && !fromArray(err);
  }

  /** True when trying again later may succeed: the array is away, or said UNAVAILABLE itself. */
  get transient(): boolean {
    return this.status === grpc.status.UNAVAILABLE || this.status === grpc.status.DEADLINE_EXCEEDED;
  }
}

/** True if the array itself answered with `err`: its status details carry an ErrorInfo of the array's domain. */
function fromArray(err: grpc.ServiceError): boolean {
  const bytes = err.metadata?.get(STATUS_DETAILS_METADATA)[0];
  return Buffer.isBuffer(bytes) && decodeStatusDetails(bytes)?.errorInfo?.domain === ARRAY_ERROR_DOMAIN;
}

type Callback = (err: grpc.ServiceError | null, res: Record<string, unknown>) => void;
type Method = (req: unknown, options: grpc.CallOptions, cb: Callback) => void;

/** Deadline of a call to the array, unless the call waits for work (StopWorkload, VerifyWorkload). */
export const CALL_DEADLINE_MS = 10_000;

/** A connection to the array at `target`. */
export class ArrayConnection {
  /** The array's address, as given. */
  readonly target: string;
  private readonly client: grpc.Client;

  constructor(target: string) {
    this.target = target;
    const Client = clientConstructor(SIMULATOR_SERVICE);
    // Short reconnect backoff: a workload command that lost the array should notice within a second or two that it is back.
    this.client = new Client(target, grpc.credentials.createInsecure(), {
      'grpc.initial_reconnect_backoff_ms': 200,
      'grpc.max_reconnect_backoff_ms': 1000,
    });
  }

  /** Calls `method`; rejects with an ArrayCallError. `deadlineMs` 0: no deadline. */
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  call<T = Record<string, any>>(method: string, request: object, deadlineMs = CALL_DEADLINE_MS): Promise<T> {
    const fn = (this.client as unknown as Record<string, Method>)[method];
    if (!fn) return Promise.reject(new TypeError(`SimulatorService has no method ${method}`));
    const options: grpc.CallOptions = deadlineMs > 0 ? { deadline: Date.now() + deadlineMs } : {};
    return new Promise((resolve, reject) => fn.call(this.client, request, options, (err, res) => (err ? reject(new ArrayCallError(method, err)) : resolve(res as T))));
  }

  /** Closes the channel. */
  close(): void {
    this.client.close();
  }
}

/**
 * Runs a command body against the array at `target` and turns its failure
 * into an exit code and one line on stderr (a refusal is not a stack trace).
 */
export async function withArray(target: string, io: Out, body: (array: ArrayConnection) => Promise<number>): Promise<number> {
  const array = new ArrayConnection(target);
  try {
    return await body(array);
  } catch (err) {
    if (!(err instanceof ArrayCallError)) throw err;
    if (err.unreachable) {
      io.say(`cannot reach the array at ${target}: ${err.message} (is ferry-sim, or ferryd with the embedded array, running there?)`);
      return SIM_EXIT.UNREACHABLE;
    }
    io.say(err.message);
    return SIM_EXIT.REFUSED;
  } finally {
    array.close();
  }
}

/** JSON for scripts, as `--json` prints it: a timestamp becomes an RFC 3339 string (or null). */
export function jsonTimes<T extends object>(value: T, ...names: Array<keyof T & string>): Record<string, unknown> {
  const out: Record<string, unknown> = { ...(value as Record<string, unknown>) };
  for (const name of names) out[name] = isoTime(value[name] as Parameters<typeof isoTime>[0]);
  return out;
}

/** A share as the array answers it (simulator.proto's Share). */
interface Share {
  shareId: string;
  backend: string;
  pool: string;
  sizeBytes: number;
  exportPath: string;
  metadata: Record<string, string>;
  readOnly: boolean;
  migrating: boolean;
  jobId: string;
  snapshots: number;
  shareType: string;
  createdAt: { seconds: number; nanos: number } | null;
}

/** What is going on with a share: "-", or "migrating (job j1)", with ", read-only" while writes are refused. */
function shareState(s: Share): string {
  if (!s.migrating) return '-';
  return `migrating (job ${s.jobId})${s.readOnly ? ', read-only' : ''}`;
}

/** One share, as create-share prints it. */
export function shareDetails(s: Share): string {
  const metadata = Object.entries(s.metadata ?? {});
  return fields([
    ['share', s.shareId],
    ['backend', s.backend],
    ['pool', s.pool],
    ['size', `${formatBytes(s.sizeBytes)} (${s.sizeBytes} bytes)`],
    ['export', s.exportPath],
    ['type', s.shareType],
    ['state', shareState(s)],
    ['snapshots', s.snapshots > 0 ? String(s.snapshots) : ''],
    ['metadata', metadata.map(([k, v]) => `${k}=${v}`).join(', ')],
    ['created', isoTime(s.createdAt) ?? ''],
  ]);
}

/** Shares as a table, as `ferry-sim shares` prints them. */
export function shareTable(shares: readonly Share[]): string {
  if (shares.length === 0) return 'no shares\n';
  const rows = shares.map((s) => [s.shareId, s.backend, s.pool, formatBytes(s.sizeBytes), s.exportPath, shareState(s), isoTime(s.createdAt) ?? '']);
  return table([['SHARE', 'BACKEND', 'POOL', 'SIZE', 'EXPORT', 'STATE', 'CREATED'], ...rows]);
}

/** The flags of `ferry-sim create-share`. */
export interface CreateShareFlags {
  target: string;
  backend: string;
  pool: string;
  size: number;
  id?: string;
  json?: boolean;
}

/** Creates a share (sparse: it reads as zeros until written), or finds the same one again when --id repeats. */
export function runCreateShareCommand(flags: CreateShareFlags, io: Out = STDIO): Promise<number> {
  return withArray(flags.target, io, async (array) => {
    const share = await array.call<Share>('CreateShare', { shareId: flags.id ?? '', backend: flags.backend, pool: flags.pool, sizeBytes: flags.size });
    io.out(flags.json ? `${JSON.stringify(jsonTimes(share, 'createdAt'))}\n` : shareDetails(share));
    return SIM_EXIT.OK;
  });
}

/** The flags of `ferry-sim shares`. */
export interface ListSharesFlags {
  target: string;
  backend?: string;
  json?: boolean;
}

/** Lists the array's shares, where each lives now. */
export function runListSharesCommand(flags: ListSharesFlags, io: Out = STDIO): Promise<number> {
  return withArray(flags.target, io, async (array) => {
    const { shares } = await array.call<{ shares: Share[] }>('ListShares', { backend: flags.backend ?? '' });
    io.out(flags.json ? `${JSON.stringify({ shares: shares.map((s) => jsonTimes(s, 'createdAt')) })}\n` : shareTable(shares));
    return SIM_EXIT.OK;
  });
}
