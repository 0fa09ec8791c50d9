/**
 * Server reflection, checked the way a user's own tool uses it. reflect.py
 * (test/interop/) knows no Ferry proto: it asks a real ferryd or ferry-sim
 * process for FileDescriptorProtos, adds them to a fresh, strict descriptor
 * pool as grpcurl does, and builds every request and response from them. So a
 * descriptor that grpcurl would refuse (made-up file names, missing imports,
 * relative type names, map entries without `Entry`) fails these tests.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { test } from 'node:test';
import { configFile, spawnSim, tempDir } from '../simulator/helpers.ts';
import { callFailure, ferrydProcess, GRPC_PROTO, messages, PYTHON, pythonSetup, reflect, reflectOk, STATUS_EXIT } from './reflect-client.ts';
import { ROOT, runProcess, type Run } from '../helpers.ts';

const MiB = 1024 * 1024;
const ERROR_INFO = 'type.googleapis.com/google.rpc.ErrorInfo';

/** Lines each service's description must carry: its own contract, comments included. */
const CONTRACT_LINES: Record<string, string[]> = {
  'ferry.v1.MigrationService': [
    '  // Idempotency: idempotent when `request_id` is set (the same id with the',
    '  // | the share already has an active migration | ALREADY_EXISTS | watch or cancel that migration (its id is in the message) |',
    '  // | the migration is STARTING or IN_PROGRESS | FAILED_PRECONDITION | wait for PHASE1_DONE (WatchMigration) |',
    '  rpc WatchMigration ( .ferry.v1.WatchMigrationRequest ) returns ( stream .ferry.v1.Migration );',
  ],
  'ferry.simulator.v1.SimulatorService': [
    '  // ListBackends returns every backend of the array with its pools and how',
    '  // | unknown backend or pool | NOT_FOUND | check names with ListBackends |',
    '  rpc CreateShare ( .ferry.simulator.v1.CreateShareRequest ) returns ( .ferry.simulator.v1.Share );',
  ],
  'grpc.health.v1.Health': [
    '  // Performs a watch for the serving status of the requested service.',
    '  rpc Watch ( .grpc.health.v1.HealthCheckRequest ) returns ( stream .grpc.health.v1.HealthCheckResponse );',
  ],
  'grpc.reflection.v1.ServerReflection': [
    '  // The reflection service is structured as a bidirectional stream, ensuring',
    '  rpc ServerReflectionInfo ( stream .grpc.reflection.v1.ServerReflectionRequest ) returns ( stream .grpc.reflection.v1.ServerReflectionResponse );',
  ],
};

/** Lines that only a descriptor with the proto's own names, imports and map entries can print. */
const SYMBOL_LINES: Record<string, string[]> = {
  'ferry.v1.ShareRef': ['  // The share\'s id on that backend.', '  // This field is REQUIRED.', '  string share_id = 2;'],
  'ferry.v1.Migration': ['  .google.protobuf.Timestamp phase1_done_at = 22;', '  .ferry.v1.MigrationError last_cutover_abort = 32;'],
  'ferry.v1.MigrationState': ['  // Phase 1 is done; the destination is kept in sync. CompleteMigration may be asked.', '  MIGRATION_STATE_PHASE1_DONE = 3;'],
  'ferry.v1.ErrorReason': ['// Why a call failed or a migration ended in error.', 'enum ErrorReason {', '  FAILED_PRECONDITION = 4;'],
  'ferry.v1.MIGRATION_STATE_PHASE1_DONE': ['ferry.v1.MIGRATION_STATE_PHASE1_DONE is an enum value:', 'MIGRATION_STATE_PHASE1_DONE = 3;'],
  'ferry.v1.MigrationService.CompleteMigration': ['// Idempotency: idempotent. A repeat while COMPLETING or after SUCCESS'],
  'ferry.simulator.v1.Share': ['  map<string, string> metadata = 6;', '  .google.protobuf.Timestamp created_at = 12;'],
};

/** Lists the services at `address`, checks the expected ones are there, and describes every one listed. */
async function describesEveryService(address: string, expected: string[]): Promise<void> {
  const listed = (await reflectOk(address, 'list')).stdout.trim().split('\n');
  for (const name of expected) assert.ok(listed.includes(name), `${name} is not listed: ${listed.join(', ')}`);
  for (const service of listed) {
    const out = (await reflectOk(address, 'describe', service)).stdout;
    const lines = out.split('\n');
    assert.equal(lines[0], `${service} is a service:`);
    assert.ok(lines.includes(`service ${service.split('.').pop()} {`), out);
    const methods = lines.flatMap((line, i) => (line.startsWith('  rpc ') ? [i] : []));
    assert.ok(methods.length > 0, `${service} has no methods:\n${out}`);
    for (const i of methods) assert.match(lines[i - 1]!, /^ {2}\/\//, `${service}: "${lines[i]}" comes without its comment`);
    for (const line of CONTRACT_LINES[service] ?? []) assert.ok(lines.includes(line), `${service}'s description lacks\n${line}\n${out}`);
  }
}

test('ferryd describes every service it lists, each method with the comments of its contract', async (t) => {
  await pythonSetup();
  const daemon = await ferrydProcess(t, await tempDir(t));
  await describesEveryService(daemon.address, ['ferry.v1.MigrationService', 'ferry.simulator.v1.SimulatorService', 'grpc.health.v1.Health']);
  for (const [symbol, expected] of Object.entries(SYMBOL_LINES)) {
    const out = (await reflectOk(daemon.address, 'describe', symbol)).stdout;
    for (const line of expected) assert.ok(out.split('\n').includes(line), `describe ${symbol} lacks\n${line}\n${out}`);
  }
});

test('ferry-sim describes every service it lists, each method with the comments of its contract', async (t) => {
  await pythonSetup();
  const dir = await tempDir(t);
  const sim = await spawnSim(t, join(dir, 'data'), await configFile(dir));
  await describesEveryService(sim.address, ['ferry.simulator.v1.SimulatorService', 'grpc.health.v1.Health']);
  const out = (await reflectOk(sim.address, 'describe', 'ferry.simulator.v1.Share')).stdout.split('\n');
  for (const line of SYMBOL_LINES['ferry.simulator.v1.Share']!) assert.ok(out.includes(line), `describe ferry.simulator.v1.Share lacks ${line}`);
});

test('a whole migration runs on reflection alone: snake_case or camelCase JSON in, JSON out, failures with their codes', async (t) => {
  await pythonSetup();
  const { address } = await ferrydProcess(t, await tempDir(t));
  const sim = 'ferry.simulator.v1.SimulatorService';
  const mig = 'ferry.v1.MigrationService';
  const data = Buffer.alloc(64 * 1024, 'reflect').toString('base64');
  await reflectOk(address, 'call', `${sim}/CreateShare`, '-d', JSON.stringify({ share_id: 'demo', backend: 'alpha', pool: 'gold', size_bytes: MiB }));
  await reflectOk(address, 'call', `${sim}/WriteShare`, '-d', JSON.stringify({ shareId: 'demo', offset: 0, data }));
  const [before] = messages(await reflectOk(address, 'call', `${sim}/ChecksumShare`, '-d', '{"share_id":"demo"}'));

  const unknown = await reflect(address, 'call', `${mig}/GetMigration`, '-d', '{"id":"mig-0000000000000000-00000000"}');
  assert.equal(unknown.code, STATUS_EXIT.NOT_FOUND, unknown.stderr);
  assert.deepEqual(callFailure(unknown), {
    code: 'NOT_FOUND',
    message: 'no migration has id mig-0000000000000000-00000000',
    details: [{ '@type': ERROR_INFO, reason: 'NOT_FOUND', domain: 'ferry.v1', metadata: { migration: 'mig-0000000000000000-00000000' } }],
  });
  const misspelt = await reflect(address, 'call', `${mig}/GetMigration`, '-d', '{"migration_id":"x"}');
  assert.equal(misspelt.code, 1, 'a field the message lacks is refused before any call, as grpcurl does');
  assert.match(misspelt.stderr, /migration_id/);

  // The README's JSON, character for character.
  const start = '{"share":{"backend":"alpha","share_id":"demo"},"destination":"beta#bronze","writable":true}';
  const [started] = messages(await reflectOk(address, 'call', `${mig}/StartMigration`, '-d', start));
  assert.ok(typeof started.id === 'string' && started.id !== '', 'ids are opaque, but never empty');
  assert.deepEqual(started.share, { backend: 'alpha', shareId: 'demo' });
  assert.equal(started.destination, 'beta#bronze');
  assert.equal(started.writable, true);
  const again = await reflect(address, 'call', `${mig}/StartMigration`, '-d', start);
  assert.equal(again.code, STATUS_EXIT.ALREADY_EXISTS, again.stderr);
  const refused = callFailure(again);
  assert.ok(refused.message.includes(started.id), `ALREADY_EXISTS names the migration: ${again.stderr}`);
  assert.deepEqual([refused.details.length, refused.details[0]?.reason, refused.details[0]?.domain], [1, 'ALREADY_EXISTS', 'ferry.v1']);
  const { state, ...named } = refused.details[0]!.metadata as Record<string, string>;
  assert.deepEqual(named, { migration: started.id, backend: 'alpha', share: 'demo' });
  assert.match(state ?? '', /^MIGRATION_STATE_(STARTING|IN_PROGRESS|PHASE1_DONE)$/);

  const id = JSON.stringify({ id: started.id });
  const phase1 = messages(await reflectOk(address, 'call', `${mig}/WatchMigration`, '-d', id, '--until', 'state=MIGRATION_STATE_PHASE1_DONE'));
  assert.equal(phase1.at(-1).state, 'MIGRATION_STATE_PHASE1_DONE');
  assert.equal(phase1.at(-1).progress.percent, 100);
  assert.ok(phase1.every((m) => m.id === started.id));
  // A message that does not match --until does not end the watch; --max-time does (DEADLINE_EXCEEDED, exit 64 + 4).
  const bounded = await reflect(address, '--max-time', '1', 'call', `${mig}/WatchMigration`, '-d', id, '--until', 'state=MIGRATION_STATE_SUCCESS');
  assert.equal(bounded.code, STATUS_EXIT.DEADLINE_EXCEEDED, bounded.stderr);
  assert.equal(callFailure(bounded).code, 'DEADLINE_EXCEEDED');
  assert.equal(messages(bounded)[0].state, 'MIGRATION_STATE_PHASE1_DONE');

  const [completing] = messages(await reflectOk(address, 'call', `${mig}/CompleteMigration`, '-d', id));
  assert.equal(completing.id, started.id);
  const watched = messages(await reflectOk(address, 'call', `${mig}/WatchMigration`, '-d', id));
  const done = watched.at(-1);
  assert.equal(done.state, 'MIGRATION_STATE_SUCCESS', 'the watch ends by itself once the migration is terminal');
  assert.ok(typeof done.cutover.freezeMs === 'number' && done.finishedAt.endsWith('Z'), JSON.stringify(done));

  assert.deepEqual(messages(await reflectOk(address, 'call', 'grpc.health.v1.Health/Check', '-d', '{"service":"backend:alpha"}')), [{ status: 'SERVING' }]);
  const [moved] = messages(await reflectOk(address, 'call', `${sim}/GetShare`, '-d', '{"share_id":"demo"}'));
  assert.equal(moved.backend, 'beta');
  assert.deepEqual(messages(await reflectOk(address, 'call', `${sim}/ChecksumShare`, '-d', '{"share_id":"demo"}')), [before]);
});

/** A FileDescriptorSet file as JSON with proto field names (protobuf's own decoder, not ours). */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
async function descriptorSet(path: string): Promise<any[]> {
  const decode = 'import sys; from google.protobuf import descriptor_pb2, json_format; ' +
    "print(json_format.MessageToJson(descriptor_pb2.FileDescriptorSet.FromString(open(sys.argv[1], 'rb').read()), preserving_proto_field_name=True))";
  const r = await runProcess(PYTHON, ['-c', decode, path]);
  assert.equal(r.code, 0, r.stderr);
  return (JSON.parse(r.stdout) as { file?: unknown[] }).file ?? [];
}

/* eslint-disable @typescript-eslint/no-explicit-any */
/** What a client builds from a file: names, numbers, types, json names, nesting, services; no source info. */
function shape(f: any): unknown {
  const field = (x: any) => ({
    name: x.name, number: x.number, label: x.label, type: x.type, type_name: x.type_name, json_name: x.json_name,
    oneof_index: x.oneof_index, proto3_optional: x.proto3_optional, default_value: x.default_value, extendee: x.extendee,
  });
  const enumType = (e: any) => ({ name: e.name, value: (e.value ?? []).map((v: any) => ({ name: v.name, number: v.number })) });
  const message = (m: any): unknown => ({
    name: m.name, field: (m.field ?? []).map(field), nested_type: (m.nested_type ?? []).map(message), enum_type: (m.enum_type ?? []).map(enumType),
    oneof_decl: (m.oneof_decl ?? []).map((o: any) => o.name), map_entry: m.options?.map_entry ?? false,
  });
  const method = (x: any) => ({ name: x.name, input_type: x.input_type, output_type: x.output_type, client_streaming: x.client_streaming ?? false, server_streaming: x.server_streaming ?? false });
  return {
    name: f.name, package: f.package, syntax: f.syntax, dependency: f.dependency ?? [], public_dependency: f.public_dependency ?? [],
    message_type: (f.message_type ?? []).map(message), enum_type: (f.enum_type ?? []).map(enumType),
    service: (f.service ?? []).map((s: any) => ({ name: s.name, method: (s.method ?? []).map(method) })), extension: (f.extension ?? []).map(field),
  };
}

/**
 * Asserts that `actual` holds everything in `expected`: named elements (messages, fields, methods)
 * are matched by name and compared the same way, anything else must be equal.
 */
function assertContains(actual: any, expected: any, where: string): void {
  if (Array.isArray(expected) && expected.every((e) => typeof e?.name === 'string')) {
    assert.ok(Array.isArray(actual), `${where} is not a list`);
    for (const e of expected) {
      const twin = actual.find((a: any) => a?.name === e.name);
      assert.ok(twin, `${where} lacks ${e.name}`);
      assertContains(twin, e, `${where}.${e.name}`);
    }
  } else if (expected !== null && typeof expected === 'object' && !Array.isArray(expected)) {
    for (const key of Object.keys(expected)) assertContains(actual?.[key], expected[key], `${where}.${key}`);
  } else {
    assert.deepEqual(actual, expected, where);
  }
}

/** The comments of a file by source path ("4,2,2,1": message 2, field 1). */
function comments(f: any): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const loc of f.source_code_info?.location ?? []) {
    if (loc.leading_comments !== undefined || loc.trailing_comments !== undefined) out[(loc.path ?? []).join(',')] = [loc.leading_comments, loc.trailing_comments];
  }
  return out;
}
/* eslint-enable @typescript-eslint/no-explicit-any */

test('the files reflection serves are the files protoc compiles from proto/, with their source info', async (t) => {
  const { wellKnownProtos } = await pythonSetup();
  const dir = await tempDir(t);
  const daemon = await ferrydProcess(t, join(dir, 'ferryd'));
  const sim = await spawnSim(t, join(dir, 'sim'), await configFile(dir));
  // Every service, and for ferryd the error reasons too, which no service imports.
  const servers = [
    { server: 'ferryd', address: daemon.address, symbols: ['', 'ferry.v1.ErrorReason'], ours: ['ferry/v1/migration.proto', 'ferry/v1/error_reason.proto', 'ferry/simulator/v1/simulator.proto'] },
    { server: 'ferry-sim', address: sim.address, symbols: [''], ours: ['ferry/simulator/v1/simulator.proto'] },
  ];
  for (const { server, address, symbols, ours } of servers) {
    // What the server sent is compared even when the strict pool refused it, for a precise message.
    const described: Run[] = [];
    const served: any[] = []; // eslint-disable-line @typescript-eslint/no-explicit-any
    for (const [i, symbol] of symbols.entries()) {
      const path = join(dir, `${server}.served-${i}.bin`);
      described.push(await reflect(address, '--protoset-out', path, 'describe', ...(symbol ? [symbol] : [])));
      for (const file of await descriptorSet(path)) if (!served.some((f) => f.name === file.name)) served.push(file);
    }
    const names = served.map((f) => f.name as string);
    for (const name of [...ours, 'google/protobuf/timestamp.proto', 'grpc/health/v1/health.proto']) {
      assert.ok(names.includes(name), `${server} serves no ${name}; it serves ${names.join(', ')}`);
    }

    const compiledPath = join(dir, `${server}.protoc.bin`);
    const protoc = await runProcess(PYTHON, ['-m', 'grpc_tools.protoc', '-I', join(ROOT, 'proto'), '-I', GRPC_PROTO, '-I', wellKnownProtos,
      '--include_imports', '--include_source_info', `--descriptor_set_out=${compiledPath}`, ...names]);
    assert.equal(protoc.code, 0, `protoc cannot compile the files ${server} serves: ${protoc.stderr}`);
    const compiled = new Map((await descriptorSet(compiledPath)).map((f) => [f.name as string, f]));
    for (const file of served) {
      const twin = compiled.get(file.name);
      assert.ok(twin, `protoc did not produce ${file.name}`);
      if (file.name.startsWith('grpc/')) {
        // gRPC's own protos come from npm packages newer than Debian's grpc-proto (health.proto has
        // gained List since): all that Debian's copy declares must be there, unchanged.
        assertContains(shape(file), shape(twin), `${server}: ${file.name}`);
      } else {
        assert.deepEqual(shape(file), shape(twin), `${server} serves ${file.name} unlike protoc compiles it`);
      }
      assert.ok((file.source_code_info?.location?.length ?? 0) > 0, `${server} serves ${file.name} without source info`);
      // Our own protos come from the same text, so their comments must be protoc's, path for path.
      if (ours.includes(file.name)) assert.deepEqual(comments(file), comments(twin), `${server} serves ${file.name} with other comments than protoc's`);
    }
    for (const r of described) assert.equal(r.code, 0, `a strict pool refuses what ${server} serves: ${r.stderr}`);
  }
});
