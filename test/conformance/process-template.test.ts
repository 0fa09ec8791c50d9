/**
 * `ferry-conformance init DIR --kind process`: the Python template. It is
 * started as the kit and ferryd start a process driver (FERRY_DRIVER_LISTEN,
 * stdin a pipe), generates its stubs from this checkout's protos, serves
 * health, answers every DriverService and ConformanceAdapter call with
 * UNIMPLEMENTED "NAME: implement X", and exits when its stdin closes.
 *
 * TODO(issue 11, branch proc): once ferryd's loader knows kind process, also
 * run `ferry-conformance --plugin DIR` on it and expect every check to fail
 * with "NAME: implement ..." reasons.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { promisify } from 'node:util';
import * as grpc from '@grpc/grpc-js';
import { clientConstructor } from '../../lib/rpc.ts';
import { AdapterProcess } from '../../plugins/conformance/adapter-process.ts';
import { RemoteAdapterError } from '../../plugins/conformance/remote-adapter.ts';
import { ROOT, tempDir } from '../helpers.ts';

const BIN = join(ROOT, 'bin/ferry-conformance.mjs');

/** A DriverService call whose status is the point: resolves with the error. */
function driverCall(address: string, method: string, request: object): Promise<grpc.ServiceError | null> {
  const Client = clientConstructor('ferry.driver.v1.DriverService');
  const client = new Client(address, grpc.credentials.createInsecure()) as unknown as grpc.Client & Record<string, Function>;
  return new Promise((resolve) => {
    client[method]!.call(client, request, { deadline: Date.now() + 10_000 }, (err: grpc.ServiceError | null) => {
      client.close();
      resolve(err);
    });
  });
}

test('init --kind process writes a Python driver that serves health and answers every call with UNIMPLEMENTED "NAME: implement X", and exits when its stdin closes', async (t) => {
  const dir = join(tempDir(t), 'Acme Py');
  const { stdout } = await promisify(execFile)(process.execPath, [BIN, 'init', dir, '--kind', 'process'], { cwd: ROOT });
  assert.match(stdout, /^wrote plugin acme-py \(kind process\) in .*: driver\.py, plugin\.json\nnext:\n/);
  const manifest = JSON.parse(readFileSync(join(dir, 'plugin.json'), 'utf8'));
  assert.deepEqual([manifest.name, manifest.kind, manifest.command, manifest.apiVersion], ['acme-py', 'process', ['/usr/bin/python3', 'driver.py'], 1]);
  assert.match(readFileSync(join(dir, 'driver.py'), 'utf8'), new RegExp(`DEFAULT_PROTO_PATH = "${join(ROOT, 'proto')}"`));

  const p = await AdapterProcess.start(manifest.command, dir);
  let stopped = false;
  try {
    for (const [method, request] of [
      ['GetPluginInfo', {}],
      ['OpenBackend', { backend: 'alpha', daemonAddress: '127.0.0.1:1' }],
      ['Describe', { backend: 'alpha' }],
      ['CheckCompatibility', {}],
      ['Start', {}],
      ['Continue', {}],
      ['Complete', {}],
      ['Cancel', {}],
      ['Progress', {}],
    ] as const) {
      const err = await driverCall(p.address, method, request);
      assert.equal(err?.code, grpc.status.UNIMPLEMENTED, `${method}: ${err?.message}`);
      assert.equal(err.details, `acme-py: implement ${method}`);
    }
    const adapter = p.adapter();
    const calls: [string, () => Promise<unknown>][] = [
      ['Setup', () => adapter.setup()],
      ['CreateShare', () => adapter.createShare('alpha', 'gold', 1)],
      ['WriteShare', () => adapter.writeShare('s', 0, new Uint8Array(1))],
      ['ChecksumShare', () => adapter.checksum('s')],
      ['LocateShare', () => adapter.locate('s')],
      ['ListShares', () => adapter.listShares('alpha')],
      ['DeleteShare', () => adapter.deleteShare('s')],
      ['Teardown', () => adapter.teardown()],
    ];
    for (const [method, call] of calls) {
      await assert.rejects(call(), (err: unknown) => err instanceof RemoteAdapterError && err.code === 'UNIMPLEMENTED' && err.message.endsWith(`: acme-py: implement ${method}`), method);
    }
    const exit = await p.stop();
    stopped = true;
    assert.deepEqual(exit, { code: 0, signal: null }, 'it exited on stdin EOF, before any signal');
  } finally {
    if (!stopped) await p.stop();
  }
});

test('init --kind rejects a kind it has no template for, exit 2', async (t) => {
  const r = await promisify(execFile)(process.execPath, [BIN, 'init', join(tempDir(t), 'x'), '--kind', 'endpoint'], { cwd: ROOT }).catch((err: { code: number; stderr: string }) => err);
  assert.equal((r as { code?: number }).code, 2);
  assert.match((r as { stderr: string }).stderr, /--kind endpoint: init writes a template for module or process/);
});
