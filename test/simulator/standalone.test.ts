/**
 * ferry-sim as its own process: it serves health and reflection beside
 * SimulatorService, and SIGTERM shuts it down cleanly.
 */
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { test } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { clientConstructor } from '../../lib/rpc.ts';
import { configFile, spawnSim, tempDir } from './helpers.ts';

const require = createRequire(import.meta.url);

test('ferry-sim serves health and reflection, and exits 0 on SIGTERM', async (t) => {
  const dir = await tempDir(t);
  const sim = await spawnSim(t, `${dir}/data`, await configFile(dir));

  const Health = clientConstructor('grpc.health.v1.Health');
  const health = new Health(sim.address, grpc.credentials.createInsecure());
  const check = (service: string) =>
    new Promise<{ status: string }>((resolve, reject) =>
      (health as unknown as Record<string, (r: object, cb: (e: Error | null, r: { status: string }) => void) => void>).Check!.call(health, { service }, (e, r) => (e ? reject(e) : resolve(r))),
    );
  assert.equal((await check('')).status, 'SERVING');
  assert.equal((await check('ferry.simulator.v1.SimulatorService')).status, 'SERVING');
  health.close();

  const reflectionProto = require.resolve('@grpc/reflection/build/proto/grpc/reflection/v1/reflection.proto');
  const pkg = protoLoader.loadSync(reflectionProto, { keepCase: true });
  const Reflection = grpc.makeGenericClientConstructor(pkg['grpc.reflection.v1.ServerReflection'] as grpc.ServiceDefinition, 'ServerReflection');
  const reflection = new Reflection(sim.address, grpc.credentials.createInsecure());
  const stream = (reflection as unknown as Record<string, () => grpc.ClientDuplexStream<object, { list_services_response?: { service: Array<{ name: string }> } }>>).ServerReflectionInfo!.call(reflection);
  const services = await new Promise<string[]>((resolve, reject) => {
    stream.once('data', (res) => resolve((res.list_services_response?.service ?? []).map((s: { name: string }) => s.name)));
    stream.once('error', reject);
    stream.write({ list_services: '' });
  });
  stream.end();
  reflection.close();
  assert.ok(services.includes('ferry.simulator.v1.SimulatorService'), services.join(', '));
  assert.ok(services.includes('grpc.health.v1.Health'), services.join(', '));

  sim.child.kill('SIGTERM');
  assert.deepEqual(await sim.exited, { code: 0, signal: null });
});
