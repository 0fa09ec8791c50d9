/**
 * The kit's adapter over gRPC: RemoteAdapter against a real
 * ConformanceAdapter server (the simulator's TypeScript adapter served with
 * adapter-server.ts), the suite run through it, and the kit's own instance
 * of a process plugin's command, started and stopped as ferryd does.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { AdapterProcess } from '../../plugins/conformance/adapter-process.ts';
import { serveAdapter } from '../../plugins/conformance/adapter-server.ts';
import { collectResults, conformance } from '../../plugins/conformance/index.ts';
import { RemoteAdapter, RemoteAdapterError } from '../../plugins/conformance/remote-adapter.ts';
import { createAdapter } from '../../plugins/simulator/conformance-adapter.ts';
import { ROOT, tempDir } from '../helpers.ts';

const MiB = 1024 * 1024;
const FIXTURE = join(ROOT, 'test/conformance/fixtures/adapter-process');
const SERVE = [process.execPath, '--import', 'tsx', 'serve.ts'];

describe('RemoteAdapter', () => {
  test('makes, writes, checksums, locates, lists and deletes a share over gRPC, with the options and config carried as Structs', async (t) => {
    const server = await serveAdapter(createAdapter, `unix:${join(tempDir(t), 'adapter.sock')}`);
    t.after(() => server.close());
    const adapter = new RemoteAdapter(server.address, { driverOptions: { snapshots: true, limits: { depth: 2, names: ['a', null] } } });
    const setup = await adapter.setup();
    try {
      assert.deepEqual(
        setup.backends.map((b) => b.name),
        ['alpha', 'beta'],
      );
      const options = setup.backends[0].options as { endpoint?: unknown; snapshots?: unknown; limits?: unknown };
      assert.match(String(options.endpoint), /^127\.0\.0\.1:\d+$/);
      assert.equal(options.snapshots, true);
      assert.deepEqual(options.limits, { depth: 2, names: ['a', null] });
      assert.deepEqual([setup.sourcePool, setup.destinationPool, setup.smallPool], ['gold', 'bronze', 'tiny']);

      const id = await adapter.createShare('alpha', 'gold', 1 * MiB);
      const data = Buffer.alloc(64 * 1024, 7);
      await adapter.writeShare(id, 4096, data);
      const content = Buffer.alloc(1 * MiB);
      data.copy(content, 4096);
      assert.equal(await adapter.checksum(id), createHash('sha256').update(content).digest('hex'));
      assert.deepEqual(await adapter.locate(id), { backend: 'alpha', pool: 'gold' });
      assert.ok((await adapter.listShares('alpha')).includes(id));
      await adapter.deleteShare(id);
      assert.equal(await adapter.locate(id), null, 'NOT_FOUND from LocateShare is null');
      await adapter.deleteShare(id);
      await assert.rejects(adapter.checksum(id), (err: unknown) => err instanceof RemoteAdapterError && err.code === 'NOT_FOUND' && err.method === 'ChecksumShare');
    } finally {
      await adapter.teardown();
    }
  });

  test('passes the simulator plugin through a RemoteAdapter, ferryd SIGKILLed mid-copy included', async (t) => {
    const server = await serveAdapter(createAdapter, `unix:${join(tempDir(t), 'adapter.sock')}`);
    t.after(() => server.close());
    const collector = collectResults();
    conformance({ test: collector.test, plugin: join(ROOT, 'plugins/simulator'), adapter: () => new RemoteAdapter(server.address), shareSizeBytes: 2 * MiB, checks: ['happy-path', 'crash-in-progress'] });
    const results = await collector.results();
    assert.deepEqual(
      results.map((r) => [r.id, r.status, r.reason]),
      [
        ['manifest', 'passed', undefined],
        ['happy-path', 'passed', undefined],
        ['crash-in-progress', 'passed', undefined],
      ],
    );
  });
});

describe("the kit's instance of a process plugin's command", () => {
  test('is started in the plugin folder with FERRY_DRIVER_LISTEN, serves health and the adapter, and exits by itself when its stdin closes', async () => {
    const p = await AdapterProcess.start(SERVE, FIXTURE);
    let stopped = false;
    try {
      assert.match(p.address, /^unix:\/.*\/adapter\.sock$/);
      const adapter = p.adapter();
      const setup = await adapter.setup();
      assert.equal(setup.backends.length, 2);
      const id = await adapter.createShare('alpha', 'gold', 64 * 1024);
      assert.deepEqual(await adapter.locate(id), { backend: 'alpha', pool: 'gold' });
      await adapter.teardown();
      const exit = await p.stop();
      stopped = true;
      assert.deepEqual(exit, { code: 0, signal: null }, 'it exited on stdin EOF, before any signal');
    } finally {
      if (!stopped) await p.stop();
    }
  });

  test('reports a command that exits before it serves health, with what it printed', async () => {
    await assert.rejects(AdapterProcess.start([process.execPath, '-e', 'console.error("no array configured"); process.exit(3)'], FIXTURE), /exited \(3\) before it served health; it printed:\nno array configured/);
  });

  test('reports a command that cannot be started', async () => {
    await assert.rejects(AdapterProcess.start(['./no-such-driver'], FIXTURE), new RegExp(`cannot start ${FIXTURE}/no-such-driver in ${FIXTURE}: spawn .*ENOENT`));
  });
});
