/**
 * The simulator's adapter for the conformance kit (plugins/conformance), and
 * the example a vendor's adapter follows: it starts an array that outlives
 * ferryd (the kit SIGKILLs and restarts the daemon), and makes and inspects
 * test shares through the array's own API, never through Ferry.
 *
 * By default it opens a simulated array in this process, in a temp dir,
 * served over gRPC on 127.0.0.1:0, with small blocks and chunks so that a
 * few-MiB share has many of each, and a 1 MiB pool for the
 * RESOURCE_EXHAUSTED check. With `endpoint` it uses a running ferry-sim
 * instead (and names no small pool unless `smallPool` is given).
 *
 * Config (`ferry-conformance --config FILE`, all optional):
 *   endpoint       a running array's address; default: start one
 *   driverOptions  extra options for both backends' drivers (e.g. { "snapshots": true })
 *   smallPool      a pool of backend "beta" smaller than the test share
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { silentLog } from '../../lib/log.ts';
import { bind, shutdown } from '../../lib/rpc.ts';
import { SimArray, addSimulatorService } from '../../simulator/index.ts';
import type { SimulatorConfig } from '../../simulator/index.ts';
import { FerryError } from '@ferry/driver-api';
import type { AdapterSetup, ConformanceAdapter, ShareLocation } from '@ferry/conformance';
import { ArrayClient } from './client.ts';

const KiB = 1024;
const MiB = 1024 * KiB;

/** The array the adapter starts: two backends, a roomy pool each, and a tiny one. */
export const CONFORMANCE_ARRAY: Partial<SimulatorConfig> = {
  blockSizeBytes: 4 * KiB,
  chunkSizeBytes: 64 * KiB,
  workers: 2,
  backends: [
    { name: 'alpha', pools: [{ name: 'gold', capacityBytes: 1024 * MiB }] },
    { name: 'beta', pools: [{ name: 'bronze', capacityBytes: 1024 * MiB }, { name: 'tiny', capacityBytes: 1 * MiB }] },
  ],
};

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

/** The simulator's ConformanceAdapter. */
class SimulatorAdapter implements ConformanceAdapter {
  private array?: SimArray;
  private server?: grpc.Server;
  private dataDir?: string;
  private client?: ArrayClient;

  constructor(private readonly config: SimulatorAdapterConfig) {}

  async setup(): Promise<AdapterSetup> {
    let endpoint = this.config.endpoint;
    let smallPool = this.config.smallPool;
    if (!endpoint) {
      this.dataDir = mkdtempSync(join(tmpdir(), 'ferry-conformance-array-'));
      this.array = await SimArray.open({ dataDir: this.dataDir, config: CONFORMANCE_ARRAY, log: silentLog() });
      this.server = new grpc.Server();
      addSimulatorService(this.server, this.array, silentLog());
      endpoint = await bind(this.server, '127.0.0.1:0');
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
    if (this.server) await shutdown(this.server, 1_000);
    await this.array?.close();
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
