/**
 * Copy throughput of a 1 GiB share through a simulator job (phase 1:
 * worker-thread copy with per-block sha256, destination fdatasync'd),
 * next to `cp` of a 1 GiB file on the same disk in the same run, and an
 * in-memory Buffer copy as the ceiling.
 *
 *   npx tsx bench/copy.ts            (BENCH_SIZE_MIB=1024 BENCH_RUNS=3)
 *
 * Each run is measured twice: "cold" (page cache dropped first, when we may:
 * root only) and "warm" (the source was just read or written). The job's
 * time is phase1_done_at - created_at as the array records them: creating
 * the destination, pass 1, and the destination's fdatasync. `cp` is timed
 * alone and with an fdatasync of its copy, for the same durability.
 * Writes a JSON result under bench/results/.
 */
import { spawn } from 'node:child_process';
import { createCipheriv } from 'node:crypto';
import { mkdir, mkdtemp, open, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { SimArray } from '../simulator/index.ts';

const MiB = 1024 * 1024;
const SIZE = Number(process.env.BENCH_SIZE_MIB ?? 1024) * MiB;
const RUNS = Number(process.env.BENCH_RUNS ?? 3);
const RESULTS = fileURLToPath(new URL('./results/', import.meta.url));

/** Incompressible, non-zero bytes (AES-CTR keystream), so neither sparse files nor zero-skipping flatter anyone. */
function content(offset: number, length: number): Buffer {
  const iv = Buffer.alloc(16);
  iv.writeBigUInt64BE(BigInt(offset / 16), 8);
  return createCipheriv('aes-128-ctr', Buffer.alloc(16, 7), iv).update(Buffer.alloc(length));
}

async function dropCaches(): Promise<boolean> {
  try {
    await run('sync', []);
    await writeFile('/proc/sys/vm/drop_caches', '3');
    return true;
  } catch {
    return false;
  }
}

function run(cmd: string, args: string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: 'inherit' });
    child.on('error', reject);
    child.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`${cmd} exited ${code}`))));
  });
}

async function readAll(file: string): Promise<void> {
  const fh = await open(file, 'r');
  const buf = Buffer.allocUnsafe(8 * MiB);
  while ((await fh.read(buf, 0, buf.length)).bytesRead > 0);
  await fh.close();
}

async function fdatasync(file: string): Promise<void> {
  const fh = await open(file, 'r+');
  await fh.datasync();
  await fh.close();
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
}

const mibps = (bytes: number, ms: number) => bytes / MiB / (ms / 1000);

async function main(): Promise<void> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'ferry-bench-copy-'));
  const canDrop = await dropCaches();
  console.log(`bench/copy: ${SIZE / MiB} MiB, ${RUNS} runs, in ${dir}; cold runs ${canDrop ? 'drop the page cache' : 'not possible (not root): warm only'}`);
  try {
    // The cp source, and the share, hold the same bytes.
    const src = path.join(dir, 'cp-src.img');
    const fh = await open(src, 'w');
    for (let off = 0; off < SIZE; off += 8 * MiB) await fh.write(content(off, Math.min(8 * MiB, SIZE - off)), 0, undefined, off);
    await fh.sync();
    await fh.close();

    const array = await SimArray.open({ dataDir: path.join(dir, 'array') });
    const workers = array.config.workers;
    await array.createShare({ shareId: 'bench', backend: 'alpha', pool: 'gold', sizeBytes: SIZE, metadata: {}, snapshots: 0, shareType: '' });
    const pieces = Array.from({ length: SIZE / MiB }, (_, i) => i * MiB);
    for (let i = 0; i < pieces.length; i += 16) {
      await Promise.all(pieces.slice(i, i + 16).map((off) => array.data.write('bench', off, content(off, MiB))));
    }

    const samples: Record<string, number[]> = {};
    const add = (name: string, ms: number) => (samples[name] ??= []).push(ms);
    const memSrc = content(0, SIZE);
    const memDst = Buffer.allocUnsafe(SIZE);

    for (let r = 0; r < RUNS; r++) {
      for (const mode of canDrop ? ['cold', 'warm'] : ['warm']) {
        if (mode === 'cold') await dropCaches();
        else await readAll(src); // Warm: read the source into the cache first.
        const dst = path.join(dir, 'cp-dst.img');
        const t0 = performance.now();
        await run('cp', [src, dst]);
        const cpMs = performance.now() - t0;
        await fdatasync(dst);
        add(`cp (${mode})`, cpMs);
        add(`cp + fdatasync (${mode})`, performance.now() - t0);
        await rm(dst);

        if (mode === 'cold') await dropCaches();
        else await array.data.checksum('bench'); // Warm: read the share into the cache first.
        const jobId = `copy-${r}-${mode}`;
        await array.jobs.start(jobId, {
          shareId: 'bench',
          destBackend: 'beta',
          destPool: 'bronze',
          writable: true,
          nondisruptive: true,
          preserveMetadata: true,
          preserveSnapshots: false,
          newShareType: '',
          maxBandwidthBytesPerSec: 0,
          maxDowntimeMs: 500,
          cutoverAction: 'ABORT',
        });
        for (;;) {
          const v = array.jobs.get(jobId);
          if (v.record.phase1Done) {
            add(`ferry job, ${workers} workers (${mode})`, v.record.phase1DoneAtMs - v.record.createdAtMs);
            break;
          }
          await new Promise((res) => setTimeout(res, 2));
        }
        await array.jobs.cancel(jobId);
      }
      const m0 = performance.now();
      memSrc.copy(memDst);
      add('Buffer.copy in memory (ceiling)', performance.now() - m0);
    }
    await array.close();

    const rows = Object.entries(samples).map(([name, ms]) => ({ name, medianMs: median(ms), mibPerSec: mibps(SIZE, median(ms)), runsMs: ms.map((x) => Math.round(x)) }));
    console.log(`\n${'what'.padEnd(36)} ${'median ms'.padStart(10)} ${'MiB/s'.padStart(9)}   runs (ms)`);
    for (const row of rows) {
      console.log(`${row.name.padEnd(36)} ${row.medianMs.toFixed(0).padStart(10)} ${row.mibPerSec.toFixed(0).padStart(9)}   ${row.runsMs.join(', ')}`);
    }
    await mkdir(RESULTS, { recursive: true });
    const file = path.join(RESULTS, `copy-${new Date().toISOString().replace(/[:.]/g, '-')}.json`);
    await writeFile(file, JSON.stringify({ bench: 'copy', sizeBytes: SIZE, runs: RUNS, workers, cpus: os.availableParallelism(), node: process.version, rows }, null, 2));
    console.log(`\nwrote ${path.relative(process.cwd(), file)}`);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

await main();
