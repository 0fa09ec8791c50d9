/**
 * The gRPC request counter (countingInterceptor) on a real grpc-js server
 * beside another interceptor that refuses calls, as an authentication
 * interceptor does: the refusal is counted with its own code only when the
 * counter comes first in the server's interceptors (innermost, nearest the
 * transport). Later in the list it never sees the refusal's status, only
 * the end of the call, which it counts as CANCELLED. This pins down where
 * the counter must go when other interceptors join it.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { TestContext } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { HealthImplementation } from 'grpc-health-check';
import { Counter, Registry } from 'prom-client';
import { countingInterceptor } from '../../daemon/metrics.ts';

const CHECK = '/grpc.health.v1.Health/Check';

/** Refuses every call whose metadata lacks `x-token`, before the handler runs, as grpc-js's auth interceptors do. */
const refuser: grpc.ServerInterceptor = (_descriptor, call) =>
  new grpc.ServerInterceptingCall(call, {
    start: (next) =>
      next({
        onReceiveMetadata: (metadata, pass) => {
          if (metadata.get('x-token').length > 0) pass(metadata);
          else call.sendStatus({ code: grpc.status.UNAUTHENTICATED, details: 'no token' });
        },
      }),
  });

/** A health server with `interceptors` and a counter, and a raw client to it. */
async function server(t: TestContext, interceptors: (counter: Counter<'method' | 'code'>) => grpc.ServerInterceptor[]) {
  const registry = new Registry();
  const counter = new Counter({ name: 'requests_total', help: 'requests', labelNames: ['method', 'code'] as const, registers: [registry] });
  const s = new grpc.Server({ interceptors: interceptors(counter) });
  new HealthImplementation({ '': 'SERVING' }).addToServer(s);
  const port = await new Promise<number>((resolve, reject) => s.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))));
  const client = new grpc.Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
  t.after(() => {
    client.close();
    s.forceShutdown();
  });
  /** Calls Health/Check (an empty request is service ""), resolving with the status code. */
  const check = (metadata = new grpc.Metadata()) =>
    new Promise<grpc.status>((resolve) =>
      client.makeUnaryRequest(CHECK, (b: Buffer) => b, (b: Buffer) => b, Buffer.alloc(0), metadata, (err) => resolve(err ? err.code : grpc.status.OK)),
    );
  /** The counts so far, as [code, value] pairs. */
  const counts = async () => (await counter.get()).values.map((v) => [v.labels.code, v.value]);
  return { check, counts };
}

test('counts a refusal by a later interceptor with its own code, and an answered call as OK, once each', async (t) => {
  const { check, counts } = await server(t, (counter) => [countingInterceptor(counter), refuser]);
  assert.equal(await check(), grpc.status.UNAUTHENTICATED);
  const token = new grpc.Metadata();
  token.set('x-token', 'yes');
  assert.equal(await check(token), grpc.status.OK);
  assert.deepEqual(await counts(), [
    ['UNAUTHENTICATED', 1],
    ['OK', 1],
  ]);
});

test('placed after the refusing interceptor, the counter never sees the refusal: it is counted as CANCELLED', async (t) => {
  const { check, counts } = await server(t, (counter) => [refuser, countingInterceptor(counter)]);
  assert.equal(await check(), grpc.status.UNAUTHENTICATED);
  // (The call's end reached every listener on the server's next tick, before the answer could reach the client.)
  assert.deepEqual(await counts(), [['CANCELLED', 1]]);
});
