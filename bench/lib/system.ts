/**
 * The machine side of the benchmarks: CPU time and peak memory of a process
 * from /proc, timed external commands (cp, dd, rsync, sync), the page cache,
 * and installing rsync from Debian's packages when it is missing.
 */
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { performance } from 'node:perf_hooks';

const CLK_TCK = (() => {
  try {
    return Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
  } catch {
    return 100;
  }
})();

/** User + system CPU time of process `pid` so far, in ms (Linux /proc); NaN elsewhere or once it is gone. */
export function cpuMs(pid: number): number {
  try {
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
    return ((Number(fields[11]) + Number(fields[12])) * 1000) / CLK_TCK;
  } catch {
    return NaN;
  }
}

/** CPU time of this process's waited-for children so far (cutime + cstime), in ms. */
export function childrenCpuMs(): number {
  try {
    const fields = readFileSync('/proc/self/stat', 'utf8').split(') ')[1]!.split(' ');
    return ((Number(fields[13]) + Number(fields[14])) * 1000) / CLK_TCK;
  } catch {
    return NaN;
  }
}

/** Peak resident memory of process `pid` (VmHWM), in bytes; NaN when unknown. */
export function peakRssBytes(pid: number): number {
  try {
    const m = /^VmHWM:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) * 1024 : NaN;
  } catch {
    return NaN;
  }
}

/** Runs a command to completion; rejects on a non-zero exit with its stderr. Resolves with the wall time in ms. */
export function run(cmd: string, args: string[]): Promise<number> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const child = spawn(cmd, args, { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    child.on('exit', (code, signal) => (code === 0 ? resolve(performance.now() - t0) : reject(new Error(`${cmd} ${args.join(' ')}: exit ${code ?? signal}: ${stderr.trim()}`))));
  });
}

/** fdatasync of one file. */
export async function fdatasync(file: string): Promise<void> {
  const fh = await open(file, 'r+');
  try {
    await fh.datasync();
  } finally {
    await fh.close();
  }
}

/** Reads a file through the page cache, so the next reader finds it there. */
export async function warm(file: string): Promise<void> {
  const fh = await open(file, 'r');
  const buf = Buffer.allocUnsafe(8 * 2 ** 20);
  try {
    while ((await fh.read(buf, 0, buf.length)).bytesRead > 0);
  } finally {
    await fh.close();
  }
}

/** Whether `dropCaches` can work here (root on Linux). */
export function canDropCaches(): boolean {
  try {
    writeFileSync('/proc/sys/vm/drop_caches', '3');
    return true;
  } catch {
    return false;
  }
}

/** Writes back dirty pages, then drops the page cache, dentries and inodes (root only), so the next read comes from the disk. */
export async function dropCaches(): Promise<void> {
  await run('sync', []);
  writeFileSync('/proc/sys/vm/drop_caches', '3');
}

/** The path of `rsync`, installing it with apt-get when it is missing and we are root; null if neither works. */
export function ensureRsync(log: (line: string) => void): string | null {
  const find = () => ['/usr/bin/rsync', '/usr/local/bin/rsync', '/bin/rsync'].find((p) => existsSync(p)) ?? null;
  const found = find();
  if (found) return found;
  if (process.getuid?.() !== 0) {
    log('rsync is missing and we are not root: the rsync baseline is left out (apt-get install rsync)');
    return null;
  }
  log('rsync is missing: installing it from Debian\'s packages (apt-get install -y rsync)');
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  const install = () => execFileSync('apt-get', ['install', '-y', '-qq', 'rsync'], { env, stdio: ['ignore', 'ignore', 'pipe'] });
  try {
    install();
  } catch {
    try {
      execFileSync('apt-get', ['update', '-qq'], { env, stdio: ['ignore', 'ignore', 'pipe'] });
      install();
    } catch (err) {
      log(`could not install rsync: ${(err as Error).message.split('\n')[0]}; the rsync baseline is left out`);
      return null;
    }
  }
  return find();
}

/** The first line of `rsync --version`. */
export function rsyncVersion(rsync: string): string {
  try {
    return execFileSync(rsync, ['--version'], { encoding: 'utf8' }).split('\n')[0]!.trim();
  } catch {
    return 'unknown';
  }
}

/** Resolves after `ms`. */
export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** Resolves true when `promise` settles within `ms`, false at `ms`; the timer is cleared either way (a pending one would keep the process alive). */
export async function within(promise: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<false>((resolve) => (timer = setTimeout(() => resolve(false), ms)));
  try {
    return await Promise.race([promise.then(() => true as const), timeout]);
  } finally {
    clearTimeout(timer);
  }
}
