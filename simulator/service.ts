/**
 * SimulatorService over gRPC: checks every request field (naming it in the
 * error, as simulator.proto promises), applies the service-level faults
 * (latency, Nth-call failure), calls the array and shapes the answer. The
 * daemon calls addSimulatorService to serve an embedded array on its own
 * address; ferry-sim (main.ts) serves a standalone one.
 */
import type * as grpc from '@grpc/grpc-js';
import type { Log } from '../lib/log.ts';
import { serverStream, serviceDefinition, toServiceError, unary, type ErrorStatus } from '../lib/rpc.ts';
import type { SimArray, ShareView } from './array.ts';
import { ARRAY_ERROR_DOMAIN, ArrayError } from './errors.ts';
import { INJECTABLE_CODES, isInjectableCode } from './faults.ts';
import type { CrashPoint, FaultSet } from './faults.ts';
import type { JobView } from './jobs.ts';
import { DEFAULT_MAX_DOWNTIME_MS, MAX_IO_BYTES } from './model.ts';
import type { JobSpec } from './model.ts';
import type { WorkloadRecord, WritePattern } from './workload.ts';
import { bool, enumValue, maxLength, num, required, str, ts } from './fields.ts';
import type { Req } from './fields.ts';
import { addHostPathHandlers, writable } from './service-hostpath.ts';

/** The service's full name. */
export const SIMULATOR_SERVICE = 'ferry.simulator.v1.SimulatorService';

let definition: grpc.ServiceDefinition | undefined;

/** SimulatorService's definition, loaded once. */
export function simulatorServiceDefinition(): grpc.ServiceDefinition {
  definition ??= serviceDefinition(SIMULATOR_SERVICE);
  return definition;
}

/** The method names of SimulatorService (fault targets). */
export function simulatorMethods(): string[] {
  return Object.keys(simulatorServiceDefinition());
}

// ----------------------------------------------------------------- shapes

function shareOut(s: ShareView) {
  return {
    shareId: s.shareId,
    backend: s.backend,
    pool: s.pool,
    sizeBytes: s.sizeBytes,
    exportPath: s.exportPath,
    metadata: s.metadata,
    readOnly: s.readOnly,
    migrating: s.migrating,
    jobId: s.jobId,
    snapshots: s.snapshots,
    shareType: s.shareType,
    createdAt: ts(s.createdAtMs),
  };
}

function jobOut(v: JobView) {
  const r = v.record;
  return {
    jobId: r.jobId,
    shareId: r.spec.shareId,
    source: { backend: r.source.backend, pool: r.source.pool },
    dest: { backend: r.dest.backend, pool: r.dest.pool },
    state: `JOB_STATE_${r.state}`,
    phase1Done: r.phase1Done,
    converged: r.converged,
    progress: v.progress,
    frozen: v.frozen,
    createdAt: ts(r.createdAtMs),
    phase1DoneAt: ts(r.phase1DoneAtMs),
    finishedAt: ts(r.finishedAtMs),
    cutover: r.state === 'DONE' ? r.cutover : null,
    cutoverAttempts: r.cutoverAttempts,
    lastAbortReason: r.lastAbortReason,
    lastAbortAttempt: r.lastAbortAttempt,
    error: r.error,
    writable: r.spec.writable,
    nondisruptive: r.spec.nondisruptive,
    preserveMetadata: r.spec.preserveMetadata,
    preserveSnapshots: r.spec.preserveSnapshots,
    newShareType: r.spec.newShareType,
    maxBandwidthBytesPerSec: r.spec.maxBandwidthBytesPerSec,
    maxDowntimeMs: r.spec.maxDowntimeMs,
    cutoverAction: r.tombstone ? 'CUTOVER_ACTION_UNSPECIFIED' : `CUTOVER_ACTION_${r.spec.cutoverAction}`,
  };
}

function workloadOut(w: WorkloadRecord) {
  return {
    workloadId: w.workloadId,
    shareId: w.spec.shareId,
    state: `WORKLOAD_STATE_${w.state}`,
    rateBytesPerSec: w.spec.rateBytesPerSec,
    blockSize: w.spec.blockSize,
    pattern: `WRITE_PATTERN_${w.spec.pattern}`,
    seed: w.spec.seed,
    concurrency: w.spec.concurrency,
    hotspotPercent: w.spec.hotspotPercent,
    stopReason: w.stopReason,
    ...w.stats,
    startedAt: ts(w.startedAtMs),
    stoppedAt: ts(w.stoppedAtMs),
  };
}

function faultsOut(f: FaultSet) {
  return {
    latencyMs: f.latencyMs,
    failNth: f.failNth,
    stallCopy: f.stallCopy,
    crashAt: `CRASH_POINT_${f.crashAt}`,
    copyBandwidthBytesPerSec: f.copyBandwidthBytesPerSec,
    cutoverDelayMs: f.cutoverDelayMs,
  };
}

// --------------------------------------------------------------- requests

function jobSpec(req: Req): JobSpec {
  const downtime = num(req, 'max_downtime_ms');
  return {
    shareId: required(req, 'share_id'),
    destBackend: required(req, 'dest_backend'),
    destPool: required(req, 'dest_pool'),
    writable: bool(req, 'writable'),
    nondisruptive: bool(req, 'nondisruptive'),
    preserveMetadata: bool(req, 'preserve_metadata'),
    preserveSnapshots: bool(req, 'preserve_snapshots'),
    newShareType: str(req, 'new_share_type'),
    maxBandwidthBytesPerSec: num(req, 'max_bandwidth_bytes_per_sec'),
    maxDowntimeMs: downtime > 0 ? downtime : DEFAULT_MAX_DOWNTIME_MS,
    cutoverAction: enumValue(req, 'cutover_action', 'CUTOVER_ACTION_', ['ABORT', 'FORCE'] as const, 'ABORT'),
  };
}

function faultSet(req: Req, methods: ReadonlySet<string>): FaultSet {
  const latencyMs: Record<string, number> = {};
  for (const [method, ms] of Object.entries((req.latencyMs ?? {}) as Record<string, number>)) {
    maxLength(method, 'latency_ms key');
    if (!methods.has(method)) throw new ArrayError('BAD_REQUEST', `latency_ms: ${method} is not a SimulatorService method`);
    latencyMs[method] = Number(ms);
  }
  const failNth = ((req.failNth ?? []) as Req[]).map((f, i) => {
    const method = str(f, 'method');
    if (!methods.has(method)) throw new ArrayError('BAD_REQUEST', `fail_nth[${i}].method: ${JSON.stringify(method)} is not a SimulatorService method`);
    const n = num(f, 'n');
    if (n < 1) throw new ArrayError('BAD_REQUEST', `fail_nth[${i}].n must be 1 or more`);
    const code = str(f, 'code');
    if (!isInjectableCode(code)) throw new ArrayError('BAD_REQUEST', `fail_nth[${i}].code must be one of ${INJECTABLE_CODES.join(', ')}; got ${JSON.stringify(code)}`);
    return { method, n, code };
  });
  const crashAt = enumValue<CrashPoint>(req, 'crash_at', 'CRASH_POINT_', ['NONE', 'DURING_COPY', 'CUTOVER_BEFORE_SWITCH', 'CUTOVER_AFTER_SWITCH', 'START_BEFORE_RECORD'], 'NONE');
  return {
    latencyMs,
    failNth,
    stallCopy: bool(req, 'stall_copy'),
    crashAt,
    copyBandwidthBytesPerSec: num(req, 'copy_bandwidth_bytes_per_sec'),
    cutoverDelayMs: num(req, 'cutover_delay_ms'),
  };
}

// ---------------------------------------------------------------- service

/**
 * WatchJobs: the marker that the watch is registered, then each changed
 * job as the stream takes it. While the stream's buffer is full the watch
 * coalesces (JobWatch), so a slow reader holds at most one entry per job.
 */
async function watchJobs(array: SimArray, backend: string, call: grpc.ServerWritableStream<Req, unknown>): Promise<void> {
  const watch = array.jobs.watch(backend);
  const stop = () => array.jobs.unwatch(watch);
  call.on('cancelled', stop);
  try {
    let event: object | null = { jobId: '', state: 'JOB_STATE_UNSPECIFIED', phase1Done: false };
    while (event && !call.cancelled) {
      if (!call.write(event)) await writable(call);
      const rec = await watch.next();
      event = rec && { jobId: rec.jobId, state: `JOB_STATE_${rec.state}`, phase1Done: rec.phase1Done };
    }
  } finally {
    call.off('cancelled', stop);
    stop();
  }
}

/** The array's errors on the wire: its gRPC status, and its own code as the ErrorInfo reason in ARRAY_ERROR_DOMAIN. */
export function arrayStatus(err: unknown): ErrorStatus | undefined {
  if (!(err instanceof ArrayError)) return undefined;
  return { code: err.status, message: err.message, reason: err.code, domain: ARRAY_ERROR_DOMAIN, logged: err.code === 'ARRAY_FAULT' };
}

/**
 * A client-streaming handler: `fn` reads the messages as an async iterable
 * (so grpc-js stops reading from the network while it works) and answers
 * exactly once.
 */
function clientStreamHandler(method: string, log: Log, fn: (messages: AsyncIterable<Req>) => Promise<unknown>): grpc.handleClientStreamingCall<Req, unknown> {
  return (call, callback) => {
    fn(call).then(
      (response) => callback(null, response),
      (err: unknown) => callback(toServiceError(err, log, method, arrayStatus)),
    );
  };
}

/** Registers SimulatorService for `array` on `server`. */
export function addSimulatorService(server: grpc.Server, array: SimArray, log: Log): void {
  const def = simulatorServiceDefinition();
  const methods = new Set(Object.keys(def));
  const handlers: grpc.UntypedServiceImplementation = {};
  const rpc = (method: string, fn: (req: Req) => Promise<unknown> | unknown) => {
    if (!methods.has(method)) throw new Error(`SimulatorService has no method ${method}`);
    handlers[method] = unary<Req, unknown>(method, log, arrayStatus, async (req) => {
      await array.faults.beforeCall(method);
      return fn(req);
    });
  };

  rpc('ListBackends', () => ({ backends: array.listBackends() }));

  rpc('CreateShare', async (req) => {
    const shareId = str(req, 'share_id');
    if (shareId && !/^[A-Za-z0-9._-]{1,128}$/.test(shareId)) {
      throw new ArrayError('BAD_REQUEST', 'share_id must be at most 128 characters of [A-Za-z0-9._-]');
    }
    const sizeBytes = num(req, 'size_bytes');
    if (!(sizeBytes > 0) || !Number.isSafeInteger(sizeBytes)) throw new ArrayError('BAD_REQUEST', 'size_bytes is required and must be greater than 0');
    const share = await array.createShare({
      shareId,
      backend: required(req, 'backend'),
      pool: required(req, 'pool'),
      sizeBytes,
      metadata: (req.metadata ?? {}) as Record<string, string>,
      snapshots: num(req, 'snapshots'),
      shareType: str(req, 'share_type'),
    });
    return shareOut(share);
  });
  rpc('GetShare', (req) => shareOut(array.getShare(required(req, 'share_id'))));
  rpc('ListShares', (req) => ({ shares: array.listShares(str(req, 'backend')).map(shareOut) }));
  rpc('DeleteShare', async (req) => {
    await array.deleteShare(required(req, 'share_id'));
    return {};
  });

  rpc('WriteShare', async (req) => {
    const shareId = required(req, 'share_id');
    const data = (req.data ?? Buffer.alloc(0)) as Buffer;
    return { bytesWritten: await array.data.write(shareId, num(req, 'offset'), data) };
  });
  rpc('ReadShare', async (req) => {
    const shareId = required(req, 'share_id');
    return { data: await array.data.read(shareId, num(req, 'offset'), num(req, 'length')) };
  });
  rpc('ChecksumShare', async (req) => {
    const share = array.getShare(required(req, 'share_id'));
    return { sha256: await array.data.checksum(share.shareId), sizeBytes: share.sizeBytes };
  });

  rpc('StartJob', async (req) => {
    const jobId = maxLength(required(req, 'job_id'), 'job_id');
    return jobOut(await array.jobs.start(jobId, jobSpec(req)));
  });
  rpc('GetJob', (req) => jobOut(array.jobs.get(required(req, 'job_id'))));
  rpc('ListJobs', () => ({ jobs: array.jobs.list().map(jobOut) }));
  rpc('CutoverJob', async (req) => jobOut(await array.jobs.cutover(required(req, 'job_id'), num(req, 'wait_ms'))));
  rpc('CancelJob', async (req) => jobOut(await array.jobs.cancel(maxLength(required(req, 'job_id'), 'job_id'))));

  rpc('StartWorkload', async (req) => {
    const shareId = required(req, 'share_id');
    const blockSize = num(req, 'block_size') || 65536;
    if (blockSize > MAX_IO_BYTES) throw new ArrayError('BAD_REQUEST', `block_size is ${blockSize}; at most ${MAX_IO_BYTES} (1 MiB)`);
    const concurrency = num(req, 'concurrency') || 1;
    if (concurrency > 64) throw new ArrayError('BAD_REQUEST', `concurrency is ${concurrency}; at most 64`);
    const hotspotPercent = num(req, 'hotspot_percent') || 10;
    if (hotspotPercent > 100) throw new ArrayError('BAD_REQUEST', `hotspot_percent is ${hotspotPercent}; at most 100`);
    const pattern = enumValue<WritePattern>(req, 'pattern', 'WRITE_PATTERN_', ['SEQUENTIAL', 'RANDOM', 'HOTSPOT'], 'RANDOM');
    const rec = await array.workloads.start({
      shareId,
      rateBytesPerSec: num(req, 'rate_bytes_per_sec'),
      blockSize,
      pattern,
      seed: num(req, 'seed'),
      concurrency,
      hotspotPercent,
    });
    return workloadOut(rec);
  });
  rpc('GetWorkload', (req) => workloadOut(array.workloads.get(required(req, 'workload_id'))));
  rpc('ListWorkloads', (req) => ({ workloads: array.workloads.list(str(req, 'share_id')).map(workloadOut) }));
  rpc('StopWorkload', async (req) => workloadOut(await array.workloads.stop(required(req, 'workload_id'))));
  rpc('VerifyWorkload', async (req) => array.workloads.verify(required(req, 'workload_id')));

  rpc('SetFaults', async (req) => faultsOut(await array.faults.set(faultSet(req, methods))));
  rpc('GetFaults', () => faultsOut(array.faults.value));
  rpc('ClearFaults', async () => faultsOut(await array.faults.clear()));

  const known = (method: string) => {
    if (!methods.has(method)) throw new Error(`SimulatorService has no method ${method}`);
  };
  const streamRpc = (method: string, fn: (req: Req, call: grpc.ServerWritableStream<Req, unknown>) => Promise<void>) => {
    known(method);
    handlers[method] = serverStream<Req, unknown>(method, log, arrayStatus, async (req, call) => {
      await array.faults.beforeCall(method);
      await fn(req, call);
    });
  };

  streamRpc('WatchJobs', async (req, call) => {
    const backend = str(req, 'backend');
    if (backend && !array.config.backends.some((b) => b.name === backend)) {
      throw new ArrayError('NO_SUCH_OBJECT', `backend ${backend} not found on this array (it has ${array.config.backends.map((b) => b.name).join(', ')})`);
    }
    await watchJobs(array, backend, call);
  });

  addHostPathHandlers(
    {
      unary: rpc,
      serverStream: streamRpc,
      clientStream: (method, fn) => {
        known(method);
        handlers[method] = clientStreamHandler(method, log, async (call) => {
          await array.faults.beforeCall(method);
          return fn(call);
        });
      },
      shareOut,
    },
    array,
  );

  const missing = [...methods].filter((m) => !handlers[m]);
  if (missing.length > 0) throw new Error(`SimulatorService handlers missing: ${missing.join(', ')}`);
  server.addService(def, handlers);
}
