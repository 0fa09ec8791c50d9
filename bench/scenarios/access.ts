/**
 * What the network port's protection costs a call (issue 14): the same
 * cheap RPC (GetMigration of one migration) against four ferryd processes,
 * each with one array apart and the same migration parked in PHASE1_DONE:
 *
 *   plain   no TLS, no --auth (loopback): the access check runs, with no principals
 *   token   --auth, a bearer token on every call, plaintext loopback
 *   tls     TLS and --auth, a bearer token
 *   mtls    mutual TLS and --auth, known by the client certificate
 *
 * Calls go back to back from one grpc-js client per daemon (a connection
 * each, made and warmed first), the daemons taking turns in rounds, so that
 * all four see the same machine. "added" is a figure minus plain's.
 */
import { randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import * as grpc from '@grpc/grpc-js';
import { tokenSha256 } from '../../daemon/access/principals.ts';
import { serviceDefinition } from '../../lib/rpc.ts';
import { makePki } from '../../test/fixtures/certs.ts';
import { prepareShares } from '../lib/fleet.ts';
import { startArray, startDaemon, type Served } from '../lib/processes.ts';
import { fmt, type Scenario, type ScenarioReport } from '../lib/report.ts';
import { summarise, type Summary } from '../lib/stats.ts';

const ROUND = 200;

interface Way {
  name: string;
  what: string;
  daemon?: Served;
  client?: grpc.Client;
  token?: string;
  migration?: string;
  ms: number[];
}

function unary<T>(client: grpc.Client, method: string, request: object, token?: string): Promise<T> {
  const def = serviceDefinition('ferry.v1.MigrationService')[method]!;
  const md = new grpc.Metadata();
  if (token) md.set('authorization', `Bearer ${token}`);
  return new Promise((resolve, reject) =>
    client.makeUnaryRequest(def.path, def.requestSerialize as (v: object) => Buffer, def.responseDeserialize as (b: Buffer) => T, request, md, { deadline: Date.now() + 30_000 }, (err, res) => (err ? reject(err) : resolve(res!))),
  );
}

export const accessScenario: Scenario = {
  name: 'access',
  title: 'The cost of TLS, tokens and the access check on a call',
  async run(ctx): Promise<ScenarioReport> {
    const calls = ctx.quick ? 1_000 : 10_000;
    const warmup = ctx.quick ? 200 : 1_000;
    const dir = path.join(ctx.scratch, 'access');
    mkdirSync(dir, { recursive: true });
    const pki = makePki(path.join(dir, 'pki'));
    const token = randomBytes(24).toString('base64url');
    const authFile = path.join(dir, 'auth.json');
    writeFileSync(authFile, JSON.stringify({ principals: [{ name: 'bench', role: 'admin', tokenSha256: tokenSha256(token) }, { name: 'bench-cert', role: 'admin', certSubject: 'CN=ops' }] }));
    const tls = { cert: pki.server.cert, key: pki.server.key };
    const ca = readFileSync(pki.ca.cert);
    const ways: (Way & { extra: object; credentials: grpc.ChannelCredentials })[] = [
      { name: 'plain', what: 'no TLS, no --auth (loopback)', extra: {}, credentials: grpc.credentials.createInsecure(), ms: [] },
      { name: 'token', what: '--auth, bearer token, plaintext loopback', extra: { auth: authFile }, credentials: grpc.credentials.createInsecure(), token, ms: [] },
      { name: 'tls', what: 'TLS and --auth, bearer token', extra: { auth: authFile, tls }, credentials: grpc.credentials.createSsl(ca), token, ms: [] },
      { name: 'mtls', what: 'mutual TLS and --auth, client certificate', extra: { auth: authFile, tls: { ...tls, clientCa: pki.ca.cert } }, credentials: grpc.credentials.createSsl(ca, readFileSync(pki.ops.key), readFileSync(pki.ops.cert)), ms: [] },
    ];
    const arrays: Served[] = [];
    try {
      for (const way of ways) {
        const arrayDir = path.join(dir, `${way.name}-array`);
        mkdirSync(arrayDir, { recursive: true });
        const config = { backends: [{ name: 'alpha', pools: [{ name: 'gold', capacityBytes: 2 ** 30 }] }, { name: 'beta', pools: [{ name: 'bronze', capacityBytes: 2 ** 30 }] }] };
        const [shareId] = await prepareShares(arrayDir, config, 'access-', 1, 64 * 1024);
        const array = await startArray(arrayDir, config);
        arrays.push(array);
        way.daemon = await startDaemon(path.join(dir, `${way.name}-data`), array.address, {}, {}, 'simulator', ['alpha', 'beta'], way.extra);
        way.client = new grpc.Client(way.daemon.address, way.credentials);
        const started = await unary<{ id: string }>(way.client, 'StartMigration', { share: { backend: 'alpha', shareId }, destination: 'beta#bronze' }, way.token);
        way.migration = started.id;
        for (let i = 0; i < warmup; i++) await unary(way.client, 'GetMigration', { id: started.id }, way.token);
      }
      ctx.log(`access: ${calls} GetMigration calls per daemon, in rounds of ${ROUND}`);
      for (let done = 0; done < calls; done += ROUND) {
        for (const way of ways) {
          for (let i = 0; i < ROUND; i++) {
            const t0 = performance.now();
            await unary(way.client!, 'GetMigration', { id: way.migration }, way.token);
            way.ms.push(performance.now() - t0);
          }
        }
      }
    } finally {
      for (const way of ways) {
        way.client?.close();
        await way.daemon?.stop();
      }
      for (const array of arrays) await array.stop();
    }
    const stats = new Map<string, Summary>(ways.map((w) => [w.name, summarise(w.ms)]));
    const plain = stats.get('plain')!;
    const added = (name: string, key: 'median' | 'p99') => stats.get(name)![key] - plain[key];
    for (const w of ways) ctx.log(`access ${w.name}: p50 ${fmt(stats.get(w.name)!.median, 3)} ms, p99 ${fmt(stats.get(w.name)!.p99, 3)} ms`);
    return {
      tables: [
        {
          title: `GetMigration through each kind of port, ${calls} calls each (ms)`,
          header: ['port', 'p50', 'p90', 'p99', 'max', 'added at p50', 'added at p99'],
          rows: ways.map((w) => {
            const s = stats.get(w.name)!;
            const delta = w.name !== 'plain';
            return [`${w.name}: ${w.what}`, fmt(s.median, 3), fmt(s.p90, 3), fmt(s.p99, 3), fmt(s.max, 2), delta ? fmt(added(w.name, 'median'), 3) : '', delta ? fmt(added(w.name, 'p99'), 3) : ''];
          }),
          notes: [
            'Four ferryd processes, each over its own ferry-sim, each with one migration; GetMigration never reaches a driver. One client connection per daemon, made and warmed first.',
            `added: the figure minus plain's. The daemons take turns in rounds of ${ROUND} calls, after ${warmup} calls each to warm up.`,
          ],
        },
      ],
      summary: [
        {
          scenario: 'access',
          measure: 'GetMigration p50 with the port locked (ms)',
          ferry: `token ${fmt(stats.get('token')!.median, 3)}; TLS ${fmt(stats.get('tls')!.median, 3)}; mTLS ${fmt(stats.get('mtls')!.median, 3)}`,
          baseline: `plain ${fmt(plain.median, 3)}`,
          ratio: `+${fmt(added('tls', 'median'), 3)} ms (TLS and a token) at p50`,
        },
      ],
      targets: [],
      data: { calls, warmup, round: ROUND, stats: Object.fromEntries(stats) },
    };
  },
};
