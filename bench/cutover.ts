/**
 * Cutover freeze time of a 1 GiB share under a 20 MiB/s random-write
 * workload, over at least 20 cutovers (median, p90, p99, max).
 *
 *   npx tsx bench/cutover.ts   (BENCH_SIZE_MIB=1024 BENCH_CUTOVERS=20 BENCH_RATE_MIB=20 BENCH_SETTLE_MS=2000)
 *
 * One share, one workload (64 KiB random writes, 4 in flight) running the
 * whole time; the share is migrated round a ring of pools, one job after the
 * other. Each job: start, wait for phase 1, stay SYNCING for BENCH_SETTLE_MS
 * (an operator does not complete the instant phase 1 ends), then CutoverJob
 * with the defaults a migration gets (500 ms window, ABORT; nondisruptive so
 * the workload's writes wait rather than fail). freeze_ms is the array's own
 * measure: from closing the write gate to releasing the waiting writes,
 * final copy, fdatasync, verification and the synced commit batch included.
 * Aborted attempts are counted and retried. At the end the workload is
 * verified: no acknowledged write may be lost.
 * Writes a JSON result under bench/results/.
 */
import { createCipheriv } from 'node:crypto';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { SimArray } from '../simulator/index.ts';

const MiB = 1024 * 1024;
const SIZE = Number(process.env.BENCH_SIZE_MIB ?? 1024) * MiB;
const CUTOVERS = Number(process.env.BENCH_CUTOVERS ?? 20);
const RATE = Number(process.env.BENCH_RATE_MIB ?? 20) * MiB;
const SETTLE_MS = Number(process.env.BENCH_SETTLE_MS ?? 2000);
const RESULTS = fileURLToPath(new URL('./results/', import.meta.url));
const RING = [
  { backend: 'beta', pool: 'bronze' },
  { backend: 'alpha', pool: 'silver' },
  { backend: 'alpha', pool: 'gold' },
];

function percentile(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil(p * s.length) - 1)]!;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function main(): Promise<void> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'ferry-bench-cutover-'));
  console.log(`bench/cutover: ${SIZE / MiB} MiB share, ${RATE / MiB} MiB/s random 64 KiB writes, ${CUTOVERS} cutovers, ${SETTLE_MS} ms syncing before each, in ${dir}`);
  const array = await SimArray.open({ dataDir: path.join(dir, 'array') });
  try {
    await array.createShare({ shareId: 'bench', backend: 'alpha', pool: 'gold', sizeBytes: SIZE, metadata: {}, snapshots: 0, shareType: '' });
    for (let off = 0; off < SIZE; off += 16 * MiB) {
      await Promise.all(
        Array.from({ length: 16 }, (_, i) => {
          const at = off + i * MiB;
          const iv = Buffer.alloc(16);
          iv.writeBigUInt64BE(BigInt(at / 16), 8);
          return array.data.write('bench', at, createCipheriv('aes-128-ctr', Buffer.alloc(16, 9), iv).update(Buffer.alloc(MiB)));
        }),
      );
    }
    const wl = await array.workloads.start({ shareId: 'bench', rateBytesPerSec: RATE, blockSize: 64 * 1024, pattern: 'RANDOM', seed: 1, concurrency: 4, hotspotPercent: 10 });

    const rows: Array<{ job: string; freezeMs: number; finalDeltaBytes: number; verifiedBytes: number; attempts: number; phase1Ms: number; passes: number }> = [];
    for (let i = 0; i < CUTOVERS; i++) {
      const dest = RING[i % RING.length]!;
      const jobId = `cut-${i}`;
      await array.jobs.start(jobId, {
        shareId: 'bench',
        destBackend: dest.backend,
        destPool: dest.pool,
        writable: true,
        nondisruptive: true,
        preserveMetadata: true,
        preserveSnapshots: false,
        newShareType: '',
        maxBandwidthBytesPerSec: 0,
        maxDowntimeMs: 500,
        cutoverAction: 'ABORT',
      });
      while (!array.jobs.get(jobId).record.phase1Done) await sleep(5);
      await sleep(SETTLE_MS);
      let v = await array.jobs.cutover(jobId, 0);
      while (v.record.state !== 'DONE') {
        console.log(`  ${jobId}: attempt ${v.record.cutoverAttempts} aborted: ${v.record.lastAbortReason}`);
        v = await array.jobs.cutover(jobId, 0);
      }
      const c = v.record.cutover!;
      rows.push({
        job: jobId,
        freezeMs: c.freezeMs,
        finalDeltaBytes: c.finalDeltaBytes,
        verifiedBytes: c.verifiedBytes,
        attempts: v.record.cutoverAttempts,
        phase1Ms: v.record.phase1DoneAtMs - v.record.createdAtMs,
        passes: v.record.pass,
      });
      console.log(
        `  ${jobId} -> ${dest.backend}/${dest.pool}: freeze ${c.freezeMs.toFixed(1)} ms, final delta ${(c.finalDeltaBytes / 1024).toFixed(0)} KiB, ` +
          `verified ${(c.verifiedBytes / 1024).toFixed(0)} KiB, phase 1 in ${rows[rows.length - 1]!.phase1Ms} ms`,
      );
    }
    const stats = (await array.workloads.stop(wl.workloadId)).stats;
    const verify = await array.workloads.verify(wl.workloadId);

    const freeze = rows.map((r) => r.freezeMs);
    const summary = {
      median: percentile(freeze, 0.5),
      p90: percentile(freeze, 0.9),
      p99: percentile(freeze, 0.99),
      max: Math.max(...freeze),
      min: Math.min(...freeze),
      finalDeltaMedianKiB: percentile(rows.map((r) => r.finalDeltaBytes), 0.5) / 1024,
      verifiedMedianKiB: percentile(rows.map((r) => r.verifiedBytes), 0.5) / 1024,
      abortedAttempts: rows.reduce((n, r) => n + r.attempts - 1, 0),
    };
    console.log(`\nfreeze over ${rows.length} cutovers (ms): median ${summary.median.toFixed(1)}  p90 ${summary.p90.toFixed(1)}  p99 ${summary.p99.toFixed(1)}  max ${summary.max.toFixed(1)}  min ${summary.min.toFixed(1)}`);
    console.log(`final delta median ${summary.finalDeltaMedianKiB.toFixed(0)} KiB, verified in freeze median ${summary.verifiedMedianKiB.toFixed(0)} KiB, aborted attempts ${summary.abortedAttempts}`);
    console.log(
      `workload: ${stats.writesAcked} writes acked (${(stats.bytesAcked / MiB).toFixed(0)} MiB), ${stats.writesFailed} failed, ` +
        `latency p50 ${stats.latencyP50Ms.toFixed(2)} ms p99 ${stats.latencyP99Ms.toFixed(2)} ms max ${stats.latencyMaxMs.toFixed(1)} ms; verify: ${verify.checked} blocks checked, ${verify.lost} lost`,
    );
    if (rows.length >= 1 && rows.length < 100) console.log(`(with ${rows.length} samples, p99 is the largest sample)`);
    await mkdir(RESULTS, { recursive: true });
    const file = path.join(RESULTS, `cutover-${new Date().toISOString().replace(/[:.]/g, '-')}.json`);
    await writeFile(
      file,
      JSON.stringify({ bench: 'cutover', sizeBytes: SIZE, rateBytesPerSec: RATE, settleMs: SETTLE_MS, cpus: os.availableParallelism(), node: process.version, summary, workload: { ...stats, verify }, rows }, null, 2),
    );
    console.log(`wrote ${path.relative(process.cwd(), file)}`);
    if (verify.lost > 0) process.exitCode = 1;
  } finally {
    await array.close();
    await rm(dir, { recursive: true, force: true });
  }
}

await main();
