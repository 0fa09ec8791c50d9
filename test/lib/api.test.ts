/**
 * The compiled API description: what every process loads from the
 * descriptor set must be what the .proto text says, and the stable error
 * codes the code uses must be the ones the contract lists.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import * as protoLoader from '@grpc/proto-loader';
import { loadApi, LOADER_OPTIONS } from '../../lib/api.ts';
import { ErrorCodes } from '../../plugins/api/index.ts';
import { MIGRATION_ONLY_CODES } from '../../daemon/migration.ts';

const PROTO_ROOT = fileURLToPath(new URL('../../proto/', import.meta.url));

test('every message and service loads from the descriptor set exactly as from the .proto text (camelCase fields, maps, oneofs)', () => {
  const fromText = protoLoader.loadSync(['ferry/v1/migration.proto', 'ferry/v1/error_reason.proto', 'ferry/simulator/v1/simulator.proto'], { ...LOADER_OPTIONS, includeDirs: [PROTO_ROOT] });
  const fromSet = loadApi().packageDefinition;
  let compared = 0;
  for (const [name, def] of Object.entries(fromText)) {
    const other = fromSet[name];
    assert.ok(other, `${name} is missing from the descriptor set`);
    if ('format' in def) {
      assert.deepEqual((other as typeof def).type, def.type, name);
    } else {
      for (const [method, m] of Object.entries(def)) {
        const o: protoLoader.MethodDefinition<object, object> = (other as protoLoader.ServiceDefinition)[method]!;
        assert.deepEqual([o.path, o.requestStream, o.responseStream], [m.path, m.requestStream, m.responseStream], `${name}.${method}`);
      }
    }
    compared++;
  }
  assert.ok(compared > 60, `compared only ${compared} definitions`);
});

test('the stable codes listed in error_reason.proto are exactly those ferryd sends', () => {
  const reason = loadApi().packageDefinition['ferry.v1.ErrorReason'] as protoLoader.EnumTypeDefinition;
  const reasons = (reason.type as { value: { name: string }[] }).value.map((v) => v.name);
  const sent = [...Object.keys(ErrorCodes), ...MIGRATION_ONLY_CODES];
  assert.deepEqual([...reasons].filter((r) => r !== 'ERROR_REASON_UNSPECIFIED').sort(), sent.sort());
});

test('the message types are generated with exactly the options every process loads the messages with', async () => {
  // A computed specifier: the script is plain JavaScript, typed here by what the test reads.
  const script = new URL('../../scripts/proto.mjs', import.meta.url).href;
  const { TYPE_OPTIONS, typeFlags } = (await import(script)) as { TYPE_OPTIONS: Record<string, unknown>; typeFlags(): string[] };
  const loading = Object.fromEntries(Object.entries(LOADER_OPTIONS).map(([name, value]) => [name, typeof value === 'function' ? value.name : value]));
  assert.deepEqual(TYPE_OPTIONS, loading);
  assert.deepEqual(typeFlags(), ['--longs=Number', '--enums=String', '--defaults', '--oneofs']);
});
