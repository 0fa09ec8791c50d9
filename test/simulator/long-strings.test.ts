/**
 * Caller strings are bounded: an 8 KiB identifier sent to any
 * SimulatorService method is refused with INVALID_ARGUMENT that names the
 * field and its length, and the message never echoes it (a C-core client
 * would otherwise see RESOURCE_EXHAUSTED for oversized metadata).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as grpc from '@grpc/grpc-js';
import { serveArray, type CallError } from './helpers.ts';

const LONG = 'x'.repeat(8 * 1024);

/** Every method that takes a string a caller chooses, with the request that carries the long one. */
const CASES: [string, Record<string, unknown>, string][] = [
  ['CreateShare', { shareId: 's', backend: LONG, pool: 'gold', sizeBytes: 4096 }, 'backend'],
  ['GetShare', { shareId: LONG }, 'share_id'],
  ['ListShares', { backend: LONG }, 'backend'],
  ['DeleteShare', { shareId: LONG }, 'share_id'],
  ['WriteShare', { shareId: LONG, offset: 0, data: Buffer.alloc(4096) }, 'share_id'],
  ['ReadShare', { shareId: LONG, offset: 0, length: 4096 }, 'share_id'],
  ['ChecksumShare', { shareId: LONG }, 'share_id'],
  ['StartJob', { jobId: 'j', shareId: LONG, destBackend: 'beta', destPool: 'bronze' }, 'share_id'],
  ['GetJob', { jobId: LONG }, 'job_id'],
  ['CutoverJob', { jobId: LONG }, 'job_id'],
  ['CancelJob', { jobId: LONG }, 'job_id'],
  ['StartWorkload', { shareId: LONG, rateBytesPerSec: 1024 }, 'share_id'],
  ['GetWorkload', { workloadId: LONG }, 'workload_id'],
  ['ListWorkloads', { shareId: LONG }, 'share_id'],
  ['StopWorkload', { workloadId: LONG }, 'workload_id'],
  ['VerifyWorkload', { workloadId: LONG }, 'workload_id'],
  ['SetFaults', { failNth: [{ method: LONG, n: 1, code: 'UNAVAILABLE' }] }, 'method'],
  ['SetFaults', { latencyMs: { [LONG]: 5 } }, 'latency_ms key'],
];

test('an 8 KiB identifier to any SimulatorService method is INVALID_ARGUMENT naming the field, never echoed', async (t) => {
  const { client } = await serveArray(t);
  for (const [method, request, field] of CASES) {
    const err = await client.call(method, request).then(
      () => assert.fail(`${method} accepted an 8 KiB ${field}`),
      (e: CallError) => e,
    );
    assert.equal(err.code, grpc.status.INVALID_ARGUMENT, `${method}: ${err.details}`);
    assert.ok(err.details.includes(`${field} is 8192 characters; at most 128`), `${method}: ${err.details}`);
    assert.ok(err.details.length < 200, `${method} echoed ${err.details.length} characters`);
  }
});
