/**
 * Server reflection as a strict client sees it: the files served are the
 * compiled ones byte for byte, with their real names, imports, snake_case
 * fields, fully qualified types, map entries and comments. The Python test
 * (test/interop) checks the same through protobuf's own descriptor pool.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as grpc from '@grpc/grpc-js';
import protobuf from 'protobufjs';
import descriptor from 'protobufjs/ext/descriptor/index.js';
import { loadApi } from '../../lib/api.ts';
import { Reflection, REFLECTION_SERVICES } from '../../lib/reflection.ts';
import { bind, clientConstructor, shutdown } from '../../lib/rpc.ts';

const FileDescriptorProto = (descriptor as unknown as { FileDescriptorProto: protobuf.Type }).FileDescriptorProto;

interface Field { name: string; jsonName: string; typeName?: string; number: number }
interface Message { name: string; field?: Field[]; nestedType?: Message[]; options?: { mapEntry?: boolean } }
interface File {
  name: string;
  dependency?: string[];
  messageType?: Message[];
  service?: { name: string; method: { name: string }[] }[];
  sourceCodeInfo?: { location: { leadingComments?: string }[] };
}

const decode = (bytes: Uint8Array) => FileDescriptorProto.toObject(FileDescriptorProto.decode(bytes)) as File;

type Response = {
  messageResponse: string;
  fileDescriptorResponse?: { fileDescriptorProto: Buffer[] };
  listServicesResponse?: { service: { name: string }[] };
  allExtensionNumbersResponse?: { baseTypeName: string; extensionNumber: number[] };
  errorResponse?: { errorCode: number; errorMessage: string };
};

/** A reflection stream: send a request, get its answer. */
async function reflectionStream(t: { after(fn: () => unknown): void }, services: string[], version: (typeof REFLECTION_SERVICES)[number] = REFLECTION_SERVICES[0]) {
  const server = new grpc.Server();
  new Reflection(services).addToServer(server);
  const address = await bind(server, '127.0.0.1:0');
  const Client = clientConstructor(version);
  const client = new Client(address, grpc.credentials.createInsecure()) as unknown as grpc.Client & { ServerReflectionInfo(): grpc.ClientDuplexStream<object, Response> };
  const call = client.ServerReflectionInfo();
  const pending: ((r: Response) => void)[] = [];
  call.on('data', (r: Response) => pending.shift()?.(r));
  t.after(async () => {
    call.end();
    client.close();
    await shutdown(server, 0);
  });
  return (request: object) =>
    new Promise<Response>((resolve, reject) => {
      pending.push(resolve);
      call.once('error', reject);
      call.write(request);
    });
}

test('lists the services the server serves, and reflection itself, on v1 and v1alpha', async (t) => {
  for (const version of REFLECTION_SERVICES) {
    const ask = await reflectionStream(t, ['ferry.v1.MigrationService', 'grpc.health.v1.Health'], version);
    const res = await ask({ listServices: '*' });
    assert.deepEqual(res.listServicesResponse?.service.map((s) => s.name), ['ferry.v1.MigrationService', 'grpc.health.v1.Health', ...REFLECTION_SERVICES].sort());
  }
});

test('serves the compiled file for a service byte for byte, with its imports, snake_case fields, qualified types and comments', async (t) => {
  const ask = await reflectionStream(t, ['ferry.v1.MigrationService']);
  const res = await ask({ fileContainingSymbol: 'ferry.v1.MigrationService' });
  const files = res.fileDescriptorResponse!.fileDescriptorProto;
  assert.deepEqual(Buffer.from(files[0]!), Buffer.from(loadApi().files.get('ferry/v1/migration.proto')!.bytes));
  const [main, ...deps] = files.map(decode);
  assert.equal(main!.name, 'ferry/v1/migration.proto');
  assert.deepEqual(main!.dependency, ['google/protobuf/timestamp.proto']);
  assert.deepEqual(deps.map((f) => f.name), ['google/protobuf/timestamp.proto']);
  const migration = main!.messageType!.find((m) => m.name === 'Migration')!;
  const createdAt = migration.field!.find((f) => f.name === 'created_at')!;
  assert.equal(createdAt.typeName, '.google.protobuf.Timestamp');
  assert.equal(createdAt.jsonName, 'createdAt');
  const comments = main!.sourceCodeInfo!.location.map((l) => l.leadingComments ?? '').join('\n');
  assert.match(comments, /Idempotency: idempotent when `request_id` is set/);
  assert.match(comments, /\| condition \| code \| caller should \|/);
});

test('does not send a file twice on one stream, except the one asked for', async (t) => {
  const ask = await reflectionStream(t, ['ferry.v1.MigrationService']);
  await ask({ fileByFilename: 'ferry/v1/migration.proto' });
  const again = await ask({ fileContainingSymbol: 'ferry.v1.Migration' });
  assert.deepEqual(again.fileDescriptorResponse!.fileDescriptorProto.map((b) => decode(b).name), ['ferry/v1/migration.proto']);
});

test('finds the file of any symbol: nested messages, fields, enum values, methods, with or without a leading dot', async (t) => {
  const ask = await reflectionStream(t, ['ferry.v1.MigrationService', 'grpc.health.v1.Health']);
  const cases: [string, string][] = [
    ['ferry.v1.MigrationService.StartMigration', 'ferry/v1/migration.proto'],
    ['.ferry.v1.StartMigrationRequest', 'ferry/v1/migration.proto'],
    ['ferry.v1.Migration.created_at', 'ferry/v1/migration.proto'],
    ['ferry.v1.MIGRATION_STATE_PHASE1_DONE', 'ferry/v1/migration.proto'],
    ['grpc.health.v1.HealthCheckResponse.ServingStatus', 'grpc/health/v1/health.proto'],
    ['ferry.simulator.v1.Share', 'ferry/simulator/v1/simulator.proto'],
  ];
  for (const [symbol, file] of cases) {
    const res = await ask({ fileContainingSymbol: symbol });
    assert.equal(decode(res.fileDescriptorResponse!.fileDescriptorProto[0]!).name, file, symbol);
  }
});

test('serves health and reflection at their canonical paths, map entries as protoc makes them', async (t) => {
  const ask = await reflectionStream(t, ['grpc.health.v1.Health']);
  const health = decode((await ask({ fileByFilename: 'grpc/health/v1/health.proto' })).fileDescriptorResponse!.fileDescriptorProto[0]!);
  const list = health.messageType!.find((m) => m.name === 'HealthListResponse')!;
  assert.deepEqual(list.nestedType!.map((n) => [n.name, n.options?.mapEntry]), [['StatusesEntry', true]]);
  assert.equal(list.field![0]!.typeName, '.grpc.health.v1.HealthListResponse.StatusesEntry');
  const refl = decode((await ask({ fileContainingSymbol: REFLECTION_SERVICES[0] })).fileDescriptorResponse!.fileDescriptorProto[0]!);
  assert.equal(refl.name, 'grpc/reflection/v1/reflection.proto');
});

test('answers NOT_FOUND for unknown names and extensions, and an empty list of extension numbers for a known type', async (t) => {
  const ask = await reflectionStream(t, ['ferry.v1.MigrationService']);
  for (const request of [{ fileByFilename: 'ferry_v1.proto' }, { fileContainingSymbol: 'ferry.v1.Nope' }, { fileContainingExtension: { containingType: 'ferry.v1.Migration', extensionNumber: 100 } }, { allExtensionNumbersOfType: 'ferry.v1.Nope' }]) {
    const res = await ask(request);
    assert.equal(res.errorResponse?.errorCode, grpc.status.NOT_FOUND, JSON.stringify(request));
    assert.deepEqual(res.fileDescriptorResponse, undefined);
  }
  const ext = await ask({ allExtensionNumbersOfType: 'ferry.v1.Migration' });
  assert.deepEqual(ext.allExtensionNumbersResponse, { baseTypeName: 'ferry.v1.Migration', extensionNumber: [] });
  const empty = await ask({});
  assert.equal(empty.errorResponse?.errorCode, grpc.status.INVALID_ARGUMENT);
});

test('refuses to serve a service the compiled API does not have', () => {
  assert.throws(() => new Reflection(['ferry.v1.NoSuchService']), /ferry\.v1\.NoSuchService is not in the compiled API/);
});
