/**
 * WatchJobs on a real array over real gRPC: the marker that the watch is
 * registered, then phase 1 done, the cutover's states, a rollback, a
 * cancel and a failure as they happen; the backend filter; a slow reader
 * coalesced to one entry per job; the stream's clean end when the array
 * closes.
 */
import assert from 'node:assert/strict';
import { unlink } from 'node:fs/promises';
import path from 'node:path';
import { once } from 'node:events';
import * as http2 from 'node:http2';
import { describe, test } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { clientConstructor } from '../../lib/rpc.ts';
import { SIMULATOR_SERVICE, simulatorServiceDefinition } from '../../simulator/index.ts';
import { defer, phase1Done, serveArray } from './helpers.ts';
import type { SimClient } from './helpers.ts';

const KiB = 1024;

/** A job event as the client reads it. */
interface JobEvent {
  jobId: string;
  state: string;
  phase1Done: boolean;
}

/** An open WatchJobs stream and everything it has sent. */
interface Watcher {
  events: JobEvent[];
  call: grpc.ClientReadableStream<JobEvent>;
  /** Resolves with the first event (from the start) that `match` accepts; fails after `timeoutMs`. */
  next(match: (e: JobEvent) => boolean, what: string, timeoutMs?: number): Promise<JobEvent>;
  /** How the stream ended. */
  ended: Promise<{ code: grpc.status; details: string }>;
}

/** Opens WatchJobs on `address` and waits for its first message (the watch is registered). */
async function watchJobs(t: Parameters<typeof defer>[0], address: string, request: object = {}, channelOptions: grpc.ChannelOptions = {}): Promise<Watcher> {
  const Client = clientConstructor(SIMULATOR_SERVICE);
  const client = new Client(address, grpc.credentials.createInsecure(), { 'grpc.use_local_subchannel_pool': 1, ...channelOptions });
  const call = (client as unknown as { WatchJobs(req: object): grpc.ClientReadableStream<JobEvent> }).WatchJobs(request);
  const events: JobEvent[] = [];
  const waiters = new Set<() => void>();
  call.on('data', (e: JobEvent) => {
    events.push(e);
    for (const w of waiters) w();
  });
  const ended = new Promise<{ code: grpc.status; details: string }>((resolve) => call.on('status', (s: grpc.StatusObject) => resolve({ code: s.code, details: s.details })));
  call.on('error', () => undefined);
  defer(t, () => {
    call.cancel();
    client.close();
  });
  const next = (match: (e: JobEvent) => boolean, what: string, timeoutMs = 20_000) =>
    new Promise<JobEvent>((resolve, reject) => {
      const look = () => {
        const found = events.find(match);
        if (!found) return;
        waiters.delete(look);
        clearTimeout(timer);
        resolve(found);
      };
      const timer = setTimeout(() => {
        waiters.delete(look);
        reject(new Error(`WatchJobs did not send ${what} within ${timeoutMs} ms; it sent ${JSON.stringify(events)}`));
      }, timeoutMs);
      waiters.add(look);
      look();
    });
  const watcher = { events, call, next, ended };
  const first = await next(() => true, 'its first message');
  assert.deepEqual(first, { jobId: '', state: 'JOB_STATE_UNSPECIFIED', phase1Done: false }, 'the first message is the marker');
  return watcher;
}

/** StartJob to beta/bronze. */
function startJob(client: SimClient, jobId: string, shareId: string, extra: object = {}): Promise<unknown> {
  return client.call('StartJob', { jobId, shareId, destBackend: 'beta', destPool: 'bronze', writable: true, nondisruptive: true, ...extra });
}

const of = (jobId: string, state: string) => (e: JobEvent) => e.jobId === jobId && e.state === `JOB_STATE_${state}`;

describe('WatchJobs', () => {
  test('streams phase 1 done, then the cutover to DONE, as they happen', async (t) => {
    const { client, address } = await serveArray(t);
    const watcher = await watchJobs(t, address);
    await client.call('CreateShare', { shareId: 's1', backend: 'alpha', pool: 'gold', sizeBytes: 256 * KiB });
    await startJob(client, 'j1', 's1');
    const synced = await watcher.next(of('j1', 'SYNCING'), 'j1 SYNCING');
    assert.equal(synced.phase1Done, true);
    await client.call('CutoverJob', { jobId: 'j1' });
    const done = await watcher.next(of('j1', 'DONE'), 'j1 DONE');
    assert.equal(done.phase1Done, true);
    const states = watcher.events.filter((e) => e.jobId === 'j1').map((e) => e.state);
    // CUTTING_OVER may be coalesced into DONE; nothing else may appear, nor out of order.
    assert.ok(['SYNCING,CUTTING_OVER,DONE', 'SYNCING,DONE'].includes(states.map((s) => s.replace('JOB_STATE_', '')).join(',')), states.join(', '));
  });

  test('streams a cutover that rolls back (CUTTING_OVER, then SYNCING again)', async (t) => {
    const { client, address } = await serveArray(t);
    await client.call('CreateShare', { shareId: 's1', backend: 'alpha', pool: 'gold', sizeBytes: 256 * KiB });
    await startJob(client, 'j1', 's1', { maxDowntimeMs: 100 });
    await phase1Done(client, 'j1');
    const watcher = await watchJobs(t, address);
    await client.call('SetFaults', { cutoverDelayMs: 600 });
    const answered = await client.call('CutoverJob', { jobId: 'j1', waitMs: 1 });
    assert.equal(answered.state, 'JOB_STATE_CUTTING_OVER', 'CutoverJob answered while the cutover runs on');
    await watcher.next(of('j1', 'CUTTING_OVER'), 'j1 CUTTING_OVER');
    await watcher.next((e) => e.jobId === 'j1' && e.state === 'JOB_STATE_SYNCING' && watcher.events.indexOf(e) > watcher.events.findIndex(of('j1', 'CUTTING_OVER')), 'j1 back in SYNCING');
    assert.notEqual((await client.call('GetJob', { jobId: 'j1' })).lastAbortReason, '');
  });

  test('streams a cancel, and a job that fails on the array', async (t) => {
    const { array, client, address, dataDir } = await serveArray(t);
    await client.call('CreateShare', { shareId: 's1', backend: 'alpha', pool: 'gold', sizeBytes: 256 * KiB });
    await client.call('CreateShare', { shareId: 's2', backend: 'alpha', pool: 'gold', sizeBytes: 256 * KiB });
    const watcher = await watchJobs(t, address);
    await client.call('SetFaults', { stallCopy: true });
    await startJob(client, 'j1', 's1');
    await startJob(client, 'j2', 's2');
    await client.call('CancelJob', { jobId: 'j1' });
    await watcher.next(of('j1', 'CANCELLED'), 'j1 CANCELLED');

    // The copy of j2 finds its source file gone: the job fails.
    await unlink(path.join(dataDir, 'shares', `${array.getShare('s2').fileId}.img`));
    await client.call('SetFaults', {});
    const failed = await watcher.next(of('j2', 'FAILED'), 'j2 FAILED');
    assert.equal(failed.phase1Done, false);
    assert.equal((await client.call('GetJob', { jobId: 'j2' })).state, 'JOB_STATE_FAILED');
  });

  test('with `backend` set, streams only the jobs whose source is on it; an unknown backend is NOT_FOUND', async (t) => {
    const { client, address } = await serveArray(t);
    await client.call('CreateShare', { shareId: 'a1', backend: 'alpha', pool: 'gold', sizeBytes: 64 * KiB });
    await client.call('CreateShare', { shareId: 'b1', backend: 'beta', pool: 'bronze', sizeBytes: 64 * KiB });
    const onBeta = await watchJobs(t, address, { backend: 'beta' });
    const onAll = await watchJobs(t, address);
    await startJob(client, 'ja', 'a1');
    await client.call('StartJob', { jobId: 'jb', shareId: 'b1', destBackend: 'alpha', destPool: 'silver' });
    await onBeta.next(of('jb', 'SYNCING'), 'jb SYNCING');
    await onAll.next(of('jb', 'SYNCING'), 'jb SYNCING');
    await onAll.next(of('ja', 'SYNCING'), 'ja SYNCING');
    assert.deepEqual([...new Set(onBeta.events.slice(1).map((e) => e.jobId))], ['jb'], 'nothing of alpha’s job on the beta watch');

    const unknown = await watchJobsRaw(address, { backend: 'omega' });
    assert.equal(unknown.code, grpc.status.NOT_FOUND);
    assert.match(unknown.details, /backend omega not found/);
  });

  test('ends with OK when the array closes', async (t) => {
    const served = await serveArray(t);
    const watcher = await watchJobs(t, served.address);
    await served.close();
    const end = await Promise.race([watcher.ended, new Promise<null>((r) => setTimeout(() => r(null), 5000))]);
    assert.deepEqual(end && end.code, grpc.status.OK, `the stream ended ${JSON.stringify(end)}`);
  });
});

describe('a slow WatchJobs reader', () => {
  test('costs one entry per job, not per change: a watch nobody reads holds each changed job once, and then gives its latest state', async (t) => {
    const { array, client } = await serveArray(t);
    const watch = array.jobs.watch('');
    defer(t, () => array.jobs.unwatch(watch));
    const count = 20;
    for (let i = 0; i < count; i++) await client.call('CreateShare', { shareId: `s${i}`, backend: 'alpha', pool: 'gold', sizeBytes: 64 * KiB });
    for (let i = 0; i < count; i++) await startJob(client, `j${i}`, `s${i}`);
    for (let i = 0; i < count; i++) await phase1Done(client, `j${i}`);
    for (let i = 0; i < count; i++) await client.call('CancelJob', { jobId: `j${i}` });
    // 40 changes (phase 1 done, cancelled) of 20 jobs.
    assert.equal(watch.backlog, count, 'one entry per job');
    const seen = new Map<string, string>();
    for (let i = 0; i < count; i++) {
      const rec = await watch.next();
      assert.ok(rec);
      assert.ok(!seen.has(rec.jobId), `${rec.jobId} is given once`);
      seen.set(rec.jobId, rec.state);
    }
    assert.deepEqual([...new Set(seen.values())], ['CANCELLED'], 'each job with its latest state');
    assert.equal(watch.backlog, 0);
  });

  test('over gRPC, a reader that stops reading holds the array to one message per job: the changes of a job made while it is stalled arrive as one, with the latest state', async (t) => {
    const { client, address } = await serveArray(t);
    // A raw HTTP/2 client with a 64-byte stream window that stops reading: once its own buffer (16 KiB) is full it
    // grants no more window, and the array's writes back up. Long job ids make each message ~130 bytes.
    const session = http2.connect(`http://${address}`, { settings: { initialWindowSize: 64 } });
    defer(t, () => session.destroy());
    const stream = session.request({ ':method': 'POST', ':path': `/${SIMULATOR_SERVICE}/WatchJobs`, 'content-type': 'application/grpc', te: 'trailers' });
    stream.end(Buffer.from([0, 0, 0, 0, 0]));
    const chunks: Buffer[] = [];
    stream.on('data', (d: Buffer) => chunks.push(d));
    await once(stream, 'data');
    stream.pause();
    const id = (group: string, i: number) => `${group}-${String(i).padStart(3, '0')}-${'x'.repeat(110)}`;
    let shares = 0;
    const started = async (group: string, count: number) => {
      const ids = Array.from({ length: count }, (_, i) => id(group, i));
      for (const jobId of ids) {
        await client.call('CreateShare', { shareId: `s${shares}`, backend: 'alpha', pool: 'gold', sizeBytes: 64 * KiB });
        await startJob(client, jobId, `s${shares++}`);
      }
      for (const jobId of ids) await phase1Done(client, jobId);
      return ids;
    };
    // 200 jobs' phase 1 done: more than the client's buffer takes, so the array is stalled after them.
    await started('fill', 200);
    await waitUntil(() => stream.readableLength >= 16 * KiB, 'the client buffered 16 KiB and stopped granting window');
    // While it is stalled, 50 more jobs each reach phase 1 done and are cancelled: two changes each.
    const late = await started('late', 50);
    for (const jobId of late) await client.call('CancelJob', { jobId });

    stream.resume();
    const events = await readEvents(chunks, stream, (all) => late.every((jobId) => all.some((e) => e.jobId === jobId && e.state === 'JOB_STATE_CANCELLED')));
    const lateEvents = events.filter((e) => late.includes(e.jobId));
    assert.equal(lateEvents.length, late.length, `one message per late job, not one per change (${lateEvents.length} for ${2 * late.length} changes)`);
    assert.ok(lateEvents.every((e) => e.state === 'JOB_STATE_CANCELLED' && e.phase1Done), 'each with its latest state');
  });
});

/** Polls `cond` every 20 ms for at most 20 s. */
async function waitUntil(cond: () => boolean, what: string): Promise<void> {
  const until = Date.now() + 20_000;
  while (!cond()) {
    if (Date.now() > until) assert.fail(`not within 20 s: ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Decodes the JobEvents of a raw WatchJobs response (gRPC length-prefixed messages) until `enough` says so. */
async function readEvents(chunks: Buffer[], stream: http2.ClientHttp2Stream, enough: (events: JobEvent[]) => boolean): Promise<JobEvent[]> {
  const decode = simulatorServiceDefinition().WatchJobs!.responseDeserialize;
  const until = Date.now() + 20_000;
  for (;;) {
    const bytes = Buffer.concat(chunks);
    const events: JobEvent[] = [];
    for (let at = 0; at + 5 <= bytes.length; ) {
      const length = bytes.readUInt32BE(at + 1);
      if (at + 5 + length > bytes.length) break;
      events.push(decode(bytes.subarray(at + 5, at + 5 + length)) as JobEvent);
      at += 5 + length;
    }
    if (enough(events)) return events;
    if (Date.now() > until) assert.fail(`WatchJobs did not send the expected events within 20 s; ${events.length} read`);
    await Promise.race([once(stream, 'data'), new Promise((r) => setTimeout(r, 100))]);
  }
}

/** Opens WatchJobs and resolves with how it ended (for a call that fails at once). */
function watchJobsRaw(address: string, request: object): Promise<{ code: grpc.status; details: string }> {
  const Client = clientConstructor(SIMULATOR_SERVICE);
  const client = new Client(address, grpc.credentials.createInsecure());
  const call = (client as unknown as { WatchJobs(req: object): grpc.ClientReadableStream<JobEvent> }).WatchJobs(request);
  call.on('data', () => undefined);
  call.on('error', () => undefined);
  return new Promise((resolve) =>
    call.on('status', (s: grpc.StatusObject) => {
      client.close();
      resolve({ code: s.code, details: s.details });
    }),
  );
}
