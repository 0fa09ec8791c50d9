/**
 * The array's shares and data path over real gRPC: create, read, write,
 * checksum, delete, persistence across a reopen, pool capacity, every
 * bad-input error, and the service-level faults.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { dataFiles, filledShare, pattern, rejectsWith, serveArray, sha256 } from './helpers.ts';

const KiB = 1024;
const MiB = 1024 * KiB;

describe('shares', () => {
  test('lists the configured backends and pools with their usage', async (t) => {
    const { client } = await serveArray(t);
    await client.call('CreateShare', { shareId: 's1', backend: 'alpha', pool: 'gold', sizeBytes: 3 * MiB });
    const { backends } = await client.call('ListBackends');
    assert.deepEqual(
      backends.map((b: { name: string }) => b.name),
      ['alpha', 'beta'],
    );
    const gold = backends[0].pools.find((p: { name: string }) => p.name === 'gold');
    assert.deepEqual(gold, { name: 'gold', capacityBytes: 64 * MiB, usedBytes: 3 * MiB, freeBytes: 61 * MiB });
  });

  test('creates a share that reads as zeros, with its fields, and generates an id when none is given', async (t) => {
    const { client } = await serveArray(t);
    const share = await client.call('CreateShare', { shareId: 's1', backend: 'alpha', pool: 'gold', sizeBytes: MiB, metadata: { team: 'a' }, snapshots: 2 });
    assert.equal(share.shareId, 's1');
    assert.equal(share.exportPath, 'alpha:/gold/s1');
    assert.deepEqual(share.metadata, { team: 'a' });
    assert.equal(share.snapshots, 2);
    assert.equal(share.readOnly, false);
    assert.equal(share.migrating, false);
    const { data } = await client.call('ReadShare', { shareId: 's1', offset: 0, length: 4096 });
    assert.ok(Buffer.from(data).equals(Buffer.alloc(4096)));
    const generated = await client.call('CreateShare', { backend: 'beta', pool: 'bronze', sizeBytes: MiB });
    assert.match(generated.shareId, /^share-/);
  });

  test('CreateShare with the same id and fields returns the share; with other fields it is ALREADY_EXISTS', async (t) => {
    const { client } = await serveArray(t);
    const req = { shareId: 's1', backend: 'alpha', pool: 'gold', sizeBytes: MiB };
    const first = await client.call('CreateShare', req);
    const again = await client.call('CreateShare', req);
    assert.deepEqual(again, first);
    await rejectsWith(client.call('CreateShare', { ...req, sizeBytes: 2 * MiB }), grpc.status.ALREADY_EXISTS, /s1/);
  });

  test('writes are read back, and checksummed, wherever they landed', async (t) => {
    const { client } = await serveArray(t);
    const content = await filledShare(client, 's1', 3 * MiB + 5 * KiB);
    const { data } = await client.call('ReadShare', { shareId: 's1', offset: MiB - 100, length: 300 });
    assert.ok(Buffer.from(data).equals(content.subarray(MiB - 100, MiB + 200)));
    const { sha256: sum, sizeBytes } = await client.call('ChecksumShare', { shareId: 's1' });
    assert.equal(sizeBytes, content.length);
    assert.equal(sum, sha256(content));
  });

  test('concurrent writes to one share are all acknowledged and all durable in the file', async (t) => {
    const { client } = await serveArray(t);
    await client.call('CreateShare', { shareId: 's1', backend: 'alpha', pool: 'gold', sizeBytes: MiB });
    const writes = Array.from({ length: 64 }, (_, i) => ({ offset: i * 16 * KiB, data: pattern(`w${i}`, 16 * KiB) }));
    const acks = await Promise.all(writes.map((w) => client.call('WriteShare', { shareId: 's1', ...w })));
    assert.ok(acks.every((a, i) => a.bytesWritten === writes[i]!.data.length));
    const { sha256: sum } = await client.call('ChecksumShare', { shareId: 's1' });
    assert.equal(sum, sha256(Buffer.concat(writes.map((w) => w.data))));
  });

  test('a reopened array serves the same shares and bytes', async (t) => {
    const first = await serveArray(t);
    const content = await filledShare(first.client, 's1', 2 * MiB);
    await first.close();
    const second = await serveArray(t, { dataDir: first.dataDir });
    const share = await second.client.call('GetShare', { shareId: 's1' });
    assert.equal(share.sizeBytes, 2 * MiB);
    const { sha256: sum } = await second.client.call('ChecksumShare', { shareId: 's1' });
    assert.equal(sum, sha256(content));
  });

  test('ListShares filters by backend; DeleteShare removes the share and its file', async (t) => {
    const { client, dataDir } = await serveArray(t);
    await client.call('CreateShare', { shareId: 'a1', backend: 'alpha', pool: 'gold', sizeBytes: MiB });
    await client.call('CreateShare', { shareId: 'b1', backend: 'beta', pool: 'bronze', sizeBytes: MiB });
    const { shares } = await client.call('ListShares', { backend: 'beta' });
    assert.deepEqual(
      shares.map((s: { shareId: string }) => s.shareId),
      ['b1'],
    );
    assert.equal((await dataFiles(dataDir)).length, 2);
    await client.call('DeleteShare', { shareId: 'a1' });
    await rejectsWith(client.call('GetShare', { shareId: 'a1' }), grpc.status.NOT_FOUND, /a1/);
    assert.equal((await dataFiles(dataDir)).length, 1);
    await rejectsWith(client.call('DeleteShare', { shareId: 'a1' }), grpc.status.NOT_FOUND);
  });

  test('a pool without room for a new share is RESOURCE_EXHAUSTED, naming the pool, the need and what is free', async (t) => {
    const { client } = await serveArray(t);
    await client.call('CreateShare', { shareId: 's1', backend: 'beta', pool: 'tiny', sizeBytes: MiB + 512 * KiB });
    await rejectsWith(
      client.call('CreateShare', { shareId: 's2', backend: 'beta', pool: 'tiny', sizeBytes: MiB }),
      grpc.status.RESOURCE_EXHAUSTED,
      /beta\/tiny.*need 1048576 bytes, 524288 free/,
    );
  });
});

describe('bad input', () => {
  const cases: Array<[string, string, object, grpc.status, RegExp]> = [
    ['CreateShare without backend', 'CreateShare', { pool: 'gold', sizeBytes: MiB }, grpc.status.INVALID_ARGUMENT, /^backend is required/],
    ['CreateShare without pool', 'CreateShare', { backend: 'alpha', sizeBytes: MiB }, grpc.status.INVALID_ARGUMENT, /^pool is required/],
    ['CreateShare of size 0', 'CreateShare', { backend: 'alpha', pool: 'gold' }, grpc.status.INVALID_ARGUMENT, /^size_bytes/],
    ['CreateShare with a bad id', 'CreateShare', { shareId: 'a/b', backend: 'alpha', pool: 'gold', sizeBytes: MiB }, grpc.status.INVALID_ARGUMENT, /^share_id/],
    ['CreateShare on an unknown backend', 'CreateShare', { backend: 'gamma', pool: 'gold', sizeBytes: MiB }, grpc.status.NOT_FOUND, /backend gamma/],
    ['CreateShare in an unknown pool', 'CreateShare', { backend: 'alpha', pool: 'lead', sizeBytes: MiB }, grpc.status.NOT_FOUND, /^pool: pool lead not found on backend alpha \(it has gold, silver\)$/],
    ['GetShare without an id', 'GetShare', {}, grpc.status.INVALID_ARGUMENT, /^share_id is required/],
    ['GetShare of an unknown share', 'GetShare', { shareId: 'nope' }, grpc.status.NOT_FOUND, /^share nope not found: it is on no backend of this array$/],
    ['ListShares of an unknown backend', 'ListShares', { backend: 'gamma' }, grpc.status.NOT_FOUND, /backend gamma/],
    ['WriteShare at a negative offset', 'WriteShare', { shareId: 's', offset: -1, data: Buffer.alloc(1) }, grpc.status.INVALID_ARGUMENT, /^offset must be 0 or more/],
    ['WriteShare past the end', 'WriteShare', { shareId: 's', offset: MiB - 1, data: Buffer.alloc(2) }, grpc.status.INVALID_ARGUMENT, /^offset 1048575 \+ data length 2 is past the end/],
    ['WriteShare of nothing', 'WriteShare', { shareId: 's', offset: 0 }, grpc.status.INVALID_ARGUMENT, /^data must not be empty/],
    ['WriteShare over 1 MiB', 'WriteShare', { shareId: 's', offset: 0, data: Buffer.alloc(MiB + 1) }, grpc.status.INVALID_ARGUMENT, /^data is 1048577 bytes; at most 1048576/],
    ['WriteShare to an unknown share', 'WriteShare', { shareId: 'nope', offset: 0, data: Buffer.alloc(1) }, grpc.status.NOT_FOUND, /^share nope not found: it is on no backend of this array$/],
    ['WriteShare without a share id', 'WriteShare', { data: Buffer.alloc(1) }, grpc.status.INVALID_ARGUMENT, /^share_id is required/],
    ['ReadShare at a negative offset', 'ReadShare', { shareId: 's', offset: -5, length: 1 }, grpc.status.INVALID_ARGUMENT, /^offset must be 0 or more/],
    ['ReadShare past the end', 'ReadShare', { shareId: 's', offset: MiB, length: 1 }, grpc.status.INVALID_ARGUMENT, /^offset 1048576 \+ length 1 is past the end/],
    ['ReadShare of length 0', 'ReadShare', { shareId: 's', offset: 0, length: 0 }, grpc.status.INVALID_ARGUMENT, /^length must be at least 1/],
    ['ReadShare over 1 MiB', 'ReadShare', { shareId: 's', offset: 0, length: MiB + 1 }, grpc.status.INVALID_ARGUMENT, /^length is 1048577 bytes; at most 1048576/],
    ['ChecksumShare of an unknown share', 'ChecksumShare', { shareId: 'nope' }, grpc.status.NOT_FOUND, /^share nope not found: it is on no backend of this array$/],
    ['StartJob without a job id', 'StartJob', { shareId: 's', destBackend: 'beta', destPool: 'bronze' }, grpc.status.INVALID_ARGUMENT, /^job_id is required/],
    ['StartJob with a long job id', 'StartJob', { jobId: 'j'.repeat(129), shareId: 's', destBackend: 'beta', destPool: 'bronze' }, grpc.status.INVALID_ARGUMENT, /^job_id is 129 characters/],
    ['StartJob without a share', 'StartJob', { jobId: 'j', destBackend: 'beta', destPool: 'bronze' }, grpc.status.INVALID_ARGUMENT, /^share_id is required/],
    ['StartJob without a destination backend', 'StartJob', { jobId: 'j', shareId: 's', destPool: 'bronze' }, grpc.status.INVALID_ARGUMENT, /^dest_backend is required/],
    ['StartJob without a destination pool', 'StartJob', { jobId: 'j', shareId: 's', destBackend: 'beta' }, grpc.status.INVALID_ARGUMENT, /^dest_pool is required/],
    ['StartJob of an unknown share', 'StartJob', { jobId: 'j', shareId: 'nope', destBackend: 'beta', destPool: 'bronze' }, grpc.status.NOT_FOUND, /^share nope not found: it is on no backend of this array$/],
    ['StartJob to an unknown backend', 'StartJob', { jobId: 'j', shareId: 's', destBackend: 'gamma', destPool: 'bronze' }, grpc.status.NOT_FOUND, /^dest_backend: backend gamma/],
    ['StartJob to an unknown pool', 'StartJob', { jobId: 'j', shareId: 's', destBackend: 'beta', destPool: 'lead' }, grpc.status.NOT_FOUND, /^dest_pool: pool lead not found on backend beta \(it has bronze, tiny\)$/],
    ['StartJob to where the share is', 'StartJob', { jobId: 'j', shareId: 's', destBackend: 'alpha', destPool: 'gold' }, grpc.status.FAILED_PRECONDITION, /already lives in alpha\/gold/],
    ['StartJob with an unknown cutover action', 'StartJob', { jobId: 'j', shareId: 's', destBackend: 'beta', destPool: 'bronze', cutoverAction: 7 }, grpc.status.INVALID_ARGUMENT, /^cutover_action/],
    ['GetJob of an unknown job', 'GetJob', { jobId: 'nope' }, grpc.status.NOT_FOUND, /job nope/],
    ['GetJob without an id', 'GetJob', {}, grpc.status.INVALID_ARGUMENT, /^job_id is required/],
    ['CutoverJob of an unknown job', 'CutoverJob', { jobId: 'nope' }, grpc.status.NOT_FOUND, /job nope/],
    ['CancelJob without an id', 'CancelJob', {}, grpc.status.INVALID_ARGUMENT, /^job_id is required/],
    ['StartWorkload without a share', 'StartWorkload', {}, grpc.status.INVALID_ARGUMENT, /^share_id is required/],
    ['StartWorkload of an unknown share', 'StartWorkload', { shareId: 'nope' }, grpc.status.NOT_FOUND, /^share nope not found: it is on no backend of this array$/],
    ['StartWorkload with blocks over 1 MiB', 'StartWorkload', { shareId: 's', blockSize: MiB + 1 }, grpc.status.INVALID_ARGUMENT, /^block_size is 1048577/],
    ['StartWorkload with blocks larger than the share', 'StartWorkload', { shareId: 'small', blockSize: 8 * KiB }, grpc.status.INVALID_ARGUMENT, /^block_size 8192 is larger than share small/],
    ['StartWorkload with too much concurrency', 'StartWorkload', { shareId: 's', concurrency: 65 }, grpc.status.INVALID_ARGUMENT, /^concurrency is 65/],
    ['StartWorkload with a hot spot over 100 %', 'StartWorkload', { shareId: 's', hotspotPercent: 101 }, grpc.status.INVALID_ARGUMENT, /^hotspot_percent/],
    ['GetWorkload of an unknown workload', 'GetWorkload', { workloadId: 'nope' }, grpc.status.NOT_FOUND, /workload nope/],
    ['VerifyWorkload without an id', 'VerifyWorkload', {}, grpc.status.INVALID_ARGUMENT, /^workload_id is required/],
    ['SetFaults with latency on an unknown method', 'SetFaults', { latencyMs: { Nope: 5 } }, grpc.status.INVALID_ARGUMENT, /^latency_ms: Nope/],
    ['SetFaults failing an unknown method', 'SetFaults', { failNth: [{ method: 'Nope', n: 1, code: 'UNAVAILABLE' }] }, grpc.status.INVALID_ARGUMENT, /^fail_nth\[0\]\.method/],
    ['SetFaults failing call 0', 'SetFaults', { failNth: [{ method: 'GetJob', n: 0, code: 'UNAVAILABLE' }] }, grpc.status.INVALID_ARGUMENT, /^fail_nth\[0\]\.n/],
    ['SetFaults with an unknown code', 'SetFaults', { failNth: [{ method: 'GetJob', n: 1, code: 'OOPS' }] }, grpc.status.INVALID_ARGUMENT, /^fail_nth\[0\]\.code/],
  ];

  test('every bad request gets its code and a message naming the field', async (t) => {
    const { client } = await serveArray(t);
    await client.call('CreateShare', { shareId: 's', backend: 'alpha', pool: 'gold', sizeBytes: MiB });
    await client.call('CreateShare', { shareId: 'small', backend: 'alpha', pool: 'gold', sizeBytes: 4 * KiB });
    for (const [name, method, request, code, message] of cases) {
      await t.test(name, async () => {
        await rejectsWith(client.call(method, request), code, message);
      });
    }
  });
});

describe('service faults', () => {
  test('added latency delays the named method only, and never the fault RPCs', async (t) => {
    const { client } = await serveArray(t);
    await client.call('SetFaults', { latencyMs: { ListBackends: 60_000 } });
    // A short deadline proves the delay without measuring time: the faulted call cannot make it, the others can.
    await rejectsWith(client.call('ListBackends', {}, 200), grpc.status.DEADLINE_EXCEEDED);
    await client.call('ListShares', {}, 5_000);
    const faults = await client.call('GetFaults', {}, 5_000);
    assert.deepEqual(faults.latencyMs, { ListBackends: 60_000 });
    await client.call('ClearFaults', {}, 5_000);
    await client.call('ListBackends', {}, 5_000);
  });

  test('fail_nth fails exactly the Nth call of the method, once, with the named code', async (t) => {
    const { client } = await serveArray(t);
    await client.call('CreateShare', { shareId: 's', backend: 'alpha', pool: 'gold', sizeBytes: MiB });
    await client.call('SetFaults', { failNth: [{ method: 'GetShare', n: 2, code: 'UNAVAILABLE' }] });
    await client.call('GetShare', { shareId: 's' });
    await rejectsWith(client.call('GetShare', { shareId: 's' }), grpc.status.UNAVAILABLE, /^injected fault: call 2 of GetShare/);
    await client.call('GetShare', { shareId: 's' });
  });

  test('faults persist across a reopen of the array', async (t) => {
    const first = await serveArray(t);
    await first.client.call('SetFaults', { stallCopy: true, cutoverDelayMs: 5, copyBandwidthBytesPerSec: 1000 });
    await first.close();
    const second = await serveArray(t, { dataDir: first.dataDir });
    const faults = await second.client.call('GetFaults');
    assert.equal(faults.stallCopy, true);
    assert.equal(faults.cutoverDelayMs, 5);
    assert.equal(faults.copyBandwidthBytesPerSec, 1000);
    assert.equal(faults.crashAt, 'CRASH_POINT_NONE');
  });
});
