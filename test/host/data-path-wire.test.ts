/**
 * The host data path over ferry.driver.v1: one in-memory driver
 * (test/fixtures/plugins/memory-data) used as a module and as a process
 * (the bridge, host/serve-module.mjs, under a real Supervisor) through a
 * RemoteDriver, held to the same answers; and the wire's own checks, both
 * ends, against a hand-made server or client. Real gRPC, real processes.
 */
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test, type TestContext } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { crc32c } from '@node-rs/crc32';
import { FerryError, type DataDestination, type DataSource, type Driver, type ExtentData, type MigrationSpec } from '../../plugins/api/index.ts';
import type { DriverServiceClient } from '../../build/types/ferry/driver/v1/DriverService.ts';
import { DEFAULT_DEADLINES } from '../../host/deadlines.ts';
import { DRIVER_SERVICE, specToWire } from '../../host/driver-wire.ts';
import { EndpointLink } from '../../host/endpoint.ts';
import { RemoteDriver } from '../../host/remote-driver.ts';
import { bridgeHandlers } from '../../host/serve-module.ts';
import { Supervisor } from '../../host/supervisor.ts';
import { bind, clientConstructor, serviceDefinition } from '../../lib/rpc.ts';
import { createDriver, seededBytes } from '../fixtures/plugins/memory-data/index.ts';
import { LogTap } from '../daemon/process-helpers.ts';
import { ROOT, tempDir } from '../helpers.ts';

const MiB = 1024 * 1024;
const FIXTURE = join(ROOT, 'test/fixtures/plugins/memory-data');
const SHARE_BYTES = 9 * MiB + 12_345;

const migration: MigrationSpec = {
  id: 'm1',
  source: { backend: 'mem', shareId: 'share-1' },
  destination: { backend: 'mem', pool: 'mem' },
  writable: true,
  nondisruptive: false,
  preserveMetadata: true,
  preserveSnapshots: false,
  newShareType: '',
  maxBandwidthBytesPerSec: 0,
  maxDowntimeMs: 1_000,
  cutoverAction: 'abort',
  dataPath: 'host',
};

/** What every data-path call takes, with a signal of its own unless given one. */
const base = (signal = new AbortController().signal) => ({ migration, signal, log: new LogTap().log });

const isStoppedEarly = (l: Record<string, unknown>) => l.msg === 'readExtents stopped early';
const isStarted = (l: Record<string, unknown>) => l.msg === 'driver process started';

/** The driver's settings files: which halves it serves, and writes to its share. */
function settings(t: TestContext, features = { dataSource: true, dataDestination: true }) {
  const dir = tempDir(t, 'ferry-dp-');
  const featuresFile = join(dir, 'features.json');
  const writesFile = join(dir, 'writes.json');
  writeFileSync(featuresFile, JSON.stringify(features));
  writeFileSync(writesFile, '[]');
  return { dir, featuresFile, writesFile, options: { featuresFile, writesFile, shareBytes: SHARE_BYTES, pieceBytes: 256 * 1024 } as Record<string, unknown> };
}

/** The fixture as a process behind the bridge, through a RemoteDriver. */
async function processDriver(t: TestContext, dataDir: string, options: Record<string, unknown>, tap: LogTap) {
  const supervisor = new Supervisor({
    plugin: 'memory-data',
    dir: FIXTURE,
    command: [process.execPath, join(ROOT, 'host/serve-module.mjs'), FIXTURE],
    dataDir,
    readyTimeoutMs: 20_000,
    livenessMs: 500,
    livenessTimeoutMs: 5_000,
    backends: ['mem'],
    log: tap.log,
  });
  t.after(() => supervisor.stop(2_000));
  supervisor.start();
  await supervisor.ready(20_000);
  const remote = new RemoteDriver(supervisor, 'mem', options, 'unix:/nowhere', DEFAULT_DEADLINES, 20_000, tap.log);
  await remote.open();
  return { driver: remote, supervisor };
}

/** The fixture as the test sees it: in-process, or as a process through the remote driver. */
async function fixture(t: TestContext, kind: 'module' | 'process', features?: { dataSource: boolean; dataDestination: boolean }) {
  const s = settings(t, features);
  const tap = new LogTap();
  const driver: Driver = kind === 'module' ? await createDriver({ backend: 'mem', options: s.options, daemonAddress: '', log: tap.log }) : (await processDriver(t, s.dir, s.options, tap)).driver;
  return { ...s, tap, driver, source: driver.dataSource!, destination: driver.dataDestination! };
}

/** Every piece of a read, checked against its CRC-32C as it comes. */
async function readAll(source: DataSource, snapshotId: string, extents: { offset: number; length: number }[]): Promise<ExtentData[]> {
  const pieces: ExtentData[] = [];
  for await (const piece of source.readExtents({ ...base(), snapshotId, extents })) {
    assert.equal(crc32c(piece.data), piece.crc32c, `piece at ${piece.offset}`);
    pieces.push({ ...piece, data: Buffer.from(piece.data) });
  }
  return pieces;
}

async function* listAll(source: DataSource, baseSnapshotId: string, snapshotId: string) {
  for (let startOffset = 0; startOffset < SHARE_BYTES; ) {
    const page = await source.listChangedExtents({ ...base(), baseSnapshotId, snapshotId, startOffset, maxExtents: 3 });
    yield* page.extents;
    assert.ok(page.nextOffset > startOffset, 'each page moves on');
    startOffset = page.nextOffset;
  }
}

const rejectsWith = (code: string) => (err: unknown) => {
  assert.ok(err instanceof FerryError, `a FerryError, got ${String(err)}`);
  assert.equal(err.code, code, err.message);
  return true;
};

for (const kind of ['module', 'process'] as const) {
  describe(`the host data path of a ${kind} driver`, () => {
    test('offers dataSource and dataDestination, and checkCompatibility says destinationUnreachable only when the driver does', async (t) => {
      const { driver } = await fixture(t, kind);
      assert.ok(driver.dataSource && driver.dataDestination);
      const compatibility = await driver.checkCompatibility({ ...base(), migration: { ...migration, dataPath: 'driver' } });
      assert.equal('destinationUnreachable' in compatibility, false);
    });

    test('copies a 9 MiB share snapshot to a target in many pieces, the target digests matching the source CRCs, and promotes it', async (t) => {
      const { source, destination } = await fixture(t, kind);
      const snapshot = await source.createSnapshot({ ...base(), snapshotId: 'm1-s1' });
      assert.deepEqual(snapshot, { sizeBytes: SHARE_BYTES, metadata: { owner: 'memory' }, shareType: 'memory', blockSizeBytes: 64 * 1024 });
      // Repeated, it answers again rather than taking another.
      assert.deepEqual(await source.createSnapshot({ ...base(), snapshotId: 'm1-s1' }), snapshot);
      const extents = [];
      for await (const e of listAll(source, '', 'm1-s1')) extents.push(e);
      assert.equal(extents.reduce((n, e) => n + e.length, 0), SHARE_BYTES);

      const pieces = await readAll(source, 'm1-s1', extents);
      assert.ok(pieces.length >= 36, `${pieces.length} pieces`);
      const expected = seededBytes(SHARE_BYTES);
      assert.ok(Buffer.concat(pieces.map((p) => p.data)).equals(expected), 'the bytes read are the share');

      assert.deepEqual(await destination.createTarget({ ...base(), targetId: 'm1-t', sizeBytes: SHARE_BYTES, metadata: snapshot.metadata, shareType: '' }), { promoted: false });
      // Straight from the read into the write: the 9 MiB streams through both ends.
      const { writtenBytes } = await destination.writeExtents({ ...base(), targetId: 'm1-t', data: source.readExtents({ ...base(), snapshotId: 'm1-s1', extents }) });
      assert.equal(writtenBytes, SHARE_BYTES);
      const ranges = [{ offset: 0, length: SHARE_BYTES }, { offset: 5 * MiB + 7, length: 3 * MiB }];
      const { digests } = await destination.flushTarget({ ...base(), targetId: 'm1-t', ranges });
      assert.deepEqual(digests, ranges.map((r) => ({ ...r, crc32c: crc32c(expected.subarray(r.offset, r.offset + r.length)) })));

      await destination.promoteTarget({ ...base(), targetId: 'm1-t' });
      await destination.promoteTarget({ ...base(), targetId: 'm1-t' });
      assert.deepEqual(await destination.createTarget({ ...base(), targetId: 'm1-t', sizeBytes: SHARE_BYTES, metadata: {}, shareType: '' }), { promoted: true });
      await assert.rejects(destination.discardTarget({ ...base(), targetId: 'm1-t' }), rejectsWith('FAILED_PRECONDITION'));
    });

    test('lists the blocks written between two snapshots, freezes, releases, deletes snapshots idempotently and retires the source', async (t) => {
      const { source, writesFile } = await fixture(t, kind);
      await source.createSnapshot({ ...base(), snapshotId: 'm1-s1' });
      writeFileSync(writesFile, JSON.stringify([{ offset: 3 * MiB + 10, length: 100_000, fill: 7 }]));
      await source.freezeWrites({ ...base(), leaseMs: 60_000 });
      // Frozen: the write waits, so the second snapshot is what the first was.
      await source.createSnapshot({ ...base(), snapshotId: 'm1-s2' });
      assert.deepEqual((await source.listChangedExtents({ ...base(), baseSnapshotId: 'm1-s1', snapshotId: 'm1-s2', startOffset: 0, maxExtents: 10 })).extents, []);
      await source.releaseWrites({ ...base(), committed: false });
      await source.createSnapshot({ ...base(), snapshotId: 'm1-s3' });
      const changed = (await source.listChangedExtents({ ...base(), baseSnapshotId: 'm1-s1', snapshotId: 'm1-s3', startOffset: 0, maxExtents: 10 })).extents;
      assert.deepEqual(changed, [{ offset: 3 * MiB, length: 2 * 64 * 1024 }]);
      const [piece] = await readAll(source, 'm1-s3', [{ offset: 3 * MiB + 10, length: 5 }]);
      assert.deepEqual([...piece!.data], [7, 7, 7, 7, 7]);

      await source.deleteSnapshot({ ...base(), snapshotId: 'm1-s2' });
      await source.deleteSnapshot({ ...base(), snapshotId: 'm1-s2' });
      await assert.rejects(source.listChangedExtents({ ...base(), baseSnapshotId: 'm1-s2', snapshotId: 'm1-s3', startOffset: 0, maxExtents: 10 }), rejectsWith('NOT_FOUND'));
      await source.retireSource(base());
      await source.retireSource(base());
      await assert.rejects(source.createSnapshot({ ...base(), snapshotId: 'm1-s4' }), rejectsWith('NOT_FOUND'));
    });

    test('reading an unknown snapshot fails NOT_FOUND', async (t) => {
      const { source } = await fixture(t, kind);
      await assert.rejects(readAll(source, 'm1-s9', [{ offset: 0, length: 10 }]), rejectsWith('NOT_FOUND'));
      await assert.rejects(source.listChangedExtents({ ...base(), baseSnapshotId: '', snapshotId: 'm1-s9', startOffset: 0, maxExtents: 1 }), rejectsWith('NOT_FOUND'));
    });

    test('breaking out of a read stops the driver reading, seen at the driver', async (t) => {
      const { source, tap } = await fixture(t, kind);
      await source.createSnapshot({ ...base(), snapshotId: 'm1-s1' });
      let seen = 0;
      for await (const piece of source.readExtents({ ...base(), snapshotId: 'm1-s1', extents: [{ offset: 0, length: SHARE_BYTES }] })) {
        assert.equal(piece.offset, seen * 256 * 1024);
        if (++seen === 2) break;
      }
      const stopped = await tap.next(isStoppedEarly);
      assert.equal(stopped.snapshotId, 'm1-s1');
      assert.ok((stopped.sent as number) < 36, `the driver sent ${String(stopped.sent)} of 37 pieces`);
    });

    test("aborting a read's signal ends it with the signal's reason and stops the driver", async (t) => {
      const { source, tap } = await fixture(t, kind);
      await source.createSnapshot({ ...base(), snapshotId: 'm1-s1' });
      const controller = new AbortController();
      const reason = new FerryError('DEADLINE_EXCEEDED', 'the mover gave up');
      await assert.rejects(
        (async () => {
          for await (const _ of source.readExtents({ ...base(controller.signal), snapshotId: 'm1-s1', extents: [{ offset: 0, length: SHARE_BYTES }] })) controller.abort(reason);
        })(),
        (err) => err === reason,
      );
      await tap.next(isStoppedEarly);
    });

    test('a piece whose CRC-32C does not match is refused DATA_LOSS, and nothing of it is written', async (t) => {
      const { destination } = await fixture(t, kind);
      await destination.createTarget({ ...base(), targetId: 'm1-t', sizeBytes: MiB, metadata: {}, shareType: '' });
      const good = Buffer.alloc(1000, 1);
      const bad = Buffer.alloc(1000, 2);
      async function* pieces() {
        yield { offset: 0, data: good, crc32c: crc32c(good) };
        yield { offset: 1000, data: bad, crc32c: crc32c(bad) ^ 1 };
      }
      await assert.rejects(destination.writeExtents({ ...base(), targetId: 'm1-t', data: pieces() }), rejectsWith('DATA_LOSS'));
      const { digests } = await destination.flushTarget({ ...base(), targetId: 'm1-t', ranges: [{ offset: 0, length: 1000 }, { offset: 1000, length: 1000 }] });
      assert.deepEqual(digests.map((d) => d.crc32c), [crc32c(good), crc32c(Buffer.alloc(1000))]);
      await destination.discardTarget({ ...base(), targetId: 'm1-t' });
      await destination.discardTarget({ ...base(), targetId: 'm1-t' });
      await assert.rejects(destination.flushTarget({ ...base(), targetId: 'm1-t', ranges: [{ offset: 0, length: 1 }] }), rejectsWith('NOT_FOUND'));
    });

    test('a driver without the data path has neither member', async (t) => {
      const { driver } = await fixture(t, kind, { dataSource: false, dataDestination: false });
      assert.equal(driver.dataSource, undefined);
      assert.equal(driver.dataDestination, undefined);
    });
  });
}

describe('the host data path of a process driver, on the wire', () => {
  test('a backend whose driver lacks the members answers UNIMPLEMENTED to each data-path RPC, and the remote driver offers neither', async (t) => {
    const s = settings(t, { dataSource: false, dataDestination: true });
    const tap = new LogTap();
    const { driver, supervisor } = await processDriver(t, s.dir, s.options, tap);
    assert.equal(driver.dataSource, undefined);
    assert.ok(driver.dataDestination);
    const client = supervisor.client();
    const err = await new Promise<grpc.ServiceError>((resolve) =>
      client.CreateSnapshot({ backend: 'mem', migration: specToWire(migration), snapshotId: 'm1-s1' }, (e) => resolve(e!)),
    );
    assert.equal(err.code, grpc.status.UNIMPLEMENTED);
    assert.match(err.details, /backend mem does not serve data_source/);
  });

  test('a driver restarted as a version without the data path is judged by its new answer: the members go, and a held one is UNIMPLEMENTED', async (t) => {
    const s = settings(t);
    const tap = new LogTap();
    const { driver } = await processDriver(t, s.dir, s.options, tap);
    const held = driver.dataSource!;
    await held.createSnapshot({ ...base(), snapshotId: 'm1-s1' });
    writeFileSync(s.featuresFile, JSON.stringify({ dataSource: false, dataDestination: false }));
    const first = tap.lines.filter(isStarted).at(-1)!;
    const mark = tap.lines.length;
    process.kill(first.pid as number, 'SIGKILL');
    await tap.next((l) => l.msg === 'driver process ready' && l.pid !== first.pid, mark);
    // The next call opens the backend again, and learns what the new process serves.
    await driver.describe({ signal: new AbortController().signal });
    assert.equal(driver.dataSource, undefined);
    assert.equal(driver.dataDestination, undefined);
    // Refused by ferryd's side, which knows from the new answer, without asking the driver.
    await assert.rejects(held.createSnapshot({ ...base(), snapshotId: 'm1-s1' }), (err) => rejectsWith('UNIMPLEMENTED')(err) && /no longer offers it/.test((err as Error).message));
  });
});

/** The bridge over the fixture in this process on 127.0.0.1, some handlers replaced; and a remote driver and a raw client to it. */
async function handMadeServer(t: TestContext, options: Record<string, unknown>, replace: grpc.UntypedServiceImplementation = {}) {
  const tap = new LogTap();
  const server = new grpc.Server();
  server.addService(serviceDefinition(DRIVER_SERVICE), { ...bridgeHandlers('memory-data', '1.0.0', createDriver, tap.log), ...replace });
  const address = await bind(server, '127.0.0.1:0');
  const link = new EndpointLink(address, 'memory-data');
  const client = new (clientConstructor(DRIVER_SERVICE))(address, grpc.credentials.createInsecure()) as unknown as DriverServiceClient;
  t.after(() => {
    link.close();
    client.close();
    server.forceShutdown();
  });
  await link.ready(10_000);
  const driver = new RemoteDriver(link, 'mem', options, '', DEFAULT_DEADLINES, 10_000, tap.log);
  await driver.open();
  return { driver, client, tap };
}

/** A unary call's error, from a raw client. */
function failureOf(fn: (cb: (err: grpc.ServiceError | null) => void) => void): Promise<grpc.ServiceError> {
  return new Promise((resolve, reject) => fn((err) => (err ? resolve(err) : reject(new Error('the call succeeded')))));
}

describe('the host data path on the wire, against a hand-made peer', () => {
  const head = { backend: 'mem', migration: specToWire(migration) };

  test('destination_unreachable true comes through as destinationUnreachable true', async (t) => {
    const { driver } = await handMadeServer(t, { unreachable: true });
    assert.equal((await driver.checkCompatibility({ ...base(), migration: { ...migration, dataPath: 'driver' } })).destinationUnreachable, true);
  });

  const scripts: { name: string; extents: { offset: number; length: number }[]; pieces: { offset: number; length: number }[]; problem: RegExp }[] = [
    { name: 'a piece that skips ahead', extents: [{ offset: 0, length: 100 }], pieces: [{ offset: 0, length: 10 }, { offset: 20, length: 10 }], problem: /offset 20 where 10 was next/ },
    { name: 'a piece past its extent', extents: [{ offset: 0, length: 100 }, { offset: 500, length: 10 }], pieces: [{ offset: 0, length: 101 }], problem: /runs past the end of extent 0/ },
    { name: 'a piece of more than 1 MiB', extents: [{ offset: 0, length: 2 * MiB }], pieces: [{ offset: 0, length: MiB + 1 }], problem: /data must be 1 to 1048576 bytes, got 1048577/ },
    { name: 'a stream that ends short', extents: [{ offset: 0, length: 100 }, { offset: 200, length: 50 }], pieces: [{ offset: 0, length: 100 }], problem: /too little: the stream ended at offset 200 of extent 1 of 2/ },
  ];
  for (const script of scripts) {
    test(`a read answering ${script.name} fails DRIVER_ERROR saying so`, async (t) => {
      const ReadExtents = (call: grpc.ServerWritableStream<unknown, unknown>) => {
        for (const p of script.pieces) call.write({ offset: p.offset, data: Buffer.alloc(p.length, 1), crc32c: crc32c(Buffer.alloc(p.length, 1)) });
        call.end();
      };
      const { driver } = await handMadeServer(t, {}, { ReadExtents });
      await assert.rejects(readAll(driver.dataSource!, 'm1-s1', script.extents), (err) => {
        rejectsWith('DRIVER_ERROR')(err);
        assert.match((err as Error).message, script.problem);
        return true;
      });
    });
  }

  test('the bridge refuses a request missing a REQUIRED field, or with an empty extent or a piece over 1 MiB, INVALID_ARGUMENT naming it', async (t) => {
    const { client, driver } = await handMadeServer(t, {});
    // The pieces are checked as the driver reads them: it needs its target first.
    await driver.dataDestination!.createTarget({ ...base(), targetId: 't', sizeBytes: 2 * MiB, metadata: {}, shareType: '' });
    const cases: [Promise<grpc.ServiceError>, RegExp][] = [
      [failureOf((cb) => client.CreateSnapshot({ ...head, snapshotId: '' }, cb)), /CreateSnapshot: snapshot_id is REQUIRED/],
      [failureOf((cb) => client.CreateSnapshot({ backend: 'mem', snapshotId: 's' }, cb)), /CreateSnapshot: migration is REQUIRED/],
      [failureOf((cb) => client.ListChangedExtents({ ...head, snapshotId: 's', maxExtents: 0 }, cb)), /max_extents is REQUIRED and must be greater than 0/],
      [failureOf((cb) => client.FreezeWrites({ ...head, leaseMs: 0 }, cb)), /lease_ms is REQUIRED/],
      [failureOf((cb) => client.CreateTarget({ ...head, targetId: 't', sizeBytes: 0 }, cb)), /size_bytes is REQUIRED/],
      [failureOf((cb) => client.FlushTarget({ ...head, targetId: 't', ranges: [] }, cb)), /ranges is REQUIRED: at least one/],
      [failureOf((cb) => client.PromoteTarget({ ...head, targetId: '' }, cb)), /target_id is REQUIRED/],
      [streamFailure(client.ReadExtents({ ...head, snapshotId: 's', extents: [{ offset: 0, length: 0 }] })), /extents\[0\]\.length must be greater than 0/],
      [streamFailure(client.ReadExtents({ ...head, snapshotId: 's', extents: [] })), /extents is REQUIRED: at least one/],
      [
        failureOf((cb) => {
          const call = client.WriteExtents(cb);
          call.write({ ...head, targetId: 't' });
          call.write({ extent: { offset: 0, data: Buffer.alloc(MiB + 1), crc32c: 0 } });
          call.end();
        }),
        /WriteExtents: message 1: extent.data must be 1 to 1048576 bytes, got 1048577/,
      ],
    ];
    for (const [failure, message] of cases) {
      const err = await failure;
      assert.equal(err.code, grpc.status.INVALID_ARGUMENT, err.details);
      assert.match(err.details, message);
    }
  });

  test('writeExtents pulls the next piece only as the stream has room: never far ahead of what the driver has read', async (t) => {
    const total = 2_000;
    let produced = 0;
    let lead = 0;
    const WriteExtents = (call: grpc.ServerReadableStream<{ extent: unknown }, unknown>, cb: grpc.sendUnaryData<unknown>) => {
      let received = 0;
      call.on('data', (m: { extent: unknown }) => {
        if (m.extent) received++;
        lead = Math.max(lead, produced - received);
      });
      call.on('end', () => cb(null, { writtenBytes: received }));
    };
    const { driver } = await handMadeServer(t, {}, { WriteExtents });
    const data = Buffer.alloc(16 * 1024, 3);
    async function* pieces() {
      for (; produced < total; ) {
        const offset = produced * data.length;
        produced++;
        yield { offset, data, crc32c: 0 };
      }
    }
    const { writtenBytes } = await driver.dataDestination!.writeExtents({ ...base(), targetId: 'm1-t', data: pieces() });
    assert.equal(writtenBytes, total);
    assert.ok(lead < total / 10, `the writer ran ${lead} pieces ahead of the reader`);
  });
});

/** A server stream's error. */
function streamFailure(stream: grpc.ClientReadableStream<unknown>): Promise<grpc.ServiceError> {
  return new Promise((resolve, reject) => {
    stream.on('data', () => {});
    stream.on('error', (err: grpc.ServiceError) => resolve(err));
    stream.on('end', () => reject(new Error('the stream ended without an error')));
  });
}
