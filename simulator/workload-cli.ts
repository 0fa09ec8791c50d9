/**
 * `ferry-sim workload`: runs a workload on a share of a running array until
 * Ctrl-C (SIGINT or SIGTERM) or `--seconds`, then stops and verifies it;
 * `workload stop ID` stops and verifies one started elsewhere; `workload
 * list` shows them. Everything goes through the array's public API, so a
 * workload started by one process can be stopped by another.
 *
 * Human lines by default; with `--json` one JSON object per line:
 * {"started": Workload}, {"stopped": Workload}, {"verified": VerifyWorkloadResponse}
 * (and `list`: one {"workloads": [...]} document).
 */
import { setTimeout as delay } from 'node:timers/promises';
import { formatBytes, formatMs, formatRate } from '../lib/units.ts';
import { isoTime, shortEnum, table } from '../lib/text.ts';
import { ArrayCallError, SIM_EXIT, STDIO, jsonTimes, withArray } from './array-cli.ts';
import type { ArrayConnection, Out } from './array-cli.ts';
import type { WorkloadStats } from './workload.ts';

/** How often the running command looks at its workload: it notices one stopped elsewhere, and a lost array, this soon. */
const POLL_MS = 1000;

/** A workload as the array answers it (simulator.proto's Workload). */
interface Workload extends WorkloadStats {
  workloadId: string;
  shareId: string;
  state: 'WORKLOAD_STATE_RUNNING' | 'WORKLOAD_STATE_STOPPED';
  rateBytesPerSec: number;
  blockSize: number;
  pattern: string;
  concurrency: number;
  stopReason: string;
  startedAt: { seconds: number; nanos: number } | null;
  stoppedAt: { seconds: number; nanos: number } | null;
}

/** VerifyWorkload's answer. */
interface Verification {
  checked: number;
  lost: number;
  lostOffsets: number[];
}

/** The flags of `ferry-sim workload [run]`, as commander gives them (values already parsed). */
export interface WorkloadFlags {
  target: string;
  share: string;
  rate: number;
  blockSize: number;
  pattern: 'sequential' | 'random' | 'hotspot';
  concurrency: number;
  seconds?: number;
  reconnectMs: number;
  json?: boolean;
}

const pattern = (w: Workload) => shortEnum(w.pattern, 'WRITE_PATTERN_').toLowerCase();
const rate = (w: Workload) => (w.rateBytesPerSec > 0 ? formatRate(w.rateBytesPerSec) : 'unlimited');
const jsonLine = (doc: unknown) => `${JSON.stringify(doc)}\n`;
const workloadJson = (w: Workload) => jsonTimes(w, 'startedAt', 'stoppedAt');

/** The line that says the workload runs, and how it will end. */
function startedLine(w: Workload, seconds: number | undefined): string {
  const what = `${rate(w)}, ${pattern(w)}, ${formatBytes(w.blockSize)} blocks, ${w.concurrency} in flight`;
  const until = seconds === undefined ? 'Ctrl-C stops and verifies it' : `it stops after ${seconds} s and is verified (Ctrl-C: sooner)`;
  return `workload ${w.workloadId} started on share ${w.shareId}: ${what}; ${until}\n`;
}

function stoppedLine(w: Workload): string {
  const failed = w.writesFailed > 0 ? `, ${w.writesFailed} failed (last: ${w.lastError})` : ', 0 failed';
  const latency = w.writesAcked > 0 ? `; latency p50 ${formatMs(w.latencyP50Ms)}, p99 ${formatMs(w.latencyP99Ms)}, max ${formatMs(w.latencyMaxMs)}` : '';
  const reason = w.stopReason ? ` (${w.stopReason})` : '';
  return `workload ${w.workloadId} stopped${reason}: ${w.writesAcked} writes acknowledged (${formatBytes(w.bytesAcked)})${failed}${latency}\n`;
}

function verifiedLine(v: Verification): string {
  const at = v.lost > 0 ? ` (at byte offsets ${v.lostOffsets.join(', ')}${v.lost > v.lostOffsets.length ? ', ...' : ''})` : '';
  return `verified: ${v.checked} blocks checked against their last acknowledged write, ${v.lost} lost${at}\n`;
}

/** The hint for a workload this command could not stop or verify. */
function pickUp(target: string, workloadId: string): string {
  return `workload ${workloadId} may still be running there; once the array answers, "ferry-sim workload stop ${workloadId} --target ${target}" stops and verifies it`;
}

/** Stops a workload (idempotent), verifies it, prints both; the exit code says whether anything was lost. */
async function stopAndVerify(array: ArrayConnection, workloadId: string, json: boolean, io: Out): Promise<number> {
  // No deadline: stopping waits for the writes in flight (a cutover may hold them), and a verify reads every block.
  const stopped = await array.call<Workload>('StopWorkload', { workloadId }, 0);
  io.out(json ? jsonLine({ stopped: workloadJson(stopped) }) : stoppedLine(stopped));
  const verified = await array.call<Verification>('VerifyWorkload', { workloadId }, 0);
  io.out(json ? jsonLine({ verified }) : verifiedLine(verified));
  if (verified.lost === 0) return SIM_EXIT.OK;
  io.say(`workload ${workloadId}: ${verified.lost} blocks do not hold their last acknowledged write`);
  return SIM_EXIT.LOST_WRITES;
}

/** How the wait for the end of a run ended. */
type End = { kind: 'asked' } | { kind: 'elsewhere'; workload: Workload } | { kind: 'lost'; after: number };

/**
 * Waits until the user asks to stop (or --seconds pass), the workload is
 * found stopped on the array, or the array stays away past `reconnectMs`.
 */
async function waitForEnd(array: ArrayConnection, workloadId: string, flags: WorkloadFlags, stop: AbortSignal, io: Out): Promise<End> {
  const until = flags.seconds === undefined ? Infinity : Date.now() + flags.seconds * 1000;
  let lostSince = 0;
  for (;;) {
    // This pending timer is what keeps the process alive while it waits: neither signal listeners nor an
    // idle gRPC channel do, and without it Node ended the command at once (exit 13) with the workload left writing.
    const ms = Math.max(0, Math.min(POLL_MS, until - Date.now()));
    const asked = await delay(ms, false, { signal: stop }).catch(() => true);
    if (asked || Date.now() >= until) return { kind: 'asked' };
    try {
      const w = await array.call<Workload>('GetWorkload', { workloadId });
      if (lostSince) io.say(`the array at ${array.target} answers again; workload ${workloadId} is ${shortEnum(w.state, 'WORKLOAD_STATE_').toLowerCase()}`);
      lostSince = 0;
      if (w.state === 'WORKLOAD_STATE_STOPPED') return { kind: 'elsewhere', workload: w };
    } catch (err) {
      if (!(err instanceof ArrayCallError && err.transient)) throw err;
      if (!lostSince) {
        lostSince = Date.now();
        const retry = flags.reconnectMs > 0 ? `; trying again for up to ${formatMs(flags.reconnectMs)} (Ctrl-C stops trying)` : '';
        io.say(`lost the array at ${array.target} (${err.message})${retry}`);
      }
      if (Date.now() - lostSince >= flags.reconnectMs) return { kind: 'lost', after: Date.now() - lostSince };
    }
  }
}

/**
 * Runs a workload until SIGINT or SIGTERM (or --seconds), then stops and
 * verifies it. A second signal while stopping or verifying exits at once
 * (130), saying how to finish the job.
 */
export function runWorkloadCommand(flags: WorkloadFlags, io: Out = STDIO): Promise<number> {
  let workloadId = '';
  const stop = new AbortController();
  const onSignal = () => {
    if (!stop.signal.aborted) {
      io.say(`stopping workload ${workloadId || '(once started)'}, then verifying it; Ctrl-C again exits without waiting`);
      return stop.abort();
    }
    io.say(`interrupted before the workload was verified; ${workloadId ? pickUp(flags.target, workloadId) : `it may have started: "ferry-sim workload list --target ${flags.target}" shows it`}`);
    process.exit(SIM_EXIT.INTERRUPTED);
  };
  // Listening from the start: a Ctrl-C while StartWorkload is in flight must still stop what it starts.
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  const json = flags.json === true;
  return withArray(flags.target, io, async (array) => {
    const started = await array.call<Workload>('StartWorkload', {
      shareId: flags.share,
      rateBytesPerSec: flags.rate,
      blockSize: flags.blockSize,
      pattern: `WRITE_PATTERN_${flags.pattern.toUpperCase()}`,
      concurrency: flags.concurrency,
    });
    workloadId = started.workloadId;
    io.out(json ? jsonLine({ started: workloadJson(started) }) : startedLine(started, flags.seconds));
    const end = await waitForEnd(array, workloadId, flags, stop.signal, io);
    // From here on any signal is the second one: the user wants out, whatever ended the wait.
    stop.abort();
    if (end.kind === 'lost') {
      io.say(`gave up on the array at ${array.target} after ${formatMs(end.after)} without an answer; ${pickUp(flags.target, workloadId)}`);
      return SIM_EXIT.UNREACHABLE;
    }
    if (end.kind === 'elsewhere') io.say(`workload ${workloadId} was stopped on the array${end.workload.stopReason ? ` (${end.workload.stopReason})` : ' by another caller'}`);
    try {
      return await stopAndVerify(array, workloadId, json, io);
    } catch (err) {
      if (!(err instanceof ArrayCallError && err.transient)) throw err;
      io.say(`lost the array at ${array.target} (${err.message}); ${pickUp(flags.target, workloadId)}`);
      return SIM_EXIT.UNREACHABLE;
    }
  }).finally(() => {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  });
}

/** The flags of `ferry-sim workload stop`. */
export interface StopWorkloadFlags {
  target: string;
  json?: boolean;
}

/** Stops (idempotent) and verifies a workload, wherever it was started. */
export function runStopWorkloadCommand(workloadId: string, flags: StopWorkloadFlags, io: Out = STDIO): Promise<number> {
  return withArray(flags.target, io, (array) => stopAndVerify(array, workloadId, flags.json === true, io));
}

/** The flags of `ferry-sim workload list`. */
export interface ListWorkloadsFlags {
  target: string;
  share?: string;
  json?: boolean;
}

/** Workloads as a table. */
export function workloadTable(workloads: readonly Workload[]): string {
  if (workloads.length === 0) return 'no workloads\n';
  const rows = workloads.map((w) => {
    const state = shortEnum(w.state, 'WORKLOAD_STATE_').toLowerCase();
    return [w.workloadId, w.shareId, rate(w), pattern(w), w.stopReason ? `${state} (${w.stopReason})` : state, String(w.writesAcked), isoTime(w.startedAt) ?? ''];
  });
  return table([['ID', 'SHARE', 'RATE', 'PATTERN', 'STATE', 'WRITES ACKED', 'STARTED'], ...rows]);
}

/** Lists the array's workloads, oldest first. */
export function runListWorkloadsCommand(flags: ListWorkloadsFlags, io: Out = STDIO): Promise<number> {
  return withArray(flags.target, io, async (array) => {
    const { workloads } = await array.call<{ workloads: Workload[] }>('ListWorkloads', { shareId: flags.share ?? '' });
    io.out(flags.json ? jsonLine({ workloads: workloads.map(workloadJson) }) : workloadTable(workloads));
    return SIM_EXIT.OK;
  });
}
