/**
 * ferryd's network port with TLS, mutual TLS and principals (issue 14),
 * tried the way foreign clients try it: grpc-js's generic client over real
 * TLS with certificates made by openssl, every RPC of every service with
 * each role, the handshake refusals, rotation of the certificate without a
 * restart, and the audit trail. A real migration runs over the locked
 * port while the simulator driver reaches the embedded array over the
 * drivers' socket.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { readFileSync, writeFileSync, copyFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { startDaemon, type Daemon } from '../../daemon/daemon.ts';
import { METHOD_RULES, PUBLIC_SERVICES, ROLES } from '../../daemon/access/roles.ts';
import { loadApi } from '../../lib/api.ts';
import { createLog, silentLog } from '../../lib/log.ts';
import { serviceDefinition } from '../../lib/rpc.ts';
import { makeCa, issue } from '../fixtures/certs.ts';
import { SMALL_ARRAY, tempDir, testConfig } from '../helpers.ts';
import { accessFixture, rawCall, tlsCredentials, type AccessFixture } from './access-helpers.ts';

const SERVICES = Object.keys(METHOD_RULES);
/** The roles' order as issue 14 states it, written here apart from the code it checks. */
const RANK = { viewer: 0, operator: 1, admin: 2 } as const;

async function daemonWith(t: Parameters<typeof tempDir>[0], dir: string, file: Record<string, unknown>, log = silentLog()): Promise<Daemon> {
  const config = testConfig(join(dir, 'data'), { simulator: { embedded: true, config: SMALL_ARRAY }, ...file });
  const daemon = await startDaemon(config, log);
  t.after(() => daemon.close(1_000));
  return daemon;
}

function client(t: Parameters<typeof tempDir>[0], address: string, credentials: grpc.ChannelCredentials): grpc.Client {
  const c = new grpc.Client(address, credentials, { 'grpc.use_local_subchannel_pool': 1 });
  t.after(() => c.close());
  return c;
}

test('every RPC ferryd serves has a role, or is health or reflection', () => {
  const api = loadApi();
  const served = ['ferry.v1.MigrationService', 'ferry.simulator.v1.SimulatorService'];
  for (const service of served) {
    const methods = Object.values(serviceDefinition(service)).map((d) => d.path.split('/')[2]!);
    assert.deepEqual(Object.keys(METHOD_RULES[service] ?? {}).sort(), methods.sort(), `roles of ${service}`);
  }
  for (const service of PUBLIC_SERVICES) assert.ok(!served.includes(service));
  assert.ok(api);
  // The migration API's roles as issue 14 states them.
  const roles = Object.fromEntries(Object.entries(METHOD_RULES['ferry.v1.MigrationService']!).map(([m, r]) => [m, r.role]));
  assert.deepEqual(roles, {
    GetMigration: 'viewer', ListMigrations: 'viewer', WatchMigration: 'viewer', ListBackends: 'viewer', CheckCompatibility: 'viewer',
    StartMigration: 'operator', CompleteMigration: 'operator', CancelMigration: 'operator',
  });
  assert.equal(METHOD_RULES['ferry.simulator.v1.SimulatorService']!.SetFaults!.role, 'admin');
});

/**
 * Every RPC of every service with each role: refused below the role it
 * needs (PERMISSION_DENIED naming it), allowed from it on (anything but a
 * refusal: the empty request may then fail on its own terms), and
 * UNAUTHENTICATED for a caller no principal names. `as(role)` makes the
 * call as that role; `stranger` as nobody known.
 */
async function roleMatrix(as: (role: (typeof ROLES)[number] | null, service: string, method: string) => Promise<{ code: string; message: string }>, unknownMessage: RegExp): Promise<void> {
  const calls: Promise<void>[] = [];
  for (const service of SERVICES) {
    for (const [method, rule] of Object.entries(METHOD_RULES[service]!)) {
      calls.push(
        (async () => {
          const anonymous = await as(null, service, method);
          assert.equal(anonymous.code, 'UNAUTHENTICATED', `${method} as nobody known: ${anonymous.message}`);
          assert.match(anonymous.message, unknownMessage);
          for (const role of ROLES) {
            const end = await as(role, service, method);
            if (RANK[role] >= RANK[rule.role]) {
              assert.ok(!['UNAUTHENTICATED', 'PERMISSION_DENIED'].includes(end.code), `${service}/${method} as ${role} was refused: ${end.code} ${end.message}`);
            } else {
              assert.equal(end.code, 'PERMISSION_DENIED', `${service}/${method} as ${role}: ${end.code} ${end.message}`);
              assert.match(end.message, new RegExp(`needs role ${rule.role}; \\S+ has role ${role}$`));
            }
          }
        })(),
      );
    }
  }
  await Promise.all(calls);
}

test('over TLS with tokens: each RPC refused without the role it needs and allowed with it; health and reflection answer everyone', async (t) => {
  const dir = tempDir(t);
  const fx: AccessFixture = accessFixture(dir);
  const daemon = await daemonWith(t, dir, { tls: { cert: fx.pki.server.cert, key: fx.pki.server.key }, auth: fx.authFile });
  const c = client(t, daemon.address, tlsCredentials(fx.pki.ca.cert));
  await roleMatrix((role, service, method) => rawCall(c, service, method, role === null ? undefined : fx.tokens[role]), /needs a credential/);

  const unknown = await rawCall(c, 'ferry.v1.MigrationService', 'GetMigration', 'not-a-token');
  assert.deepEqual(unknown, { code: 'UNAUTHENTICATED', message: "the bearer token is not known to ferryd (see its --auth file)" });

  // Health and reflection need no credential.
  const health = await new Promise<{ status: number }>((resolve, reject) =>
    c.makeUnaryRequest('/grpc.health.v1.Health/Check', () => Buffer.alloc(0), (b: Buffer) => ({ status: b[1] ?? 0 }), {}, (err, res) => (err ? reject(err) : resolve(res!))),
  );
  assert.equal(health.status, 1, 'SERVING');
  const services = await new Promise<string>((resolve, reject) => {
    // grpc.reflection.v1.ServerReflectionRequest { list_services: "" } = field 7, empty string.
    const call = c.makeBidiStreamRequest('/grpc.reflection.v1.ServerReflection/ServerReflectionInfo', (v: Buffer) => v, (b: Buffer) => b.toString('latin1'));
    call.on('data', (d: string) => {
      resolve(d);
      call.cancel();
    });
    call.on('error', (e: grpc.ServiceError) => e.code !== grpc.status.CANCELLED && reject(e));
    call.write(Buffer.from([0x3a, 0x00]));
  });
  assert.match(services, /ferry\.v1\.MigrationService/);
});

test('over mutual TLS with certificates: each RPC refused without the role it needs and allowed with it', async (t) => {
  const dir = tempDir(t);
  const fx = accessFixture(dir);
  const daemon = await daemonWith(t, dir, { tls: { cert: fx.pki.server.cert, key: fx.pki.server.key, clientCa: fx.pki.ca.cert }, auth: fx.authFile });
  const clients = new Map<string, grpc.Client>();
  const forCert = (cert: (typeof fx.certs)['admin']) => {
    let c = clients.get(cert.cert);
    if (!c) clients.set(cert.cert, (c = client(t, daemon.address, tlsCredentials(fx.pki.ca.cert, cert))));
    return c;
  };
  await roleMatrix((role, service, method) => rawCall(forCert(role === null ? fx.unknownCert : fx.certs[role]), service, method), /^the client certificate's subject "CN=nobody" names no principal/);
});

test('a plaintext client of a TLS port is refused at the connection', async (t) => {
  const dir = tempDir(t);
  const fx = accessFixture(dir);
  const daemon = await daemonWith(t, dir, { tls: { cert: fx.pki.server.cert, key: fx.pki.server.key }, auth: fx.authFile });
  const end = await rawCall(client(t, daemon.address, grpc.credentials.createInsecure()), 'ferry.v1.MigrationService', 'ListMigrations', fx.tokens.admin);
  assert.equal(end.code, 'UNAVAILABLE', end.message);
});

test('over mutual TLS: a client certificate names its principal; expired, foreign and missing certificates are refused at the handshake', async (t) => {
  const dir = tempDir(t);
  const fx = accessFixture(dir);
  const daemon = await daemonWith(t, dir, { tls: { cert: fx.pki.server.cert, key: fx.pki.server.key, clientCa: fx.pki.ca.cert }, auth: fx.authFile });
  const { pki } = fx;
  const ops = client(t, daemon.address, tlsCredentials(pki.ca.cert, pki.ops));
  const viewer = client(t, daemon.address, tlsCredentials(pki.ca.cert, pki.viewerCert));

  // CN=ops is admin: StartMigration passes the check and fails on its empty request.
  assert.equal((await rawCall(ops, 'ferry.v1.MigrationService', 'StartMigration')).code, 'INVALID_ARGUMENT');
  assert.equal((await rawCall(ops, 'ferry.simulator.v1.SimulatorService', 'GetFaults')).code, 'OK');
  // "CN=viewer-bot, O=Ferry Tests" in the file matches the certificate's "/O=Ferry Tests/CN=viewer-bot".
  const refused = await rawCall(viewer, 'ferry.v1.MigrationService', 'StartMigration');
  assert.deepEqual(refused, { code: 'PERMISSION_DENIED', message: 'ferry.v1.MigrationService/StartMigration needs role operator; viewer-cert has role viewer' });
  assert.equal((await rawCall(viewer, 'ferry.v1.MigrationService', 'ListMigrations')).code, 'OK');
  // A token is asked for first: a viewer's certificate with the operator's token is the operator.
  assert.equal((await rawCall(viewer, 'ferry.v1.MigrationService', 'StartMigration', fx.tokens.operator)).code, 'INVALID_ARGUMENT');

  for (const [name, credentials] of [
    ['expired', tlsCredentials(pki.ca.cert, pki.expired)],
    ['signed by another CA', tlsCredentials(pki.ca.cert, pki.stranger)],
    ['none', tlsCredentials(pki.ca.cert)],
  ] as const) {
    const end = await rawCall(client(t, daemon.address, credentials), 'ferry.v1.MigrationService', 'ListMigrations', fx.tokens.admin);
    assert.equal(end.code, 'UNAVAILABLE', `client certificate ${name}: ${end.code} ${end.message}`);
  }
});

test('a migration runs to SUCCESS over the locked port, and every mutating or refused call is one audit line without the token', async (t) => {
  const dir = tempDir(t);
  const fx = accessFixture(dir);
  const auditLog = join(dir, 'audit.jsonl');
  const daemonLog = join(dir, 'ferryd.log');
  const log = createLog({ level: 'info', destination: daemonLog });
  const daemon = await daemonWith(t, dir, { tls: { cert: fx.pki.server.cert, key: fx.pki.server.key }, auth: fx.authFile, auditLog }, log);
  const c = client(t, daemon.address, tlsCredentials(fx.pki.ca.cert));
  const sim = 'ferry.simulator.v1.SimulatorService';
  const api = 'ferry.v1.MigrationService';
  const call = <T>(service: string, method: string, request: object, token: string): Promise<T> => {
    const def = serviceDefinition(service)[method]!;
    const md = new grpc.Metadata();
    md.set('authorization', `Bearer ${token}`);
    return new Promise((resolve, reject) =>
      c.makeUnaryRequest(def.path, def.requestSerialize as (v: object) => Buffer, def.responseDeserialize as (b: Buffer) => T, request, md, (err, res) => (err ? reject(err) : resolve(res!))),
    );
  };

  await call(sim, 'CreateShare', { backend: 'alpha', pool: 'gold', shareId: 'sh-1', sizeBytes: 256 * 1024 }, fx.tokens.operator);
  const started = await call<{ id: string }>(api, 'StartMigration', { share: { backend: 'alpha', shareId: 'sh-1' }, destination: 'beta#bronze', writable: true }, fx.tokens.operator);
  await assert.rejects(call(api, 'CancelMigration', { id: started.id }, fx.tokens.viewer), (e: grpc.ServiceError) => e.code === grpc.status.PERMISSION_DENIED);
  // Wait for phase 1 by watching, then complete and watch to the end.
  const watchUntil = async (state: string) => {
    const def = serviceDefinition(api).WatchMigration!;
    const md = new grpc.Metadata();
    md.set('authorization', `Bearer ${fx.tokens.viewer}`);
    const stream = c.makeServerStreamRequest(def.path, def.requestSerialize as (v: object) => Buffer, def.responseDeserialize as (b: Buffer) => { state: string }, { id: started.id }, md);
    for await (const m of stream as AsyncIterable<{ state: string }>) {
      if (m.state === state) {
        stream.cancel();
        return;
      }
      assert.ok(!['MIGRATION_STATE_ERROR', 'MIGRATION_STATE_CANCELLED'].includes(m.state), m.state);
    }
  };
  await watchUntil('MIGRATION_STATE_PHASE1_DONE');
  await call(api, 'CompleteMigration', { id: started.id }, fx.tokens.operator);
  await watchUntil('MIGRATION_STATE_SUCCESS');
  await call(api, 'GetMigration', { id: started.id }, fx.tokens.viewer);
  const anonymous = await rawCall(c, api, 'ListMigrations');
  assert.equal(anonymous.code, 'UNAUTHENTICATED');

  const lines = readFileSync(auditLog, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
  const pick = (l: Record<string, unknown>) => ({ principal: l.principal, method: l.method, code: l.code, migration: l.migration, share: l.share, destination: l.destination });
  assert.deepEqual(lines.map(pick), [
    { principal: 'ci', method: `${sim}/CreateShare`, code: 'OK', migration: undefined, share: 'alpha/sh-1', destination: undefined },
    { principal: 'ci', method: `${api}/StartMigration`, code: 'OK', migration: started.id, share: 'alpha/sh-1', destination: 'beta#bronze' },
    // Refused before its request is read: a refused line names who and what method, not the migration.
    { principal: 'dash', method: `${api}/CancelMigration`, code: 'PERMISSION_DENIED', migration: undefined, share: undefined, destination: undefined },
    { principal: 'ci', method: `${api}/CompleteMigration`, code: 'OK', migration: started.id, share: 'alpha/sh-1', destination: 'beta#bronze' },
    { principal: null, method: `${api}/ListMigrations`, code: 'UNAUTHENTICATED', migration: undefined, share: undefined, destination: undefined },
  ]);
  for (const l of lines) {
    assert.equal(l.audit, true);
    assert.match(String(l.peer), /^127\.0\.0\.1:\d+$/);
    assert.ok(!Number.isNaN(Date.parse(String(l.time))), 'time');
  }
  assert.equal(lines[2]!.message, `${api}/CancelMigration needs role operator; dash has role viewer`);
  await daemon.close(1_000);
  log.flush();
  const everything = readFileSync(auditLog, 'utf8') + readFileSync(daemonLog, 'utf8');
  for (const token of Object.values(fx.tokens)) assert.ok(!everything.includes(token), 'a token was written to a log');
  assert.match(readFileSync(daemonLog, 'utf8'), /"msg":"TLS on"/);
});

test('the certificate is re-read when its files change: new connections get the new one, a half-written pair is not used', async (t) => {
  const dir = tempDir(t);
  const fx = accessFixture(dir);
  const cert = join(dir, 'server.pem');
  const key = join(dir, 'server.key');
  copyFileSync(fx.pki.server.cert, cert);
  copyFileSync(fx.pki.server.key, key);
  const daemon = await daemonWith(t, dir, { tls: { cert, key }, auth: fx.authFile });
  const tls = daemon.access.tls!;
  const list = (ca: string) => rawCall(client(t, daemon.address, tlsCredentials(ca)), 'ferry.v1.MigrationService', 'ListMigrations', fx.tokens.viewer);
  assert.equal((await list(fx.pki.ca.cert)).code, 'OK');

  const newCa = makeCa(dir, 'next-ca');
  const next = issue(newCa, 'server-next', { subject: '/CN=ferryd-next', use: 'server' });
  // The certificate alone first: it does not match the key in place, so the old pair stays in use.
  const failed = once(tls, 'reloadFailed');
  writeFileSync(cert, readFileSync(next.cert));
  const [err] = (await failed) as [Error];
  assert.match(err.message, /is not the key of certificate/);
  assert.equal((await list(fx.pki.ca.cert)).code, 'OK', 'the previous certificate is still served');

  const reloaded = once(tls, 'reload');
  writeFileSync(key, readFileSync(next.key));
  assert.deepEqual(await reloaded, ['CN=ferryd-next']);
  assert.equal((await list(newCa.cert)).code, 'OK', 'a client trusting the new CA connects');
  assert.equal((await list(fx.pki.ca.cert)).code, 'UNAVAILABLE', 'a client trusting only the old CA does not');
});

test('the auth file is re-read when it changes: a removed token is refused from then on, a broken file leaves the principals as they were', async (t) => {
  const dir = tempDir(t);
  const fx = accessFixture(dir);
  const daemon = await daemonWith(t, dir, { auth: fx.authFile });
  const c = client(t, daemon.address, grpc.credentials.createInsecure());
  const list = (token: string) => rawCall(c, 'ferry.v1.MigrationService', 'ListMigrations', token);
  assert.equal((await list(fx.tokens.operator)).code, 'OK', 'tokens work on loopback without TLS');

  copyFileSync(fx.authFile, join(dir, 'auth.json.bak'));
  const failed = once(daemon.access.events, 'authReloadFailed');
  writeFileSync(fx.authFile, '{"principals": [');
  assert.match(((await failed) as [Error])[0].message, /is not JSON/);
  assert.equal((await list(fx.tokens.operator)).code, 'OK', 'the previous principals stay');

  const doc = JSON.parse(readFileSync(join(dir, 'auth.json.bak'), 'utf8')) as { principals: { name: string }[] };
  const reloaded = once(daemon.access.events, 'authReloaded');
  writeFileSync(fx.authFile, JSON.stringify({ principals: doc.principals.filter((p) => p.name !== 'ci') }));
  assert.deepEqual(await reloaded, [doc.principals.length - 1]);
  assert.equal((await list(fx.tokens.operator)).code, 'UNAUTHENTICATED', "ci's token is revoked");
  assert.equal((await list(fx.tokens.viewer)).code, 'OK');
});

test("the drivers' socket serves the embedded array to ferryd's drivers, not the migration API", async (t) => {
  const dir = tempDir(t);
  const fx = accessFixture(dir);
  const daemon = await daemonWith(t, dir, { tls: { cert: fx.pki.server.cert, key: fx.pki.server.key }, auth: fx.authFile });
  assert.match(daemon.driversAddress, /^unix:.*\/daemon\/ferryd\.sock$/);
  const c = client(t, daemon.driversAddress, grpc.credentials.createInsecure());
  assert.equal((await rawCall(c, 'ferry.simulator.v1.SimulatorService', 'ListBackends')).code, 'OK');
  for (const method of ['StartMigration', 'CancelMigration', 'ListMigrations']) {
    const end = await rawCall(c, 'ferry.v1.MigrationService', method);
    assert.deepEqual(end, { code: 'PERMISSION_DENIED', message: `ferry.v1.MigrationService/${method} is not served on ferryd's drivers' socket, which serves its own drivers the embedded array only; call it on ferryd's network port` });
  }
});
