/**
 * FerryClient on a network (issue 14), against ferryd in this process with
 * the config file's `tls` and `auth` settings, certificates made by openssl
 * (test/fixtures/certs.ts) and tokens made fresh for each test: a whole
 * migration over TLS with a token and over mutual TLS, the token carried on
 * the WatchMigration stream as on unary calls (and on a plaintext loopback,
 * where grpc-js would drop call credentials), ferryd's refusals as
 * FerryCallErrors, and handshakes that fail as UNAVAILABLE with the kind of
 * trouble and a message that says it.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import type { TestContext } from 'node:test';
import { FerryClient, type ConnectionTrouble, type FerryCallError, type FerryClientOptions } from '../../client/client.ts';
import { startDaemon } from '../../daemon/daemon.ts';
import { silentLog } from '../../lib/log.ts';
import { array, arrayBackends, backendOf, makeShares } from '../fixtures/network-array.ts';
import { accessFixture, type AccessFixture } from '../daemon/access-helpers.ts';
import { pluginsDir, rejectsWith, testConfig } from '../helpers.ts';
import { defer, tempDir } from '../simulator/helpers.ts';

/** ferryd in this process over a served array, with `network` merged into its config file; clients made by `client` are closed first when the test ends. */
async function networkDaemon(t: TestContext, network: (auth: AccessFixture) => Record<string, unknown>) {
  const dir = await tempDir(t);
  const auth = accessFixture(dir);
  const { pki } = auth;
  const arrayed = await array(t);
  const daemon = await startDaemon(testConfig(join(dir, 'data'), { ...arrayBackends(arrayed.address), ...network(auth) }, pluginsDir(dir, ['simulator'])), silentLog());
  defer(t, () => daemon.close(1_000));
  const client = (options: FerryClientOptions) => {
    const c = new FerryClient(daemon.address, 10_000, options);
    defer(t, () => c.close());
    return c;
  };
  return { pki, auth, arrayed, address: daemon.address, client };
}

/** Asserts a call failed to connect: UNAVAILABLE, without Ferry's trailer, with this kind of trouble and a message matching `message`. */
async function cannotConnect(call: Promise<unknown>, trouble: ConnectionTrouble, message: RegExp): Promise<void> {
  const err: FerryCallError = await rejectsWith(call, 'UNAVAILABLE', message);
  assert.equal(err.trailer, undefined);
  assert.equal(err.connection, trouble, err.message);
  assert.doesNotMatch(err.message, /deps\/openssl|\d{4}-\d\d-\d\dT[\d:.]+Z\)|Resolution note/, 'grpc-js\'s wrapping is left in');
}

test('FerryClient over TLS with a token: a whole migration; no token, an unknown one, a viewer starting: refused; another CA and plaintext: cannot connect', async (t) => {
  const { pki, auth, arrayed, client } = await networkDaemon(t, ({ pki, authFile }) => ({ tls: { cert: pki.server.cert, key: pki.server.key }, auth: authFile }));
  await makeShares(arrayed, 'c1', 'c2');
  // PEM as bytes for one client, as a path for the others: both forms.
  const operator = client({ cacert: readFileSync(pki.ca.cert), token: auth.tokens.operator });
  const viewer = client({ cacert: pki.ca.cert, token: auth.tokens.viewer });
  const anonymous = client({ cacert: pki.ca.cert });

  const done = await operator.migrate({ share: { backend: 'alpha', shareId: 'c1' }, destination: 'beta#bronze', writable: true });
  assert.equal(done.state, 'MIGRATION_STATE_SUCCESS', done.error?.message);
  assert.equal(await backendOf(arrayed, 'c1'), 'beta');

  // The viewer reads, the stream included, and may not start.
  assert.equal((await viewer.waitFor(done.id, () => true)).state, 'MIGRATION_STATE_SUCCESS');
  await rejectsWith(viewer.startMigration({ share: { backend: 'alpha', shareId: 'c2' }, destination: 'beta#bronze' }), 'PERMISSION_DENIED', /StartMigration needs role operator/);

  await rejectsWith(anonymous.listMigrations(), 'UNAUTHENTICATED', /needs a credential/);
  await rejectsWith(anonymous.waitFor(done.id, () => true), 'UNAUTHENTICATED', /needs a credential/);
  await rejectsWith(client({ cacert: pki.ca.cert, token: randomBytes(24).toString('base64url') }).listBackends(), 'UNAUTHENTICATED', /not known/);

  await cannotConnect(client({ cacert: pki.otherCa.cert, token: auth.tokens.operator }).listMigrations(), 'server-not-trusted', /^TLS handshake failed: ferryd's certificate was not accepted: (unable to verify the first certificate|self-signed certificate in certificate chain)$/);
  await cannotConnect(client({ token: auth.tokens.operator }).listMigrations(), 'server-may-want-tls', /^ferryd closed the connection before answering, as a TLS server does to a plaintext client$/);
  assert.equal(await backendOf(arrayed, 'c2'), 'alpha');
});

test('FerryClient over mutual TLS: a whole migration as CN=ops; the viewer-bot refused a start; expired, foreign and missing certificates refused at the handshake', async (t) => {
  const { pki, auth, arrayed, client } = await networkDaemon(t, ({ pki, authFile }) => ({ tls: { cert: pki.server.cert, key: pki.server.key, clientCa: pki.ca.cert }, auth: authFile }));
  await makeShares(arrayed, 'x1', 'x2');
  const as = (files: { cert: string; key: string }) => client({ cacert: pki.ca.cert, ...files });

  const done = await as(pki.ops).migrate({ share: { backend: 'alpha', shareId: 'x1' }, destination: 'beta#bronze', writable: true });
  assert.equal(done.state, 'MIGRATION_STATE_SUCCESS', done.error?.message);
  assert.equal(await backendOf(arrayed, 'x1'), 'beta');

  await rejectsWith(as(auth.unknownCert).listMigrations(), 'UNAUTHENTICATED', /"CN=nobody" names no principal/);
  await rejectsWith(as(pki.viewerCert).startMigration({ share: { backend: 'alpha', shareId: 'x2' }, destination: 'beta#bronze' }), 'PERMISSION_DENIED', /StartMigration needs role operator; viewer-cert has role viewer/);
  await cannotConnect(as(pki.expired).listMigrations(), 'client-cert-refused', /^TLS handshake failed: ferryd closed the connection, refusing the client certificate CN=ops, which expired on \d{4}-\d\d-\d\dT[\d:.]+Z$/);
  await cannotConnect(as(pki.stranger).listMigrations(), 'client-cert-refused', /^TLS handshake failed: ferryd closed the connection, refusing the client certificate CN=ops$/);
  await cannotConnect(client({ cacert: pki.ca.cert, token: auth.tokens.operator }).listMigrations(), 'client-cert-required', /^TLS handshake failed: ferryd asked for a client certificate and none was given \(tlsv13 alert certificate required\)$/);
  assert.equal(await backendOf(arrayed, 'x2'), 'alpha');
});

test('FerryClient with a token on a plaintext loopback ferryd with --auth: the token goes with every call, the stream included', async (t) => {
  const { auth, arrayed, client } = await networkDaemon(t, ({ authFile }) => ({ auth: authFile }));
  await makeShares(arrayed, 'p1');
  const done = await client({ token: auth.tokens.operator }).migrate({ share: { backend: 'alpha', shareId: 'p1' }, destination: 'beta#bronze', writable: true });
  assert.equal(done.state, 'MIGRATION_STATE_SUCCESS', done.error?.message);
  await rejectsWith(client({}).waitFor(done.id, () => true), 'UNAUTHENTICATED', /needs a credential/);
  await rejectsWith(client({}).getMigration(done.id), 'UNAUTHENTICATED', /needs a credential/);
});
