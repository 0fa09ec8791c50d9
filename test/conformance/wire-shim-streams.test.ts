/**
 * The wire-level pass-through (plugins/conformance/wire-shim.ts) relays the
 * host data path's two streams between ferryd and a driver process as it
 * relays unary calls: ReadExtents (server-streaming) and WriteExtents
 * (client-streaming), message by message with backpressure, the caller's
 * metadata and deadline, the driver's headers, status and trailers, and a
 * cancellation on either side ending the call on the other. The driver is a
 * hand-made peer (fixtures/stream-peer/peer.ts) that reports what it saw.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { after, before, describe, test } from 'node:test';
import { crc32c } from '@node-rs/crc32';
import * as grpc from '@grpc/grpc-js';
import { DRIVER_SERVICE } from '../../host/driver-wire.ts';
import { serviceDefinition } from '../../lib/api.ts';
import { ROOT, tempDir } from '../helpers.ts';

const methods = serviceDefinition(DRIVER_SERVICE);
const READ = methods.ReadExtents!;
const WRITE = methods.WriteExtents!;
const PIECE = 256 * 1024;

interface Piece {
  offset: number;
  data: Buffer;
  crc32c: number;
}

/** The shim started as ferryd starts a process driver's command, the peer behind it; its stdout lines as they come. */
class Relay {
  readonly lines: string[] = [];
  private readonly waiting: { match: string; resolve: () => void }[] = [];
  client!: grpc.Client;

  constructor(readonly child: ChildProcess) {
    createInterface({ input: child.stdout! }).on('line', (line) => {
      this.lines.push(line);
      for (const w of this.waiting.filter((x) => x.match === line)) w.resolve();
    });
  }

  /** Resolves once the peer has printed `line` (at once if it has). */
  line(line: string): Promise<void> {
    if (this.lines.includes(line)) return Promise.resolve();
    return new Promise((resolve) => this.waiting.push({ match: line, resolve }));
  }
}

let relay: Relay;

before(async () => {
  const dir = tempDir({ after });
  const peerDir = join(ROOT, 'test/conformance/fixtures/stream-peer');
  const listen = `unix:${join(dir, 'shim.sock')}`;
  // Nobody listens at the control URL: the shim then relays as a plain pipe, which is what these tests look at.
  const args = [join(ROOT, 'plugins/conformance/wire-shim.mjs'), '--control', 'http://127.0.0.1:9', '--dir', peerDir, '--', process.execPath, '--import', 'tsx', join(peerDir, 'peer.ts')];
  const child = spawn(process.execPath, args, { env: { ...process.env, FERRY_DRIVER_LISTEN: listen }, stdio: ['pipe', 'pipe', 'inherit'] });
  relay = new Relay(child);
  await relay.line('peer listening');
  relay.client = new grpc.Client(listen, grpc.credentials.createInsecure());
  await new Promise<void>((resolve, reject) => relay.client.waitForReady(Date.now() + 30_000, (err) => (err ? reject(err) : resolve())));
});

after(async () => {
  relay.client.close();
  relay.child.stdin!.end();
  if (relay.child.exitCode === null) await once(relay.child, 'exit');
});

function callerMetadata(): grpc.Metadata {
  const md = new grpc.Metadata();
  md.set('x-caller', 'ferryd');
  return md;
}

/** Reads a ReadExtents stream to its end: its pieces, headers, and status (rejects with the error status). */
function read(snapshotId: string, options: grpc.CallOptions = {}) {
  const stream = relay.client.makeServerStreamRequest(READ.path, READ.requestSerialize, READ.responseDeserialize, { snapshotId, extents: [{ offset: 0, length: 1 }] }, callerMetadata(), options);
  const pieces: Piece[] = [];
  const headers = new Promise<grpc.Metadata>((resolve) => stream.once('metadata', resolve));
  stream.on('data', (p: Piece) => pieces.push(p));
  const status = new Promise<grpc.StatusObject>((resolve) => stream.on('status', resolve));
  const end = new Promise<void>((resolve) => stream.once('end', resolve));
  stream.on('error', () => {});
  // Every piece delivered first: the status can come while some are still buffered.
  const ended = status.then(async (s) => {
    if (s.code === grpc.status.OK) await end;
    return s;
  });
  return { stream, pieces, headers, ended };
}

function write(targetId: string, pieces: Piece[], options: grpc.CallOptions = {}) {
  let answer!: (v: { err: grpc.ServiceError | null; value?: { writtenBytes: number } }) => void;
  const answered = new Promise<{ err: grpc.ServiceError | null; value?: { writtenBytes: number } }>((resolve) => (answer = resolve));
  const stream = relay.client.makeClientStreamRequest(WRITE.path, WRITE.requestSerialize, WRITE.responseDeserialize, callerMetadata(), options, (err, value) => answer({ err, value: value as { writtenBytes: number } | undefined }));
  const headers = new Promise<grpc.Metadata>((resolve) => stream.once('metadata', resolve));
  const status = new Promise<grpc.StatusObject>((resolve) => stream.on('status', resolve));
  stream.write({ backend: 'beta', targetId, extent: null });
  for (const p of pieces) stream.write({ extent: p });
  return { stream, answered, headers, status };
}

function piece(i: number, corrupt = false): Piece {
  const data = Buffer.alloc(PIECE, (i * 7) % 256);
  return { offset: i * PIECE, data, crc32c: corrupt ? crc32c(data) ^ 1 : crc32c(data) };
}

describe('the wire-level pass-through relays the host data path streams', () => {
  test('ReadExtents: every piece in order (16 MiB, more than either side buffers), the caller metadata and deadline, the headers, OK and the trailers', async () => {
    const r = read('many', { deadline: Date.now() + 60_000 });
    const status = await r.ended;
    assert.equal(status.code, grpc.status.OK, status.details);
    assert.equal(r.pieces.length, 64);
    for (const [i, p] of r.pieces.entries()) {
      assert.equal(p.offset, i * PIECE);
      assert.ok(p.data.equals(Buffer.alloc(PIECE, i % 256)), `piece ${i} arrived intact`);
      assert.equal(p.crc32c, crc32c(p.data));
    }
    assert.deepEqual(status.metadata.get('x-peer'), ['read-done']);
    const headers = await r.headers;
    assert.deepEqual(headers.get('x-peer-deadline'), ['set']);
    assert.deepEqual(headers.get('x-peer-caller'), ['ferryd']);
  });

  test('ReadExtents: a call without a deadline reaches the driver without one', async () => {
    const r = read('many');
    assert.equal((await r.ended).code, grpc.status.OK);
    assert.deepEqual((await r.headers).get('x-peer-deadline'), ['none']);
  });

  test("ReadExtents: the driver's error after some pieces reaches the caller after those pieces, with its code, message and trailers", async () => {
    const r = read('fail');
    const status = await r.ended;
    assert.equal(status.code, grpc.status.DATA_LOSS);
    assert.equal(status.details, 'piece 3 is damaged');
    assert.deepEqual(status.metadata.get('x-peer'), ['read-failed']);
    assert.equal(r.pieces.length, 2);
  });

  test("ReadExtents: the caller's cancellation cancels the driver's stream", async () => {
    const r = read('endless');
    await new Promise<void>((resolve) => r.stream.on('data', () => r.pieces.length >= 3 && resolve()));
    r.stream.cancel();
    await relay.line('ReadExtents cancelled');
    assert.equal((await r.ended).code, grpc.status.CANCELLED);
  });

  test('ReadExtents: a driver that cancels the call itself ends the caller\'s with CANCELLED', async () => {
    const r = read('cancel');
    const status = await r.ended;
    assert.equal(status.code, grpc.status.CANCELLED);
    assert.equal(status.details, 'the driver gave up');
  });

  test('WriteExtents: every piece reaches the driver (16 MiB), which answers the bytes with its headers and trailers', async () => {
    const pieces = Array.from({ length: 64 }, (_, i) => piece(i));
    const w = write('ok', pieces, { deadline: Date.now() + 60_000 });
    w.stream.end();
    const { err, value } = await w.answered;
    assert.equal(err, null);
    assert.equal(value?.writtenBytes, 64 * PIECE);
    assert.deepEqual((await w.status).metadata.get('x-peer'), ['write-done']);
    const headers = await w.headers;
    assert.deepEqual(headers.get('x-peer-deadline'), ['set']);
    assert.deepEqual(headers.get('x-peer-caller'), ['ferryd']);
  });

  test("WriteExtents: the driver's refusal mid-stream reaches the caller at once, before the caller ended its stream", async () => {
    const w = write('checked', [piece(0), piece(1, true)]);
    const { err } = await w.answered;
    assert.equal(err?.code, grpc.status.DATA_LOSS);
    assert.equal(err?.details, `the piece at ${PIECE} does not match its CRC-32C`);
    assert.deepEqual(err?.metadata.get('x-peer'), ['write-refused']);
    w.stream.end();
  });

  test("WriteExtents: the caller's cancellation cancels the driver's call", async () => {
    const w = write('hang', [piece(0)]);
    await w.headers;
    w.stream.cancel();
    await relay.line('WriteExtents cancelled');
    assert.equal((await w.answered).err?.code, grpc.status.CANCELLED);
  });
});
