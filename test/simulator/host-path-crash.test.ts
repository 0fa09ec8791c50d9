/**
 * Crash safety of the host data path, for real: ferry-sim runs as a child
 * process, a workload writes to a share that has a snapshot, the process
 * is SIGKILLed, and the reopened array still reads the snapshot's
 * point-in-time content (and loses no acknowledged write).
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { crc32c } from '@node-rs/crc32';
import { silentLog } from '../../lib/log.ts';
import type { MigrationSpec } from '../../plugins/api/index.ts';
import { createDriver } from '../../plugins/simulator/index.ts';
import { TWO_ARRAYS, configFile, defer, filledShare, sha256, spawnSim, tempDir } from './helpers.ts';
import type { SimClient } from './helpers.ts';

const MiB = 1024 * 1024;

const migration: MigrationSpec = {
  id: 'm1',
  source: { backend: 'alpha', shareId: 's1' },
  destination: { backend: 'gamma', pool: 'iron' },
  writable: true,
  nondisruptive: true,
  preserveMetadata: true,
  preserveSnapshots: false,
  newShareType: '',
  maxBandwidthBytesPerSec: 0,
  maxDowntimeMs: 500,
  cutoverAction: 'abort',
  dataPath: 'host',
};

async function snapshotBytes(t: { after(fn: () => unknown): void }, address: string, snapshotId: string, size: number): Promise<Buffer> {
  const driver = await createDriver({ backend: 'alpha', options: { endpoint: address }, daemonAddress: 'unused:1', log: silentLog() });
  defer(t, () => driver.close?.());
  const parts: Buffer[] = [];
  const call = { migration, signal: new AbortController().signal, log: silentLog(), snapshotId, extents: [{ offset: 0, length: size }] };
  for await (const piece of driver.dataSource!.readExtents(call)) {
    assert.equal(piece.crc32c, crc32c(Buffer.from(piece.data)));
    parts.push(Buffer.from(piece.data));
  }
  return Buffer.concat(parts);
}

async function ackedWrites(client: SimClient, workloadId: string, atLeast: number): Promise<void> {
  while ((await client.call('GetWorkload', { workloadId })).writesAcked < atLeast) {
    // Polled: the workload runs in the child.
  }
}

describe('crash of the process hosting the array, with snapshots', () => {
  test('SIGKILL while a workload overwrites a snapshotted share: after reopening, the snapshot reads its point-in-time content and no acknowledged write is lost', async (t) => {
    const dir = await tempDir(t);
    const dataDir = `${dir}/data`;
    const config = await configFile(dir, TWO_ARRAYS);
    const first = await spawnSim(t, dataDir, config);
    const size = 2 * MiB;
    const content = await filledShare(first.client, 's1', size);
    await first.client.call('CreateSnapshot', { shareId: 's1', snapshotId: 'm1-s1' });
    // Unthrottled, 8 writes in flight, over a share of 512 blocks: most writes are first writes, which preserve a block.
    const wl = await first.client.call('StartWorkload', { shareId: 's1', blockSize: 4096, concurrency: 8, pattern: 'WRITE_PATTERN_RANDOM', seed: 3 });
    await ackedWrites(first.client, wl.workloadId, 150);
    await first.client.call('CreateSnapshot', { shareId: 's1', snapshotId: 'm1-s2' });
    const atSecond = Buffer.from(await snapshotBytes(t, first.address, 'm1-s2', size));
    await ackedWrites(first.client, wl.workloadId, 400);
    first.child.kill('SIGKILL');
    assert.equal((await first.exited).signal, 'SIGKILL');

    const second = await spawnSim(t, dataDir, config);
    assert.equal(sha256(await snapshotBytes(t, second.address, 'm1-s1', size)), sha256(content), 'the first snapshot is what was written before it');
    assert.equal(sha256(await snapshotBytes(t, second.address, 'm1-s2', size)), sha256(atSecond), 'the second reads as it did before the crash');
    const verify = await second.client.call('VerifyWorkload', { workloadId: wl.workloadId });
    assert.equal(verify.lost, 0, `lost blocks at ${verify.lostOffsets}`);
    // And it goes on working: a write after the restart still preserves what the snapshots hold.
    await second.client.call('WriteShare', { shareId: 's1', offset: 0, data: Buffer.alloc(4096, 7) });
    assert.equal(sha256(await snapshotBytes(t, second.address, 'm1-s1', size)), sha256(content));
  });
});
