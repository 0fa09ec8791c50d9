/**
 * The simulator's adapter for the conformance kit (plugins/conformance), and
 * the example a vendor's adapter follows: it starts an array that outlives
 * ferryd (the kit SIGKILLs and restarts the daemon), and makes and inspects
 * test shares through the array's own API, never through Ferry.
 *
 * By default it starts the array as its own process, as a vendor's adapter
 * starts its array's simulator: `ferry-sim serve` on 127.0.0.1:0 in a temp
 * dir, with small blocks and chunks so that a few-MiB share has many of
 * each, and a 1 MiB pool for the RESOURCE_EXHAUSTED check; it learns the
 * bound address from the array's "listening" log line, and stops the
 * process (SIGTERM) in teardown. With `endpoint` it uses a running array
 * instead (and names no small pool unless `smallPool` is given).
 *
 * Config (`ferry-conformance --config FILE`, all optional):
 *   endpoint       a running array's address; default: start one
 *   driverOptions  extra options for both backends' drivers (e.g. { "snapshots": true })
 *   smallPool      a pool of backend "beta" smaller than the test share
 */
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { FerryError } from '@ferry/driver-api';
import type { AdapterSetup, ConformanceAdapter, ShareLocation } from '@ferry/conformance';
import { ArrayClient } from './client.ts';

const KiB = 1024;
const MiB = 1024 * KiB;

/** The array's command; a vendor's adapter starts its own array's simulator. */
const FERRY_SIM = fileURLToPath(new URL('../../bin/ferry-sim.mjs', import.meta.url));

/** How long the array may take to start listening, and to stop after SIGTERM before it is killed. */
const START_TIMEOUT_MS = 30_000;
const STOP_TIMEOUT_MS = 10_000;

/** The array the adapter starts (ferry-sim's --config file): two backends, a roomy pool each, and a tiny one. */
export const CONFORMANCE_ARRAY = {
  blockSizeBytes: 4 * KiB,
  chunkSizeBytes: 64 * KiB,
  workers: 2,
  backends: [
    { name: 'alpha', pools: [{ name: 'gold', capacityBytes: 1024 * MiB }] },
    { name: 'beta', pools: [{ name: 'bronze', capacityBytes: 1024 * MiB }, { name: 'tiny', capacityBytes: 1 * MiB }] },
  ],
} as const;

/** What the adapter reads from its config. */
export interface SimulatorAdapterConfig {
  endpoint?: string;
  driverOptions?: Record<string, unknown>;
  smallPool?: string;
}

/** Job states in which a job holds a destination that is not a share yet. */
const ACTIVE_JOB = new Set(['JOB_STATE_COPYING', 'JOB_STATE_SYNCING', 'JOB_STATE_CUTTING_OVER']);

interface Share {
  shareId: string;
  backend: string;
  pool: string;
  migrating: boolean;
  jobId: string;
}
interface Job {
  jobId: string;
  state: string;
  dest: { backend: string; pool: string } | null;
}

/** Calls to the array get a fresh signal each: the adapter has no caller to be aborted by. */
const forever = () => new AbortController().signal;

/** A running ferry-sim process. */
interface ArrayProcess {
  child: ChildProcess;
  address: string;
  exited: Promise<void>;
}

/**
 * Starts `ferry-sim serve` on 127.0.0.1:0 with `dataDir` and `configFile`;
 * resolves once it logs the address it listens on. Rejects, with what the
 * process printed on stderr, if it exits or stays silent first.
 */
function startArray(dataDir: string, configFile: string): Promise<ArrayProcess> {
  const child = spawn(process.execPath, [FERRY_SIM, 'serve', '--listen', '127.0.0.1:0', '--data-dir', dataDir, '--config', configFile], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => (stderr = (stderr + d.toString()).slice(-4000)));
  return new Promise<ArrayProcess>((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`ferry-sim did not log "listening" within ${START_TIMEOUT_MS} ms: ${stderr}`));
    }, START_TIMEOUT_MS);
    // The log is read to its end, so the array never blocks on a full pipe.
    createInterface({ input: child.stdout! }).on('line', (line) => {
      let entry: { msg?: unknown; address?: unknown };
      try {
        entry = JSON.parse(line) as typeof entry;
      } catch {
        return; // Not a log line.
      }
      if (entry.msg === 'listening' && typeof entry.address === 'string') {
        clearTimeout(timer);
        resolve({ child, address: entry.address, exited });
      }
    });
    child.once('error', (err) => {
      clearTimeout(timer);
      reject(new Error(`cannot start ferry-sim (${FERRY_SIM}): ${err.message}`));
    });
    void exited.then(() => {
      clearTimeout(timer);
      reject(new Error(`ferry-sim exited (${child.exitCode ?? child.signalCode}) before listening: ${stderr}`));
    });
  });
}

/** Stops the array: SIGTERM (it closes its jobs and files), SIGKILL if it has not exited within STOP_TIMEOUT_MS. */
async function stopArray(array: ArrayProcess): Promise<void> {
  if (array.child.exitCode !== null || array.child.signalCode !== null) return;
  array.child.kill('SIGTERM');
  const timer = setTimeout(() => array.child.kill('SIGKILL'), STOP_TIMEOUT_MS);
  await array.exited;
  clearTimeout(timer);
}

/** The simulator's ConformanceAdapter. */
class SimulatorAdapter implements ConformanceAdapter {
  private array?: ArrayProcess;
  private dataDir?: string;
  private client?: ArrayClient;
  /** Kills the array if this process exits without a teardown, so that it does not outlive the run. */
  private readonly killOnExit = () => this.array?.child.kill('SIGKILL');

  constructor(private readonly config: SimulatorAdapterConfig) {}

  async setup(): Promise<AdapterSetup> {
    let endpoint = this.config.endpoint;
    let smallPool = this.config.smallPool;
    if (!endpoint) {
      this.dataDir = mkdtempSync(join(tmpdir(), 'ferry-conformance-array-'));
      const configFile = join(this.dataDir, 'array.json');
      writeFileSync(configFile, JSON.stringify(CONFORMANCE_ARRAY));
      this.array = await startArray(join(this.dataDir, 'array'), configFile);
      process.once('exit', this.killOnExit);
      endpoint = this.array.address;
      smallPool ??= 'tiny';
    }
    this.client = new ArrayClient(endpoint, 30_000);
    const options = { endpoint, ...this.config.driverOptions };
    return {
      backends: [
        { name: 'alpha', options },
        { name: 'beta', options },
      ],
      sourcePool: 'gold',
      destinationPool: 'bronze',
      ...(smallPool ? { smallPool } : {}),
    };
  }

  async createShare(backend: string, pool: string, sizeBytes: number): Promise<string> {
    const share = await this.call<Share>('CreateShare', { backend, pool, sizeBytes });
    return share.shareId;
  }

  async writeShare(shareId: string, offset: number, data: Uint8Array): Promise<void> {
    await this.call('WriteShare', { shareId, offset, data: Buffer.from(data.buffer, data.byteOffset, data.byteLength) });
  }

  async checksum(shareId: string): Promise<string> {
    return (await this.call<{ sha256: string }>('ChecksumShare', { shareId })).sha256;
  }

  async locate(shareId: string): Promise<ShareLocation | null> {
    const share = await this.share(shareId);
    return share ? { backend: share.backend, pool: share.pool } : null;
  }

  /** The shares living on `backend`, and "job:<id>" for each job whose destination there is still in flight (ListShares does not show those). */
  async listShares(backend: string): Promise<string[]> {
    const { shares } = await this.call<{ shares: Share[] }>('ListShares', { backend });
    const { jobs } = await this.call<{ jobs: Job[] }>('ListJobs', {});
    const inFlight = jobs.filter((j) => ACTIVE_JOB.has(j.state) && j.dest?.backend === backend).map((j) => `job:${j.jobId}`);
    return [...shares.map((s) => s.shareId), ...inFlight];
  }

  async deleteShare(shareId: string): Promise<void> {
    const share = await this.share(shareId);
    if (!share) return;
    // A job left behind (say, by a driver whose cancel does not cancel) holds the share: cancel it first.
    if (share.migrating && share.jobId) await this.call('CancelJob', { jobId: share.jobId });
    try {
      await this.call('DeleteShare', { shareId });
    } catch (err) {
      if (!(err instanceof FerryError && err.code === 'NOT_FOUND')) throw err;
    }
  }

  async teardown(): Promise<void> {
    this.client?.close();
    if (this.array) {
      await stopArray(this.array);
      process.off('exit', this.killOnExit);
    }
    if (this.dataDir) rmSync(this.dataDir, { recursive: true, force: true });
  }

  private async share(shareId: string): Promise<Share | null> {
    try {
      return await this.call<Share>('GetShare', { shareId });
    } catch (err) {
      if (err instanceof FerryError && err.code === 'NOT_FOUND') return null;
      throw err;
    }
  }

  private call<T = unknown>(method: string, request: object): Promise<T> {
    if (!this.client) return Promise.reject(new Error('the adapter is not set up'));
    return this.client.call<T>(method, request, forever());
  }
}

/** The adapter for ferry-conformance and the conformance library. */
export function createAdapter(config: Record<string, unknown> = {}): ConformanceAdapter {
  return new SimulatorAdapter(config as SimulatorAdapterConfig);
}
