/**
 * Plugin kinds in plugin.json (module, process, endpoint) as the loader
 * reads them, and the driver protocol's rules that need no process: the
 * error mapping of driver.proto's header, and checkpoints as driverBytes.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { checkpointFromWire, checkpointToWire, codeOfStatus, fromStruct, toStruct } from '../../host/driver-wire.ts';
import { checkManifest, scanPlugins } from '../../host/plugins.ts';
import { silentLog } from '../../lib/log.ts';
import { encodeStatusDetails, STATUS_DETAILS_METADATA } from '../../lib/status.ts';
import { pluginsDir, tempDir } from '../helpers.ts';

const base = { name: 'p', version: '1.0.0', apiVersion: 1 };

describe('plugin.json kind and command', () => {
  test('kind defaults to module, so a manifest without one loads as before', () => {
    assert.equal(checkManifest(base, 'p').kind, 'module');
  });

  test('process needs a non-empty argv of strings; endpoint takes none', () => {
    assert.deepEqual(checkManifest({ ...base, kind: 'process', command: ['python3', 'driver.py'] }, 'p').command, ['python3', 'driver.py']);
    assert.equal(checkManifest({ ...base, kind: 'endpoint' }, 'p').kind, 'endpoint');
  });

  const bad: [string, object, RegExp][] = [
    ['an unknown kind', { kind: 'thread' }, /p\/plugin.json: "kind" must be one of "module", "process", "endpoint" \(default "module"\)/],
    ['a kind that is not a string', { kind: 1 }, /"kind" must be one of/],
    ['process without command', { kind: 'process' }, /"command" must be a non-empty array of strings \(the argv to start\) for kind "process"/],
    ['process with an empty command', { kind: 'process', command: [] }, /"command" must be a non-empty array/],
    ['process with a command that is a string', { kind: 'process', command: 'python3 driver.py' }, /"command" must be a non-empty array/],
    ['process with a non-string argument', { kind: 'process', command: ['python3', 1] }, /"command" must be a non-empty array of strings/],
    ['process with an empty argv0', { kind: 'process', command: [''] }, /"command" must be a non-empty array/],
    ['a command for a module', { command: ['x'] }, /"command" is only for kind "process" \(this plugin is kind "module"\)/],
    ['a command for an endpoint', { kind: 'endpoint', command: ['x'] }, /"command" is only for kind "process" \(this plugin is kind "endpoint"\)/],
  ];
  for (const [what, extra, message] of bad) {
    test(`refuses ${what} with PLUGIN_MANIFEST_INVALID`, () => {
      assert.throws(() => checkManifest({ ...base, ...extra }, 'p'), (err: Error & { code?: string }) => err.code === 'PLUGIN_MANIFEST_INVALID' && message.test(err.message));
    });
  }

  test('a scan without a data dir starts no process: it loads the manifest only', async (t) => {
    const dir = pluginsDir(tempDir(t), [], { proc: { 'plugin.json': JSON.stringify({ ...base, name: 'proc', kind: 'process', command: ['/nonexistent/driver'] }) } });
    const scan = await scanPlugins(dir, { timeoutMs: 300, log: silentLog() });
    const plugin = scan.plugins.get('proc')!;
    assert.equal(plugin.manifest.kind, 'process');
    assert.equal(plugin.process, undefined);
    assert.equal(plugin.createDriver, undefined);
  });
});

describe('the driver protocol on the wire', () => {
  const failure = (code: grpc.status, reason?: string): Partial<grpc.StatusObject> => {
    const metadata = new grpc.Metadata();
    if (reason !== undefined) metadata.set(STATUS_DETAILS_METADATA, encodeStatusDetails(code, 'm', { reason, domain: 'vendor.example', metadata: {} }));
    return { code, details: 'm', metadata };
  };

  test('the ErrorInfo reason wins when it is one of the codes of driver.proto, in any domain', () => {
    assert.equal(codeOfStatus(failure(grpc.status.INTERNAL, 'NOT_FOUND')), 'NOT_FOUND');
    assert.equal(codeOfStatus(failure(grpc.status.UNKNOWN, 'UNAVAILABLE')), 'UNAVAILABLE');
  });

  test('without a known reason, the gRPC status says the code', () => {
    assert.equal(codeOfStatus(failure(grpc.status.RESOURCE_EXHAUSTED)), 'RESOURCE_EXHAUSTED');
    assert.equal(codeOfStatus(failure(grpc.status.DEADLINE_EXCEEDED, 'SOMETHING_ELSE')), 'DEADLINE_EXCEEDED');
    assert.equal(codeOfStatus(failure(grpc.status.UNAVAILABLE)), 'UNAVAILABLE');
    // The host data path's code for bytes that do not match their CRC-32C.
    assert.equal(codeOfStatus(failure(grpc.status.DATA_LOSS)), 'DATA_LOSS');
  });

  test('a call the driver dropped (CANCELLED) is UNAVAILABLE, made again: a driver stopping on SIGTERM may drop its calls in flight', () => {
    assert.equal(codeOfStatus(failure(grpc.status.CANCELLED)), 'UNAVAILABLE');
  });

  test('UNKNOWN, INTERNAL and every other status are DRIVER_ERROR, as is a reason Ferry keeps for itself', () => {
    for (const status of [grpc.status.UNKNOWN, grpc.status.INTERNAL, grpc.status.PERMISSION_DENIED, grpc.status.ABORTED]) {
      assert.equal(codeOfStatus(failure(status)), 'DRIVER_ERROR', grpc.status[status]);
    }
    assert.equal(codeOfStatus(failure(grpc.status.INTERNAL, 'STALLED')), 'DRIVER_ERROR');
  });

  test('a checkpoint is kept as driverBytes in base64, empty bytes as null, and sent back as the same bytes', () => {
    const bytes = Buffer.from([0, 1, 2, 255]);
    const kept = checkpointFromWire(bytes);
    assert.deepEqual(kept, { driverBytes: 'AAEC/w==' });
    assert.deepEqual(checkpointToWire(kept), bytes);
    assert.equal(checkpointFromWire(Buffer.alloc(0)), null);
    assert.equal(checkpointToWire(null).length, 0);
  });

  test("a backend's options travel as a Struct and arrive as written", () => {
    const options = { address: 'unix:/x', n: 3, on: true, nested: { list: [1, 'two', null] }, none: null };
    // What protobufjs makes of the Struct on the way is what the bridge reads: encode and decode it for real.
    const wire = JSON.parse(JSON.stringify(toStruct(options))) as Parameters<typeof fromStruct>[0];
    const withKinds = JSON.parse(JSON.stringify(wire), (_k, v: Record<string, unknown>) => {
      if (v && typeof v === 'object' && !Array.isArray(v) && !('fields' in v) && !('values' in v)) {
        const kind = Object.keys(v).find((k) => k.endsWith('Value'));
        return kind ? { ...v, kind } : v;
      }
      return v;
    }) as Parameters<typeof fromStruct>[0];
    assert.deepEqual(fromStruct(withKinds), options);
  });
});
